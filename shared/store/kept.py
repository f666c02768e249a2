"""The envelopes a store committed lately, kept by position for reading back in the same process.

A service reads back much of what it has just committed: its own followers (views of its log, the
relay to Kafka), its aggregates' loads, and in embedded mode the other services' consumers. Those
reads still ask the store (for the order, and what is visible), but an envelope this process
committed is handed out as the object it already is instead of being parsed again from its row.
Only committed envelopes are kept: a request that failed never is (its position may be reused).

They are kept by stream too, for `after`: what this process wrote to a stream since a version, as far
as it knows. It knows nothing of other writers until one of its commits conflicts with theirs
(`doubt`); the stream is then unknown here until it is read again (`read`).
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.envelope import Envelope

KEEP = 4096
"""Envelopes kept: a few seconds of a busy service's appends."""


class Kept:
    def __init__(self, size: int = KEEP) -> None:
        self.size = size
        self._by_position: dict[int, Envelope] = {}
        self._by_stream: dict[str, dict[int, Envelope]] = {}
        self._doubted: set[str] = set()

    def keep(self, envelopes: Sequence[Envelope]) -> None:
        kept, streams = self._by_position, self._by_stream
        for env in envelopes:
            kept[env.position] = env
            streams.setdefault(env.stream, {})[env.version] = env
        while len(kept) > self.size:
            oldest = kept.pop(next(iter(kept)))  # the oldest first: kept in the order committed
            versions = streams[oldest.stream]
            del versions[oldest.version]
            if not versions:
                del streams[oldest.stream]

    def get(self, position: int) -> Envelope | None:
        return self._by_position.get(position)

    def doubt(self, stream: str) -> None:
        """A commit of this process met another writer's events on `stream`."""
        self._doubted.add(stream)

    def read(self, stream: str) -> None:
        """`stream` was read from the store: what was doubted about it is known again."""
        self._doubted.discard(stream)

    def after(self, stream: str, version: int) -> list[Envelope] | None:
        """The envelopes this process committed to `stream` after `version`, in order, when it has kept
        every one of them; None when it cannot tell (a conflict since the last read, or a version
        missing: written by another process, or no longer kept)."""
        if stream in self._doubted:
            return None
        versions = self._by_stream.get(stream)
        if not versions:
            return []
        run: list[Envelope] = []
        while (env := versions.get(version + 1 + len(run))) is not None:
            run.append(env)
        newest = next(reversed(versions))  # one process commits a stream's versions in order
        return None if newest > version + len(run) else run

"""The envelopes a store committed lately, kept by position for reading back in the same process.

A service reads back much of what it has just committed: its own followers (views of its log, the
relay to Kafka), its aggregates' loads, and in embedded mode the other services' consumers. Those
reads still ask the store (for the order, and what is visible), but an envelope this process
committed is handed out as the object it already is instead of being parsed again from its row.
Only committed envelopes are kept: a request that failed never is (its position may be reused).
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

    def keep(self, envelopes: Sequence[Envelope]) -> None:
        kept = self._by_position
        for env in envelopes:
            kept[env.position] = env
        while len(kept) > self.size:
            del kept[next(iter(kept))]  # the oldest first: kept in the order committed

    def get(self, position: int) -> Envelope | None:
        return self._by_position.get(position)

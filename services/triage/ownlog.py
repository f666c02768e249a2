"""Triage's own log as its workers follow it: the SLA timers' index and paging each fold every
event triage appends; a page read from the store for one is kept for the other.

A store's log never puts an event before one a follower has already been given (the follower
would skip it), so what was read after a checkpoint is what a second read after it would start
with: a follower asking from a checkpoint in the kept run gets the rest of the run, and only a
follower at the end of the run reads the store (what it reads extends the run).
"""

from __future__ import annotations

from shared.envelope import Checkpoint, Envelope
from shared.store import EventStore

KEEP = 4096  # events kept; a follower further behind reads the store itself


class OwnLog:
    def __init__(self, store: EventStore, keep: int = KEEP) -> None:
        self.store = store
        self.keep = keep
        self._start: Checkpoint | None = None  # the checkpoint the run follows
        self._run: list[Envelope] = []
        self._after: dict[Checkpoint, int] = {}  # checkpoint -> index of the event after it

    def _index(self, after: Checkpoint) -> int | None:
        if after == self._start:
            return 0
        return self._after.get(after)

    async def read_all(self, after: Checkpoint, limit: int = 1000) -> list[Envelope]:
        """The start of what `store.read_all(after, limit)` returns: all of it, or the kept part
        (empty only when the store has nothing after `after`)."""
        at = self._index(after)
        if at is not None and at < len(self._run):
            return self._run[at : at + limit]
        page = await self.store.read_all(after=after, limit=limit)
        if not page:
            return page
        if at is None:  # not where the run ends: start a new one here
            self._start, self._run, self._after = after, [], {}
        for env in page:
            self._run.append(env)
            self._after[env.checkpoint] = len(self._run)
        if len(self._run) > self.keep:
            drop = len(self._run) - self.keep // 2
            self._start = self._run[drop - 1].checkpoint
            self._run = self._run[drop:]
            self._after = {env.checkpoint: i + 1 for i, env in enumerate(self._run)}
        return page

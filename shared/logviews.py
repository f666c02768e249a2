"""A service's own log, read once per process for every in-memory view kept from it.

Views that fold the same log (comms' notification index, timers and recipients' counts; triage's
timer index and paging) are handed each event once by one reader, instead of each following the
log on its own and parsing it again. Whoever needs the views current (a decision, a timer tick, an
API read) catches up first; between times a worker follows appends as they land.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shared.envelope import Checkpoint, Envelope
from shared.store import START, EventStore

Fold = Callable[[Envelope], None]


class LogViews:
    def __init__(self, store: EventStore, *, page: int = 1000) -> None:
        self.store = store
        self.page = page
        self.folds: list[Fold] = []
        self.at: Checkpoint = START
        self._lock = asyncio.Lock()

    def add(self, fold: Fold) -> None:
        """Fold every event into one more view: added before the first catch-up, or it would
        miss what was folded already."""
        if self.at != START:
            raise RuntimeError("a view added after the log was read would miss its start")
        self.folds.append(fold)

    async def catch_up(self) -> None:
        """Fold everything the log holds beyond what was folded already."""
        async with self._lock:
            while batch := await self.store.read_all(after=self.at, limit=self.page):
                for env in batch:
                    for fold in self.folds:
                        fold(env)
                self.at = batch[-1].checkpoint
                if len(batch) < self.page:
                    break

    async def run(self) -> None:
        while True:
            await self.catch_up()
            await self.store.wait_for_append(1.0, after=self.at)

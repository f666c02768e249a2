"""Load a stream's current state by folding its events, caching folded states between calls.

The cache only saves work: it always catches up from the store (`read(stream, after_version)`),
so another writer's appends are never missed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from shared.events import Event
from shared.store import EventStore

S = TypeVar("S")


class Aggregates(Generic[S]):
    def __init__(
        self,
        store: EventStore,
        initial: Callable[[], S],
        evolve: Callable[[S, Event], S],
        *,
        size: int = 10_000,
    ) -> None:
        self.store = store
        self.initial = initial
        self.evolve = evolve
        self.size = size
        self._cache: OrderedDict[str, tuple[int, S]] = OrderedDict()

    async def load(self, stream: str) -> tuple[S, int]:
        """The stream's state and version (its event count; 0 for a new stream)."""
        version, state = self._cache.pop(stream, (0, self.initial()))
        for env in await self.store.read(stream, after_version=version):
            state = self.evolve(state, env.event)
            version = env.version
        self._cache[stream] = (version, state)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return state, version

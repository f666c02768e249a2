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
        cached = self._cache.get(stream)
        version, state = cached if cached is not None else (0, self.initial())
        for env in await self.store.read(stream, after_version=version):
            state = self.evolve(state, env.event)
            version = env.version
        # Loads of one stream may overlap (a consumer handles incidents side by side): each catches
        # up from the cached state, and the cache keeps whichever got further.
        newest = self._cache.get(stream)
        if newest is None or newest[0] <= version:
            self._cache[stream] = (version, state)
        self._cache.move_to_end(stream)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return state, version

"""Load a stream's current state by folding its events, caching folded states between calls.

Outside a decision the cache only saves work: a load always catches up from the store
(`read(stream, after_version)`), so another writer's appends are never missed.

Inside a decision (`deciding()`: a consumer handling one event, intake deciding a batch of alerts) a
cached stream is brought up to date from what this process committed itself (`committed_here`),
without asking the store, and the version it was decided on is recorded in the decision's
`Grounds`. The decision's commit asserts each of them (`Grounds.assertions`: an empty write
expecting that version, unless a write of the commit already expects it), so a stream another process
appended to meanwhile fails the commit with ConcurrencyError: the store then doubts that stream and
the retry reads it. A decision is never committed on a state older than its streams' heads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from shared.events import Event
from shared.store import EventStore, Write

S = TypeVar("S")


class Grounds:
    """The stream versions one decision rests on without having read them from the store."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}

    def assertions(self, items: Sequence[Any]) -> list[Write]:
        """Empty writes expecting each version, but for streams a write of `items` expects it of;
        to be committed ahead of `items`."""
        expected = {(w.stream, w.expected_version) for w in items if isinstance(w, Write)}
        return [Write(s, [], v) for s, v in self.versions.items() if (s, v) not in expected]


_GROUNDS: ContextVar[Grounds | None] = ContextVar("lynchpin_grounds", default=None)


@contextmanager
def deciding() -> Iterator[Grounds]:
    """Loads within rest on what this process committed, to be asserted at the decision's commit."""
    grounds = Grounds()
    token = _GROUNDS.set(grounds)
    try:
        yield grounds
    finally:
        _GROUNDS.reset(token)


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
        grounds = _GROUNDS.get()
        trusted = grounds is not None and cached is not None  # a stream not cached here is read
        own = self.store.committed_here(stream, version) if trusted else None
        for env in own if own is not None else await self.store.read(stream, after_version=version):
            state = self.evolve(state, env.event)
            version = env.version
        if own is not None:
            assert grounds is not None
            grounds.versions[stream] = version
        # Loads of one stream may overlap (a consumer handles incidents side by side): each catches
        # up from the cached state, and the cache keeps whichever got further.
        newest = self._cache.get(stream)
        if newest is None or newest[0] <= version:
            self._cache[stream] = (version, state)
        self._cache.move_to_end(stream)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return state, version

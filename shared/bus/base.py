"""The bus contract: deliver other services' events to a handler, exactly once in effect.

Same handler code in both modes: a handler gets an envelope and returns writes for the
consumer's own store. The bus commits them together with a tracking record, so a redelivered
event changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from shared.envelope import Checkpoint, Envelope
from shared.store import Committed, Tracking

Handler = Callable[[Envelope], Awaitable[Sequence[Any]]]
"""Returns what the consumer's sink commits: `Write`s for an event store, envelopes for analytics."""


class Sink(Protocol):
    """Where a consumer commits its effects with a tracking record: an EventStore, or a read store."""

    async def commit(self, writes: Sequence[Any], *, tracking: Tracking | None = None) -> Committed: ...

    async def checkpoint(self, consumer: str) -> Checkpoint: ...


@runtime_checkable
class PageSink(Sink, Protocol):
    """A sink nothing its consumer decides rests on (a read model: the handler reads nothing from
    it), which can take several commits in one transaction: a page of events commits at once."""

    async def commit_all(
        self, commits: Sequence[tuple[Sequence[Any], Tracking | None]]
    ) -> list[Committed]: ...


class Bus(Protocol):
    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def run(
        self,
        consumer: str,
        sources: Sequence[str],
        handler: Handler,
        store: Sink,
        inputs: Collection[str] | None = None,
    ) -> None:
        """Feed every event of the `sources` services to `handler`, forever (until cancelled).

        `consumer` names the consuming service; its effects and tracking go to `store`. `inputs`:
        the event types the handler acts on (None: every type); the others are passed over.
        """
        ...

    def lag(self) -> dict[str, int]:
        """Events known to exist but not yet handled, per source (best effort)."""
        ...


def tracking_name(consumer: str, source: str) -> str:
    return f"{consumer}<-{source}"

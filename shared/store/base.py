"""The event store contract: one Protocol, several backends, one contract test suite."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from shared.envelope import Checkpoint, Envelope
from shared.events import Event

START: Checkpoint = (0, 0)


class StoreError(Exception):
    """Base of every error a store raises on purpose."""


class ConcurrencyError(StoreError):
    """An append's expected version did not match the stream's version."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class StoreUnavailable(StoreError):
    """The backing database cannot be reached or written right now; retry later."""


@dataclass(frozen=True, slots=True)
class Write:
    """Events to append to one stream. `expected_version` None skips the concurrency check."""

    stream: str
    events: Sequence[Event]
    expected_version: int | None
    correlation_id: str | None = None
    causation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Tracking:
    """The input event a consumer handled, committed atomically with the consumer's own writes.

    A second commit with the same (consumer, event_id) is a no-op: redelivery changes nothing.
    `checkpoint`, when given, is where the consumer now stands in its source's log. With no
    `event_id`, only the checkpoint is recorded (a relay's position in its own log).
    """

    consumer: str
    event_id: str | None
    checkpoint: Checkpoint | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    envelopes: list[Envelope] = field(default_factory=list)
    duplicate: bool = False


class EventStore(Protocol):
    """What every backend offers. `source` names the service that owns (writes) this store."""

    source: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed:
        """Append to one or more streams atomically, with an optional tracking record."""
        ...

    async def read(self, stream: str, after_version: int = 0) -> list[Envelope]: ...

    def committed_here(self, stream: str, after_version: int) -> list[Envelope] | None:
        """What this process committed to `stream` after `after_version`, in order, when it knows it
        has every one; None when it cannot tell (then read). It knows nothing of other processes'
        appends until a commit of its own conflicts with them: whatever is decided on it must
        assert the version at its commit (`shared.aggregates.deciding`)."""
        ...

    async def read_all(self, after: Checkpoint = START, limit: int = 1000) -> list[Envelope]:
        """The global log after a checkpoint, in an order that never skips a committed event."""
        ...

    async def checkpoint(self, consumer: str) -> Checkpoint: ...

    async def wait_for_append(self, timeout: float, after: Checkpoint | None = None) -> None:
        """Return when something may have been appended, or after `timeout` seconds.

        With `after` (where the caller's last read ended), return at once if this store already
        knows of a commit beyond it: an append between the caller's read and its wait is not missed.
        """
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot serve."""
        ...


async def append(
    store: EventStore, stream: str, events: Sequence[Event], expected_version: int | None
) -> list[Envelope]:
    """Append to one stream; the common case of `commit`."""
    return (await store.commit([Write(stream, events, expected_version)])).envelopes

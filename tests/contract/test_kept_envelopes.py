"""The SQLite and PostgreSQL stores hand back the envelopes they committed lately instead of parsing
their rows again: what they hand back is what any other reader of the store parses, and a request
that failed is never handed out (in SQLite its position may be taken again by a later one). They
say what they committed to a stream themselves (`committed_here`) only while no conflict has shown
another writer of it since it was last read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.events import IncidentAcknowledged
from shared.store import ConcurrencyError, EventStore, Write, open_store
from shared.store.kept import KEEP

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def ack(incident: str, n: int) -> IncidentAcknowledged:
    return IncidentAcknowledged(incident_id=incident, by=f"user-{n}", occurred_at=T0)


@pytest.fixture(params=["sqlite", "postgres"])
async def two(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[EventStore, EventStore]]:
    """The store, and another reader of the same data (what a second process would see)."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'events.db'}"
    else:
        url = request.getfixturevalue("pg_dsn")
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(url, source="intake"))
        other = await stack.enter_async_context(open_store(url, source="intake"))
        yield store, other


async def test_read_back_is_what_another_reader_parses(two: tuple[EventStore, EventStore]) -> None:
    store, other = two
    committed = await store.commit([Write("incident-a", [ack("a", 1), ack("a", 2)], 0)])
    burst = await asyncio.gather(
        store.commit([Write("incident-a", [ack("a", 3)], 1)]),  # stale: fails
        store.commit([Write("incident-b", [ack("b", 1)], 0)]),
        return_exceptions=True,
    )
    assert isinstance(burst[0], ConcurrencyError) and not isinstance(burst[1], BaseException)
    later = await store.commit([Write("incident-c", [ack("c", 1)], 0)])
    mine = await store.read_all(limit=100)
    assert mine[0] is committed.envelopes[0] and mine[-1] is later.envelopes[0]  # handed back as kept
    assert mine == await other.read_all(limit=100)  # what another reader parses from the rows
    assert [e.event for e in mine] == [ack("a", 1), ack("a", 2), ack("b", 1), ack("c", 1)]
    assert await store.read("incident-a") == await other.read("incident-a")


async def test_only_the_latest_are_kept_and_older_ones_are_parsed(two: tuple[EventStore, EventStore]) -> None:
    store, _ = two
    first = await store.commit([Write("incident-0", [ack("0", 0)], 0)])
    for n in range(0, KEEP, 512):
        await store.commit([Write(f"incident-{n + 1}", [ack(str(n), i) for i in range(512)], 0)])
    [again] = await store.read("incident-0")
    assert again == first.envelopes[0] and again is not first.envelopes[0]


async def test_what_was_committed_here_is_told_until_a_conflict_shows_another_writer(
    two: tuple[EventStore, EventStore],
) -> None:
    store, other = two
    assert store.committed_here("incident-a", 0) == []  # nothing known: nothing of its own
    first = await store.commit([Write("incident-a", [ack("a", 1), ack("a", 2)], 0)])
    assert store.committed_here("incident-a", 0) == first.envelopes
    assert store.committed_here("incident-a", 1) == first.envelopes[1:]
    assert store.committed_here("incident-a", 2) == []
    await other.commit([Write("incident-a", [ack("a", 3)], 2)])  # another process
    assert store.committed_here("incident-a", 2) == [], "it cannot know of the other process yet"
    with pytest.raises(ConcurrencyError):
        await store.commit([Write("incident-a", [], 2), Write("incident-b", [ack("b", 1)], 0)])
    assert store.committed_here("incident-a", 2) is None, "a conflict must make it read the stream"
    assert [e.version for e in await store.read("incident-a", 2)] == [3]
    assert store.committed_here("incident-a", 3) == []
    mine = await store.commit([Write("incident-a", [ack("a", 4)], 3)])
    assert store.committed_here("incident-a", 3) == mine.envelopes
    assert store.committed_here("incident-a", 2) is None, "version 3 is not its own: a gap"

"""The SQLite store hands back the envelopes it committed lately instead of parsing their rows again:
what it hands back is what any other reader of the file parses, and a request that failed (its
position may be taken again by a later one) is never handed out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from shared.events import IncidentAcknowledged
from shared.store import ConcurrencyError, Write
from shared.store.sqlite import KEEP, SqliteStore

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def ack(incident: str, n: int) -> IncidentAcknowledged:
    return IncidentAcknowledged(incident_id=incident, by=f"user-{n}", occurred_at=T0)


async def test_read_back_is_what_another_reader_parses(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with SqliteStore(path, source="intake") as store, SqliteStore(path, source="intake") as other:
        committed = await store.commit([Write("incident-a", [ack("a", 1), ack("a", 2)], 0)])
        burst = await asyncio.gather(
            store.commit([Write("incident-a", [ack("a", 3)], 1)]),  # stale: fails, its position freed
            store.commit([Write("incident-b", [ack("b", 1)], 0)]),
            return_exceptions=True,
        )
        assert isinstance(burst[0], ConcurrencyError) and not isinstance(burst[1], BaseException)
        later = await store.commit([Write("incident-c", [ack("c", 1)], 0)])
        mine = await store.read_all(limit=100)
        assert mine[:2] == committed.envelopes and mine[:2][0] is committed.envelopes[0]  # kept
        assert mine == await other.read_all(limit=100)  # parsed from the rows by another reader
        assert [e.event for e in mine] == [ack("a", 1), ack("a", 2), ack("b", 1), ack("c", 1)]
        assert mine[-1] is later.envelopes[0]
        assert await store.read("incident-a") == await other.read("incident-a")


async def test_only_the_latest_are_kept_and_the_rest_are_read_from_the_file(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "events.db", source="intake") as store:
        first = await store.commit([Write("incident-0", [ack("0", 0)], 0)])
        for n in range(1, KEEP + 1):
            await store.commit([Write(f"incident-{n}", [ack(str(n), n)], 0)])
        [again] = await store.read("incident-0")
        assert again == first.envelopes[0] and again is not first.envelopes[0]  # parsed again

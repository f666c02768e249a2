"""The analytics read store keeps the incident views it wrote last parsed between commits: what it
remembers is only ever what committed, and a view it no longer remembers is read back from the file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.analytics import readstore
from services.analytics.readstore import ReadStore
from shared.envelope import Envelope
from shared.events import Event, IncidentAcknowledged, IncidentOpened, IncidentResolved, Severity
from shared.store import Tracking, Write

T = datetime(2026, 3, 2, 10, tzinfo=UTC)


def envelope(n: int, event: Event) -> Envelope:
    return Envelope(
        id=f"e{n}",
        stream=f"incident-{event.incident_id}",  # type: ignore[attr-defined]
        version=n,
        position=n,
        event=event,
        recorded_at=T,
        source="intake",
        correlation_id="c",
    )


def opened(incident_id: str) -> IncidentOpened:
    return IncidentOpened(
        incident_id=incident_id,
        title=f"Checkout down ({incident_id})",
        service="payments",
        severity=Severity.CRITICAL,
        source="test",
        reporter="test",
        occurred_at=T,
    )


class Unwritable:
    """A dead letter whose record cannot be written: the commit it is in fails and rolls back."""

    def model_dump_json(self) -> str:
        raise RuntimeError("cannot encode")


async def commit(reads: ReadStore, n: int, *items: object) -> None:
    await reads.commit(list(items), tracking=Tracking("analytics<-intake", f"e{n}"))


async def test_a_commit_rolled_back_leaves_nothing_remembered(tmp_path: Path) -> None:
    async with ReadStore(tmp_path / "analytics.db") as reads:
        await commit(reads, 1, envelope(1, opened("i1")))
        acked = envelope(
            2, IncidentAcknowledged(incident_id="i1", by="ana", occurred_at=T + timedelta(minutes=1))
        )
        with pytest.raises(RuntimeError):
            await commit(reads, 2, acked, Write("deadletter-analytics", [Unwritable()], None))  # type: ignore[list-item]
        resolved = IncidentResolved(
            incident_id="i1", by="ana", reason="fixed", occurred_at=T + timedelta(minutes=5)
        )
        await commit(reads, 3, envelope(3, resolved))
        doc = await reads.incident("i1")
    assert doc is not None
    assert doc["status"] == "resolved"
    assert doc["acknowledged_at"] is None  # the acknowledgement never committed
    assert doc["title"] == "Checkout down (i1)"


async def test_views_no_longer_remembered_are_read_back_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readstore, "VIEWS_REMEMBERED", 2)
    ids = [f"i{k}" for k in range(5)]
    async with ReadStore(tmp_path / "analytics.db") as reads:
        for k, incident_id in enumerate(ids):
            await commit(reads, k, envelope(k, opened(incident_id)))
        assert len(reads._views) == 2
        for k, incident_id in enumerate(ids, start=10):
            ack = IncidentAcknowledged(
                incident_id=incident_id, by="ana", occurred_at=T + timedelta(minutes=2)
            )
            await commit(reads, k, envelope(k, ack))
        docs = [await reads.incident(i) for i in ids]
    for incident_id, doc in zip(ids, docs, strict=True):
        assert doc is not None
        assert (doc["status"], doc["title"]) == ("acknowledged", f"Checkout down ({incident_id})")
        assert doc["acknowledged_at"] is not None

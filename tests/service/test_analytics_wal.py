"""The analytics read store commits on the event loop's thread with SQLite's automatic checkpoints
off, and checkpoints the WAL on its writing thread between commits: the WAL stays bounded."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.analytics import readstore
from services.analytics.readstore import ReadStore
from shared.envelope import Envelope
from shared.events import IncidentOpened, Severity
from shared.store import Tracking

T = datetime(2026, 3, 2, 10, tzinfo=UTC)


def opened(n: int) -> Envelope:
    return Envelope(
        id=f"e{n}",
        stream=f"incident-i{n}",
        version=1,
        position=n,
        event=IncidentOpened(
            incident_id=f"i{n}",
            title=f"Incident {n}",
            service="payments",
            severity=Severity.CRITICAL,
            source="test",
            reporter="test",
            occurred_at=T,
        ),
        recorded_at=T,
        source="intake",
        correlation_id=f"i{n}",
    )


async def wal_after_commits(path: Path, commits: int) -> int:
    async with ReadStore(path) as reads:
        for n in range(1, commits + 1):
            await reads.commit([opened(n)], tracking=Tracking("analytics<-intake", f"e{n}"))
            await asyncio.sleep(0)  # a consumer awaits its next page meanwhile
        size = os.path.getsize(f"{path}-wal")
        assert all([await reads.incident(f"i{n}") is not None for n in (1, commits // 2, commits)])
    return size


async def test_the_wal_is_checkpointed_between_commits_and_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readstore, "CHECKPOINT_EVERY", 10**9)
    unchecked = await wal_after_commits(tmp_path / "unchecked.db", 600)
    monkeypatch.setattr(readstore, "CHECKPOINT_EVERY", 50)
    checked = await wal_after_commits(tmp_path / "checked.db", 600)
    assert checked < unchecked / 4, (checked, unchecked)

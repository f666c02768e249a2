"""The embedded bench waits until every consumer has handled every event it takes (`bench.backlog`)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

from bench.__main__ import backlog
from services.analytics.readstore import ReadStore
from services.analytics.rebuild import read_store_path
from shared.events import IncidentOpened, Severity
from shared.settings import Settings
from shared.store import Tracking, Write, open_store
from tests.faults.audit import FOLLOWS, inputs


async def test_the_backlog_counts_the_events_each_consumer_takes_and_has_not_handled(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    opened = IncidentOpened(
        incident_id="i1",
        title="Checkout down",
        service="payments",
        severity=Severity.CRITICAL,
        source="test",
        reporter="test",
        occurred_at=datetime(2026, 3, 2, 10, tzinfo=UTC),
    )
    takes = inputs(settings)
    takers = [c for c, sources in FOLLOWS.items() if "intake" in sources and "IncidentOpened" in takes[c]]
    async with AsyncExitStack() as stack:
        stores = {
            s: await stack.enter_async_context(open_store(settings.store_url_for(s), source=s))
            for s in ("intake", "triage", "comms")
        }
        reads = await stack.enter_async_context(ReadStore(read_store_path(settings)))
        [env] = (await stores["intake"].commit([Write("incident-i1", [opened], None)])).envelopes
        assert backlog(tmp_path) == len(takers) == 3

        await stores["triage"].commit([], tracking=Tracking("triage<-intake", env.id))
        await reads.commit([env], tracking=Tracking("analytics<-intake", env.id))
        assert backlog(tmp_path) == 1
        await stores["comms"].commit([], tracking=Tracking("comms<-intake", env.id))
        assert backlog(tmp_path) == 0

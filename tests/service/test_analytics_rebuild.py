"""Rebuild: replaying every log into fresh tables reaches the state live processing reached."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.analytics import feedback
from services.analytics.app import SOURCES, project
from services.analytics.readstore import ReadStore
from services.analytics.rebuild import read_store_path, rebuild, replay, write
from shared.bus.base import tracking_name
from shared.bus.embedded import EmbeddedBus
from shared.events import (
    AlertAttached,
    AlertRepeated,
    AlertResolved,
    Event,
    FeedbackRecorded,
    IncidentAcknowledged,
    IncidentOpened,
    IncidentResolved,
    NotificationFailed,
    NotificationPlanned,
    NotificationSent,
    PriorityAssigned,
    StatusUpdatePublished,
    UpdateCadenceStarted,
)
from shared.events.base import Level, Severity
from shared.settings import Settings
from shared.store import EventStore, Write, open_store
from shared.store.memory import MemoryStore
from tests.helpers import eventually

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def history(incidents: int, seed: int = 7) -> dict[str, list[tuple[str, Event]]]:
    """A few thousand mixed events from every service, each incident's in its own streams."""
    rnd = random.Random(seed)
    out: dict[str, list[tuple[str, Event]]] = {"intake": [], "triage": [], "comms": [], "analytics": []}
    services = ["db", "api", "web", "queue", "auth"]
    for n in range(incidents):
        iid = f"inc-{n:04d}"
        at = T0 + timedelta(minutes=37 * n)
        svc = rnd.choice(services)
        sev = rnd.choice(list(Severity))
        stream = f"incident-{iid}"

        def t(minutes: float, base: datetime = at) -> datetime:
            return base + timedelta(minutes=minutes)

        intake: list[Event] = [
            IncidentOpened(
                incident_id=iid,
                title=f"{svc} trouble {n}",
                service=svc,
                severity=sev,
                source="am",
                reporter="alertmanager",
                detected_at=t(-rnd.randint(0, 9)),
                occurred_at=at,
            ),
            AlertAttached(
                incident_id=iid,
                alert_key=f"am:{n}",
                dedup_key=str(n),
                title="x",
                severity=sev,
                source="am",
                reason="new key",
                occurred_at=at,
            ),
        ]
        for r in range(rnd.randint(0, 6)):
            intake.append(
                AlertRepeated(incident_id=iid, alert_key=f"am:{n}", count=r + 2, occurred_at=t(r + 1))
            )
        if rnd.random() < 0.85:
            intake.append(IncidentAcknowledged(incident_id=iid, by="ann", occurred_at=t(rnd.randint(1, 40))))
        if rnd.random() < 0.7:
            intake.append(
                AlertResolved(incident_id=iid, alert_key=f"am:{n}", occurred_at=t(rnd.randint(41, 300)))
            )
            intake.append(IncidentResolved(incident_id=iid, by="bob", reason="fixed", occurred_at=t(301)))
        out["intake"] += [(stream, e) for e in intake]
        prio = rnd.choice(["P1", "P2", "P3", "P4", "P5"])
        out["triage"].append(
            (
                f"triage-{iid}",
                PriorityAssigned(
                    incident_id=iid,
                    priority=prio,
                    impact=Level.HIGH,
                    urgency=Level.LOW,
                    reason="matrix",
                    by="triage",
                    title=f"{svc} trouble {n}",
                    service=svc,
                    occurred_at=t(0.1),
                ),
            )
        )
        comms: list[Event] = []
        for k in range(rnd.randint(1, 3)):
            nid = f"{iid}-n{k}"
            comms.append(
                NotificationPlanned(
                    incident_id=iid,
                    notification_id=nid,
                    cause_event_id="c",
                    cause_type="IncidentOpened",
                    recipient=f"r{k}",
                    channel="email",
                    audience="responders",
                    subject="s",
                    body="b",
                    occurred_at=t(0.2),
                )
            )
            if rnd.random() < 0.8:
                comms.append(
                    NotificationSent(
                        incident_id=iid,
                        notification_id=nid,
                        channel="email",
                        recipient=f"r{k}",
                        attempt=1,
                        occurred_at=t(0.3),
                    )
                )
            else:
                comms.append(
                    NotificationFailed(
                        incident_id=iid,
                        notification_id=nid,
                        channel="email",
                        recipient=f"r{k}",
                        attempt=1,
                        error="bounced",
                        final=True,
                        occurred_at=t(0.3),
                    )
                )
        if prio in ("P1", "P2"):
            comms.append(
                UpdateCadenceStarted(
                    incident_id=iid, every_seconds=1800, next_due_at=t(30), reason="P1", occurred_at=t(1)
                )
            )
            comms.append(
                StatusUpdatePublished(
                    incident_id=iid,
                    update_id=f"{iid}-u",
                    audience="executive",
                    template="exec",
                    subject="u",
                    text="t",
                    by="carol",
                    due_at=t(30),
                    latency_seconds=rnd.randint(-60, 600),
                    next_due_at=t(60),
                    occurred_at=t(31),
                )
            )
        out["comms"] += [(f"comms-{iid}", e) for e in comms]
        if rnd.random() < 0.2:
            out["analytics"].append(
                (
                    feedback.stream_for(iid),
                    FeedbackRecorded(
                        incident_id=iid,
                        feedback_id=f"f{n}",
                        score=rnd.randint(1, 5),
                        by="cust",
                        occurred_at=t(400),
                    ),
                )
            )
    return out


async def fill(stores: dict[str, EventStore], events: dict[str, list[tuple[str, Event]]]) -> int:
    total = 0
    for source, items in events.items():
        for start in range(0, len(items), 200):
            await stores[source].commit([Write(s, [e], None) for s, e in items[start : start + 200]])
        total += len(items)
    return total


async def process_live(stores: dict[str, EventStore], reads: ReadStore) -> None:
    """What analytics does while running: the bus follows each source; a worker follows its own log."""
    bus = EmbeddedBus({s: stores[s] for s in SOURCES}, poll=0.05)
    ends = {s: (await stores[s].read_all(limit=10**9))[-1].checkpoint for s in stores}
    async with bus:
        tasks = [
            asyncio.create_task(bus.run("analytics", SOURCES, project, reads)),
            asyncio.create_task(feedback.follow(stores["analytics"], reads, poll=0.05)),
        ]

        async def caught_up() -> bool:
            return all(
                [await reads.checkpoint(tracking_name("analytics", s)) == end for s, end in ends.items()]
            )

        try:
            await eventually(caught_up, timeout=300)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_replay_reaches_the_state_live_processing_reached_and_is_faster(tmp_path: Path) -> None:
    stores: dict[str, EventStore] = {s: MemoryStore(source=s) for s in (*SOURCES, "analytics")}
    total = await fill(stores, history(300))
    assert total > 3000

    async with ReadStore(tmp_path / "live.db") as live:
        started = time.perf_counter()
        await process_live(stores, live)
        live_seconds = time.perf_counter() - started
        expected = await live.dump()

    async with ReadStore(tmp_path / "rebuilt.db") as rebuilt:
        started = time.perf_counter()
        await write(await replay(stores), rebuilt)
        rebuild_seconds = time.perf_counter() - started
        got = await rebuilt.dump()

    assert len(expected["incidents"]) == 300
    assert len(expected["timeline"]) > 3000
    assert got == expected
    print(f"\n{total} events: live {live_seconds:.2f}s, rebuild {rebuild_seconds:.2f}s")
    assert rebuild_seconds < live_seconds


async def test_rebuild_replaces_the_read_store_file_from_the_services_sqlite_logs(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    events = history(20, seed=3)
    stores = {s: open_store(settings.store_url_for(s), source=s) for s in SOURCES}
    from services.analytics.rebuild import events_url

    stores["analytics"] = open_store(events_url(settings), source="analytics")
    for store in stores.values():
        await store.__aenter__()
    try:
        await fill(stores, events)
    finally:
        for store in stores.values():
            await store.__aexit__(None, None, None)
    async with ReadStore(read_store_path(settings)) as stale:  # an old file: rebuilt over
        assert await stale.count() == 0

    report = await rebuild(settings)

    assert report.incidents == 20
    assert report.events == {s: len(events[s]) for s in (*SOURCES, "analytics")}
    async with ReadStore(read_store_path(settings)) as reads:
        assert await reads.count() == 20
        for source in (*SOURCES, "analytics"):
            assert await reads.checkpoint(tracking_name("analytics", source)) != (0, 0)
    assert "events/s" in str(report)


def test_the_rebuild_command_reports_what_it_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from shared.cli import app

    async def write_log() -> None:
        async with open_store(Settings(data_dir=tmp_path).store_url_for("intake"), source="intake") as store:
            await fill({"intake": store}, {"intake": history(3)["intake"]})

    asyncio.run(write_log())
    monkeypatch.setenv("LYNCHPIN_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["rebuild"])
    assert result.exit_code == 0, result.output
    assert "3 incidents" in result.output and "intake" in result.output

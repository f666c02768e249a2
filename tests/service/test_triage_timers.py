"""SLA clocks as durable timers, driven by a fake clock: the warning and the breach fire once
each, also when triage restarts in the middle; a hold pauses the clocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.triage.app import create_app
from services.triage.handlers import triage_stream
from services.triage.timers import Timers
from shared.bus.embedded import EmbeddedBus
from shared.clock import FakeClock
from shared.events import (
    Event,
    IncidentAcknowledged,
    IncidentOpened,
    IncidentPutOnHold,
    IncidentResumed,
    Severity,
)
from shared.policy import Policy, parse_policy
from shared.settings import Settings
from shared.store import EventStore, append, open_store
from shared.store.memory import MemoryStore
from tests.helpers import eventually, running

ADMIN = "admin-token"
NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)

# P3 (a warning on a service not in the catalogue): seconds-level targets, as in a demo.
POLICY: Policy = parse_policy(
    {"triage": {"sla": {p: {"response": 10, "resolution": 100} for p in ("P1", "P2", "P3", "P4", "P5")}}}
)


def opened(incident_id: str = "inc-1") -> IncidentOpened:
    return IncidentOpened(
        incident_id=incident_id,
        title="Queue backing up",
        service="queue",
        severity=Severity.WARNING,
        source="test",
        reporter="test",
        occurred_at=NOW,
    )


async def intake_event(intake: EventStore, event: Event) -> None:
    await append(intake, f"incident-{event.partition_key}", [event], None)


@asynccontextmanager
async def triage(
    tmp_path: Path, intake: MemoryStore, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """Triage on its own SQLite file (the same file across restarts), following `intake`."""
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, secret="s" * 32)
    store = open_store(f"sqlite://{tmp_path / 'triage.db'}", source="triage")
    app = create_app(settings, store=store, bus=EmbeddedBus({"intake": intake}), clock=clock, policy=POLICY)
    async with running({"triage": app}, ADMIN) as clients:
        yield clients["triage"], app


async def timer_events(
    client: httpx.AsyncClient, app: Any, incident_id: str = "inc-1"
) -> list[tuple[str, str]]:
    store = app.state.store
    return [
        (e.type, getattr(e.event, "kind", ""))
        for e in await store.read(triage_stream(incident_id))
        if e.type.startswith("Sla") and e.type != "SlaTargetSet"
    ]


async def test_warning_and_breach_fire_once_each_across_a_restart(tmp_path: Path) -> None:
    intake = MemoryStore(source="intake")
    clock = FakeClock(NOW)
    await intake_event(intake, opened())

    async with triage(tmp_path, intake, clock) as (client, app):

        async def clocks() -> list[dict[str, Any]] | None:
            r = await client.get("/v1/incidents/inc-1/triage")
            return r.json()["sla"] if r.status_code == 200 else None

        sla = {c["kind"]: c for c in await eventually(clocks)}
        assert sla["response"]["due_at"] == "2026-03-02T10:00:10Z"
        assert sla["response"]["warning_at"] == "2026-03-02T10:00:08Z"
        assert sla["resolution"]["due_at"] == "2026-03-02T10:01:40Z"

        clock.advance(seconds=7)
        assert await app.state.timers.tick() == 0
        clock.advance(seconds=1)  # 80% of the response target

        async def warned() -> list[tuple[str, str]] | None:
            found = await timer_events(client, app)
            return found if ("SlaWarningRaised", "response") in found else None

        assert await eventually(warned) == [("SlaWarningRaised", "response")]

    clock.advance(seconds=5)  # triage is down while the response target passes

    async with triage(tmp_path, intake, clock) as (client, app):

        async def breached() -> list[tuple[str, str]] | None:
            found = await timer_events(client, app)
            return found if ("SlaBreached", "response") in found else None

        assert await eventually(breached) == [("SlaWarningRaised", "response"), ("SlaBreached", "response")]
        [breach] = [e for e in await app.state.store.read(triage_stream("inc-1")) if e.type == "SlaBreached"]
        assert breach.event.due_at == NOW + timedelta(seconds=10)
        assert breach.event.priority == "P3" and breach.event.title == "Queue backing up"

        # Another timer worker on the same store (a second instance) finds nothing left to do.
        assert await app.state.timers.tick() == 0
        assert await Timers(app.state.timers.index).tick() == 0

        r = (await client.get("/v1/incidents/inc-1/triage")).json()
        states = {c["kind"]: c["state"] for c in r["sla"]}
        assert states == {"response": "breached", "resolution": "running"}

        await intake_event(intake, IncidentAcknowledged(incident_id="inc-1", by="ann", occurred_at=clock()))

        async def stopped() -> list[tuple[str, str]] | None:
            found = await timer_events(client, app)
            return found if ("SlaClockStopped", "response") in found else None

        await eventually(stopped)

        clock.advance(seconds=100)

        async def resolution_breached() -> list[tuple[str, str]] | None:
            found = await timer_events(client, app)
            return found if ("SlaBreached", "resolution") in found else None

        assert await eventually(resolution_breached) == [
            ("SlaWarningRaised", "response"),
            ("SlaBreached", "response"),
            ("SlaClockStopped", "response"),
            ("SlaWarningRaised", "resolution"),
            ("SlaBreached", "resolution"),
        ]


async def test_a_hold_pauses_the_clocks(tmp_path: Path) -> None:
    intake = MemoryStore(source="intake")
    clock = FakeClock(NOW)
    await intake_event(intake, opened("inc-2"))
    async with triage(tmp_path, intake, clock) as (client, app):

        async def sla() -> dict[str, Any] | None:
            r = await client.get("/v1/incidents/inc-2/triage")
            return {c["kind"]: c for c in r.json()["sla"]} if r.status_code == 200 else None

        await eventually(sla)
        clock.advance(seconds=4)
        await intake_event(
            intake, IncidentPutOnHold(incident_id="inc-2", by="ann", reason="vendor", occurred_at=clock())
        )

        async def paused() -> dict[str, Any] | None:
            got = await sla()
            return got if got and got["response"]["state"] == "paused" else None

        held = await eventually(paused)
        assert held["response"]["due_at"] is None
        assert held["response"]["elapsed_seconds"] == 4

        clock.advance(seconds=3600)  # an hour on hold: nothing falls due
        assert await app.state.timers.tick() == 0

        await intake_event(intake, IncidentResumed(incident_id="inc-2", by="ann", occurred_at=clock()))

        async def resumed() -> dict[str, Any] | None:
            got = await sla()
            return got if got and got["response"]["state"] == "running" else None

        again = await eventually(resumed)
        assert again["response"]["due_at"] == (clock() + timedelta(seconds=6)).isoformat().replace(
            "+00:00", "Z"
        )
        assert await timer_events(client, app, "inc-2") == [("SlaClockPaused", ""), ("SlaClockResumed", "")]


async def test_resolve_meets_both_clocks_reopen_restarts_resolution_close_stops_it(tmp_path: Path) -> None:
    from shared.events import IncidentClosed, IncidentReopened, IncidentResolved

    intake = MemoryStore(source="intake")
    clock = FakeClock(NOW)
    await intake_event(intake, opened("inc-3"))
    async with triage(tmp_path, intake, clock) as (client, app):

        async def states(*expected: str) -> dict[str, str] | None:
            r = await client.get("/v1/incidents/inc-3/triage")
            if r.status_code != 200:
                return None
            got = {c["kind"]: c["state"] for c in r.json()["sla"]}
            return got if tuple(got[k] for k in ("response", "resolution")) == expected else None

        await eventually(lambda: states("running", "running"))
        clock.advance(seconds=5)
        await intake_event(
            intake, IncidentResolved(incident_id="inc-3", by="ann", reason="fixed", occurred_at=clock())
        )
        await eventually(lambda: states("met", "met"))
        clock.advance(seconds=5)
        await intake_event(
            intake, IncidentReopened(incident_id="inc-3", by="bob", reason="back again", occurred_at=clock())
        )
        await eventually(lambda: states("met", "running"))
        r = (await client.get("/v1/incidents/inc-3/triage")).json()
        resolution = next(c for c in r["sla"] if c["kind"] == "resolution")
        assert resolution["elapsed_seconds"] == 5  # the time while resolved does not count
        clock.advance(seconds=10)
        await intake_event(intake, IncidentClosed(incident_id="inc-3", by="ann", occurred_at=clock()))
        await eventually(lambda: states("met", "met"))
        assert await timer_events(client, app, "inc-3") == [
            ("SlaMet", "response"),
            ("SlaMet", "resolution"),
            ("SlaClockResumed", ""),
            ("SlaMet", "resolution"),
        ]

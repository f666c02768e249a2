"""Paging as a durable timer chain, driven by a fake clock: routing an incident pages the on-call,
the next step fires once after its wait even when triage restarts in the middle, and an
acknowledgement, a resolve or a reroute stops the chain at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.triage.app import create_app
from services.triage.paging import Paging, escalation_stream
from shared.acklinks import verify_ack
from shared.bus.embedded import EmbeddedBus
from shared.clock import FakeClock
from shared.events import (
    AlertAttached,
    Event,
    IncidentAcknowledged,
    IncidentOpened,
    IncidentReopened,
    IncidentResolved,
    PageRequested,
    Severity,
)
from shared.logviews import LogViews
from shared.policy import Policy, parse_policy
from shared.settings import Settings
from shared.store import EventStore, append, open_store
from shared.store.memory import MemoryStore
from tests.helpers import eventually, running

ADMIN, SECRET = "admin-token", "s" * 32
T = datetime(2026, 3, 18, 9, tzinfo=UTC)  # a Wednesday, 10:00 in Berlin

POLICY: Policy = parse_policy(
    {
        "triage": {
            "services": {"db": {"team": "db"}},
            "routing": [{"name": "network", "team": "net", "labels": {"area": "network"}}],
        },
        "oncall": {
            "ack_base_url": "http://intake.test",
            "people": [
                {"id": "ann", "contacts": [{"kind": "email", "address": "ann@example.org"}]},
                {"id": "bob", "contacts": [{"kind": "email", "address": "bob@example.org"}]},
                {"id": "lead", "contacts": [{"kind": "slack", "address": "https://chat.example.org/lead"}]},
                {"id": "nel", "contacts": [{"kind": "email", "address": "nel@example.org"}]},
            ],
            "schedules": [
                {
                    "id": "db-primary",
                    "team": "db",
                    "timezone": "Europe/Berlin",
                    "layers": [
                        {"timezone": "Europe/Berlin", "start": "2026-03-16", "people": ["ann", "bob"]}
                    ],
                }
            ],
            "escalation_policies": [
                {
                    "id": "db",
                    "teams": ["db"],
                    "steps": [
                        {"targets": [{"kind": "schedule", "id": "db-primary"}], "wait": 60},
                        {"targets": [{"kind": "person", "id": "lead"}], "wait": 120},
                    ],
                },
                {"id": "net", "teams": ["net"], "steps": [{"targets": [{"kind": "person", "id": "nel"}]}]},
            ],
        },
    }
)


def opened(incident_id: str = "inc-1") -> IncidentOpened:
    return IncidentOpened(
        incident_id=incident_id,
        title="Primary database down",
        service="db",
        severity=Severity.CRITICAL,
        source="test",
        reporter="test",
        occurred_at=T,
    )


async def intake_event(intake: EventStore, event: Event) -> None:
    await append(intake, f"incident-{event.partition_key}", [event], None)


@asynccontextmanager
async def triage(
    tmp_path: Path, intake: MemoryStore, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """Triage on its own SQLite file (the same file across restarts), following `intake`."""
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, secret=SECRET)
    store = open_store(f"sqlite://{tmp_path / 'triage.db'}", source="triage")
    app = create_app(settings, store=store, bus=EmbeddedBus({"intake": intake}), clock=clock, policy=POLICY)
    async with running({"triage": app}, ADMIN) as clients:
        yield clients["triage"], app


async def escalation(app: Any, incident_id: str = "inc-1") -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for env in await app.state.store.read(escalation_stream(incident_id)):
        e = env.event
        match e.type:
            case "EscalationStarted":
                out.append((e.type, e.team, e.urgency))
            case "EscalationStepReached":
                out.append((e.type, e.step, e.due_at, tuple(e.paged)))
            case "PageRequested":
                out.append((e.type, e.person, e.step))
            case "EscalationStopped":
                out.append((e.type, e.reason, e.by))
    return out


def until(count: int, app: Any, incident_id: str = "inc-1") -> Any:
    async def probe() -> list[tuple[Any, ...]] | None:
        found = await escalation(app, incident_id)
        return found if len(found) >= count else None

    return probe


async def test_the_chain_pages_escalates_once_across_a_restart_and_stops_on_acknowledge(
    tmp_path: Path,
) -> None:
    intake = MemoryStore(source="intake")
    clock = FakeClock(T)
    await intake_event(intake, opened())

    async with triage(tmp_path, intake, clock) as (client, app):
        first = await eventually(until(3, app))
        assert first == [
            ("EscalationStarted", "db", "high"),
            ("EscalationStepReached", 1, T, ("ann",)),
            ("PageRequested", "ann", 1),
        ]
        [page] = [
            e.event
            for e in await app.state.store.read(escalation_stream("inc-1"))
            if e.type == "PageRequested"
        ]
        assert isinstance(page, PageRequested)
        assert [(c.kind, c.address) for c in page.contacts] == [("email", "ann@example.org")]
        assert page.ack_url.startswith("http://intake.test/v1/ack/ack1.")
        claim = verify_ack(SECRET, page.ack_url.rsplit("/", 1)[1], now=T)
        assert (claim.incident_id, claim.person, claim.expires_at) == (
            "inc-1",
            "ann",
            T + timedelta(hours=24),
        )

        clock.advance(seconds=59)
        assert await app.state.paging.tick() == 0

        r = await client.get("/v1/incidents/inc-1/escalation")
        assert r.status_code == 200, r.text
        assert r.json()["running"] and r.json()["next_due_at"] == "2026-03-18T09:01:00Z"

    clock.advance(seconds=2)  # triage is down when step 2 falls due

    async with triage(tmp_path, intake, clock) as (client, app):
        after = await eventually(until(5, app))
        assert after[3:] == [
            ("EscalationStepReached", 2, T + timedelta(seconds=60), ("lead",)),
            ("PageRequested", "lead", 2),
        ]
        # a second worker on the same store (another instance) finds nothing left to do
        assert await app.state.paging.tick() == 0
        handlers = app.state.paging.handlers
        other = Paging(handlers, POLICY.oncall, SECRET, "http://x", clock, LogViews(handlers.store))
        assert await other.tick() == 0

        await intake_event(intake, IncidentAcknowledged(incident_id="inc-1", by="lead", occurred_at=clock()))
        stopped = await eventually(until(6, app))
        assert stopped[5] == ("EscalationStopped", "acknowledged", "lead")

        clock.advance(minutes=30)  # long past the end of the chain: nothing more
        assert await app.state.paging.tick() == 0
        assert len(await escalation(app)) == 6
        body = (await client.get("/v1/incidents/inc-1/escalation")).json()
        assert (body["running"], body["stop_reason"], body["stopped_by"]) == (False, "acknowledged", "lead")
        assert {e["ack_url"] for e in body["events"] if e["type"] == "PageRequested"} == {"(hidden)"}

        report = (await client.get("/v1/oncall/report")).json()
        assert report["pages"] == 2 and report["out_of_hours"] == 0
        assert report["mtta_by_team"]["db"]["median_seconds"] == 61
        assert report["mtta_by_person"]["lead"]["count"] == 1
        assert report["pages_per_person_week"] == {"ann": {"2026-W12": 1}, "lead": {"2026-W12": 1}}


async def test_resolving_stops_the_chain_and_a_reroute_hands_it_to_the_new_team(tmp_path: Path) -> None:
    intake = MemoryStore(source="intake")
    clock = FakeClock(T)
    await intake_event(intake, opened("inc-1"))
    await intake_event(intake, opened("inc-2"))

    async with triage(tmp_path, intake, clock) as (_, app):
        await eventually(until(3, app, "inc-1"))
        await eventually(until(3, app, "inc-2"))

        await intake_event(
            intake, IncidentResolved(incident_id="inc-1", by="ann", reason="failover", occurred_at=T)
        )
        done = await eventually(until(4, app, "inc-1"))
        assert done[3] == ("EscalationStopped", "resolved", "ann")

        network = AlertAttached(
            incident_id="inc-2",
            alert_key="k",
            dedup_key="k",
            title="packet loss",
            severity=Severity.CRITICAL,
            source="test",
            reason="grouped",
            labels={"area": "network"},
            occurred_at=T,
        )
        await intake_event(intake, network)
        moved = await eventually(until(7, app, "inc-2"))
        assert moved[3:] == [
            ("EscalationStopped", "rerouted", "routed to net"),
            ("EscalationStarted", "net", "high"),
            ("EscalationStepReached", 1, T, ("nel",)),
            ("PageRequested", "nel", 1),
        ]

        clock.advance(minutes=5)
        await app.state.paging.tick()
        assert len(await escalation(app, "inc-1")) == 4  # resolved: no step 2


async def test_a_reopened_incident_pages_again_from_the_first_step(tmp_path: Path) -> None:
    intake = MemoryStore(source="intake")
    clock = FakeClock(T)
    await intake_event(intake, opened("inc-1"))
    async with triage(tmp_path, intake, clock) as (_, app):
        await eventually(until(3, app))
        await intake_event(
            intake, IncidentResolved(incident_id="inc-1", by="ann", reason="fixed", occurred_at=T)
        )
        await eventually(until(4, app))

        clock.advance(minutes=30)
        later = clock()
        back = IncidentReopened(incident_id="inc-1", by="bob", reason="it is down again", occurred_at=later)
        await intake_event(intake, back)
        again = await eventually(until(7, app))
        assert again[4:] == [
            ("EscalationStarted", "db", "high"),
            ("EscalationStepReached", 1, later, ("ann",)),
            ("PageRequested", "ann", 1),
        ]
        clock.advance(minutes=2)
        await app.state.paging.tick()
        assert (await eventually(until(9, app)))[7:] == [
            ("EscalationStepReached", 2, later + timedelta(minutes=1), ("lead",)),
            ("PageRequested", "lead", 2),
        ]


async def test_schedules_answer_who_is_on_call_and_the_shift_list(tmp_path: Path) -> None:
    intake = MemoryStore(source="intake")
    async with triage(tmp_path, intake, FakeClock(T)) as (client, _):
        now = (await client.get("/v1/schedules/db-primary/oncall")).json()
        assert (now["person"], now["source"]) == ("ann", "layer layer")
        later = (
            await client.get("/v1/schedules/db-primary/oncall", params={"at": "2026-03-30T07:00:00Z"})
        ).json()
        assert later["person"] == "ann"  # the third week wraps round to ann, at 09:00 CEST
        r = await client.get(
            "/v1/schedules/db-primary/shifts",
            params={"from": "2026-03-23T00:00:00Z", "to": "2026-04-01T00:00:00Z"},
        )
        assert r.status_code == 200, r.text
        assert [(s["person"], s["start"], s["start_local"]) for s in r.json()["shifts"]] == [
            ("ann", "2026-03-23T00:00:00Z", "2026-03-23T01:00:00+01:00"),
            ("bob", "2026-03-23T08:00:00Z", "2026-03-23T09:00:00+01:00"),
            ("ann", "2026-03-30T07:00:00Z", "2026-03-30T09:00:00+02:00"),  # CEST,
        ]
        assert r.json()["gaps"] == []
        early = await client.get(
            "/v1/schedules/db-primary/shifts",
            params={"from": "2026-03-16T00:00:00Z", "to": "2026-03-17T00:00:00Z"},
        )
        [gap] = early.json()["gaps"]  # before the rotation's first shift (09:00 CET)
        assert (gap["start"], gap["end"], gap["end_local"]) == (
            "2026-03-16T00:00:00Z",
            "2026-03-16T08:00:00Z",
            "2026-03-16T09:00:00+01:00",
        )
        assert (await client.get("/v1/schedules/nope/oncall")).status_code == 404
        bad = await client.get("/v1/schedules/db-primary/oncall", params={"at": "2026-03-30T07:00:00"})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        bad = await client.get(
            "/v1/schedules/db-primary/shifts", params={"from": "2026-03-23T00:00:00Z", "to": "x"}
        )
        assert bad.status_code == 422
        assert (await client.get("/v1/escalation-policies/db")).json()["steps"][0]["wait"] == "PT1M"
        assert [s["on_call_now"] for s in (await client.get("/v1/schedules")).json()] == ["ann"]


async def test_an_override_added_over_the_api_is_who_gets_paged(tmp_path: Path) -> None:
    intake = MemoryStore(source="intake")
    clock = FakeClock(T)
    async with triage(tmp_path, intake, clock) as (client, _):
        cover = {
            "person": "bob",
            "start": "2026-03-18T08:00:00Z",
            "end": "2026-03-18T12:00:00Z",
            "reason": "ann ill",
        }
        r = await client.post(
            "/v1/schedules/db-primary/overrides", json=cover, headers={"Idempotency-Key": "k1"}
        )
        assert r.status_code == 201, r.text
        override_id = r.json()["id"]
        again = await client.post(
            "/v1/schedules/db-primary/overrides", json=cover, headers={"Idempotency-Key": "k1"}
        )
        assert again.json()["id"] == override_id
        listed = (await client.get("/v1/schedules/db-primary/overrides")).json()
        assert [(o["id"], o["person"], o["source"]) for o in listed] == [(override_id, "bob", "api")]
        now = (await client.get("/v1/schedules/db-primary/oncall")).json()
        assert (now["person"], now["source"], now["override_reason"]) == ("bob", "override", "ann ill")

        bad = await client.post("/v1/schedules/db-primary/overrides", json={**cover, "person": "zed"})
        assert bad.status_code == 422 and "zed" in bad.json()["detail"]
        bad = await client.post("/v1/schedules/db-primary/overrides", json={**cover, "end": cover["start"]})
        assert bad.status_code == 422
        assert (await client.post("/v1/schedules/nope/overrides", json=cover)).status_code == 404

    async with triage(tmp_path, intake, clock) as (client, app):  # overrides survive a restart
        await intake_event(intake, opened())
        found = await eventually(until(3, app))
        assert found[1] == ("EscalationStepReached", 1, T, ("bob",))

        assert (await client.delete(f"/v1/schedules/db-primary/overrides/{override_id}")).status_code == 204
        assert (await client.get("/v1/schedules/db-primary/oncall")).json()["person"] == "ann"
        assert (await client.delete(f"/v1/schedules/db-primary/overrides/{override_id}")).status_code == 404

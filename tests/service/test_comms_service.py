"""Comms in-process on memory stores, fed constructed source events, on a FakeClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from services.comms.app import create_app
from services.comms.timers import Timers
from shared.auth import Role, sign_token
from shared.bus.embedded import EmbeddedBus
from shared.clock import FakeClock
from shared.events import (
    Event,
    IncidentOpened,
    IncidentResolved,
    Level,
    MajorIncidentAccepted,
    PriorityAssigned,
    Severity,
)
from shared.policy import Policy, parse_policy
from shared.settings import Settings
from shared.store import append
from shared.store.memory import MemoryStore
from tests.helpers import eventually, running
from tests.receivers import webhook_receiver

ADMIN, SECRET = "admin-token", "s" * 32
T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


@dataclass
class Rig:
    api: httpx.AsyncClient
    clock: FakeClock
    intake: MemoryStore
    triage: MemoryStore
    comms: MemoryStore

    async def emit(self, store: MemoryStore, event: Event) -> None:
        stream = f"{'incident' if store is self.intake else 'triage'}-{event.partition_key}"
        await append(store, stream, [event], None)

    async def open_p1(self, incident_id: str, service: str = "api") -> None:
        now = self.clock()
        await self.emit(
            self.intake,
            IncidentOpened(
                incident_id=incident_id,
                title=f"{service} down",
                service=service,
                severity=Severity.CRITICAL,
                source="test",
                reporter="test",
                occurred_at=now,
            ),
        )
        await self.emit(
            self.triage,
            PriorityAssigned(
                incident_id=incident_id,
                priority="P1",
                impact=Level.HIGH,
                urgency=Level.HIGH,
                reason="matrix",
                by="triage",
                title=f"{service} down",
                service=service,
                occurred_at=now,
            ),
        )

    async def events(self, stream: str, kind: str) -> list[Event]:
        return [e.event for e in await self.comms.read(stream) if e.event.type == kind]


@asynccontextmanager
async def rig(comms: dict[str, Any] | None = None) -> AsyncIterator[Rig]:
    policy: Policy = parse_policy({"comms": {"timer_tick": 0.02, **(comms or {})}})
    clock = FakeClock(T0)
    stores = {name: MemoryStore(source=name) for name in ("intake", "triage", "comms")}
    bus = EmbeddedBus({"intake": stores["intake"], "triage": stores["triage"]}, poll=0.02)
    settings = Settings(admin_token=ADMIN, secret=SECRET)
    app = create_app(settings, store=stores["comms"], bus=bus, clock=clock, policy=policy)
    async with running({"comms": app}, ADMIN) as c:
        yield Rig(c["comms"], clock, stores["intake"], stores["triage"], stores["comms"])


def as_role(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign_token(SECRET, role.value, role)}"}


LEAD = {"id": "lead", "audience": "management", "channels": [{"kind": "email", "address": "lead@x.org"}]}


async def test_stakeholders_lists_and_subscriptions_crud_with_precise_errors() -> None:
    async with rig(
        {"stakeholders": [{"id": "from-file", "channels": [{"kind": "log", "address": "ops"}]}]}
    ) as r:
        assert [s["id"] for s in (await r.api.get("/v1/stakeholders")).json()] == ["from-file", "responders"]
        assert (await r.api.post("/v1/stakeholders", json=LEAD)).status_code == 201
        dup = await r.api.post("/v1/stakeholders", json=LEAD)
        assert dup.status_code == 409 and dup.headers["content-type"] == "application/problem+json"
        bad = await r.api.post(
            "/v1/stakeholders", json={**LEAD, "id": "x", "channels": [{"kind": "email", "address": "nope"}]}
        )
        assert bad.status_code == 422 and "channels" in bad.json()["detail"]
        metadata = {
            **LEAD,
            "id": "m",
            "channels": [{"kind": "webhook", "address": "http://169.254.169.254/"}],
        }
        refused = await r.api.post("/v1/stakeholders", json=metadata)
        assert refused.status_code == 422 and "metadata" in refused.json()["detail"]
        viewer = await r.api.post("/v1/stakeholders", json={**LEAD, "id": "v"}, headers=as_role(Role.VIEWER))
        assert viewer.status_code == 403
        moved = {**LEAD, "channels": [{"kind": "email", "address": "lead2@x.org"}]}
        assert (await r.api.put("/v1/stakeholders/lead", json=moved)).status_code == 200
        assert (await r.api.get("/v1/stakeholders/lead")).json()["channels"][0]["address"] == "lead2@x.org"

        assert (await r.api.post("/v1/lists", json={"id": "l", "members": ["ghost"]})).status_code == 422
        assert (await r.api.post("/v1/lists", json={"id": "l", "members": ["lead"]})).status_code == 201
        sub = {"id": "s", "list": "l", "services": ["api"], "major_only": True}
        assert (await r.api.post("/v1/subscriptions", json=sub)).status_code == 201
        assert (await r.api.post("/v1/subscriptions", json={"id": "t", "list": "nope"})).status_code == 422
        both = await r.api.post("/v1/subscriptions", json={"id": "u", "list": "l", "stakeholder": "lead"})
        assert both.status_code == 422
        assert [s["id"] for s in (await r.api.get("/v1/subscriptions")).json()] == ["responders", "s"]
        assert (await r.api.delete("/v1/subscriptions/s")).status_code == 204
        assert (await r.api.delete("/v1/subscriptions/s")).status_code == 404
        assert (await r.api.delete("/v1/stakeholders/from-file")).status_code == 204
        assert "from-file" not in [s["id"] for s in (await r.api.get("/v1/stakeholders")).json()]


async def test_preview_renders_against_the_incident_and_reports_broken_templates() -> None:
    async with rig() as r:
        await r.open_p1("i1")
        await eventually(lambda: r.events("comms-i1", "NotificationPlanned"))
        ok = await r.api.post(
            "/v1/templates/preview",
            json={"incident_id": "i1", "audience": "management", "fields": {"next_steps": "fail over"}},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["subject"] == "[P1] api down (api)"
        assert "Next steps: fail over" in ok.json()["body"]
        custom = await r.api.post(
            "/v1/templates/preview", json={"incident_id": "i1", "subject": "{{ incident.service | upper }}!"}
        )
        assert custom.json()["subject"] == "API!"
        broken = await r.api.post("/v1/templates/preview", json={"incident_id": "i1", "body": "{% for %}"})
        assert broken.status_code == 422 and "does not compile" in broken.json()["detail"]
        missing = await r.api.post("/v1/templates/preview", json={"incident_id": "nope"})
        assert missing.status_code == 404


async def test_an_accepted_major_incident_reminds_then_escalates_once_and_updates_record_latency() -> None:
    cadence = {"major_incident": 1800, "reminder_after": 0, "escalate_after": 900}
    async with rig({"cadence": cadence}) as r:
        await r.open_p1("i1")
        await r.emit(
            r.triage,
            MajorIncidentAccepted(
                incident_id="i1", by="im", business_impact="no orders", notes="", occurred_at=r.clock()
            ),
        )
        [started] = await eventually(lambda: r.events("comms-i1", "UpdateCadenceStarted"))
        assert started.next_due_at == T0.replace(minute=30)  # type: ignore[attr-defined]

        r.clock.advance(minutes=30)
        [reminder] = await eventually(lambda: r.events("comms-i1", "StatusUpdateOverdue"))
        assert (reminder.level, reminder.role) == ("reminder", "communications_manager")  # type: ignore[attr-defined]
        # a second timer worker (a restart, another instance) recomputes from the log: nothing twice
        app = r.api._transport.app  # type: ignore[attr-defined]
        handlers = app.state.handlers
        fresh = Timers(r.comms, r.clock, handlers.policy, handlers.fire_overdue, handlers.flush_digest)
        assert await fresh.tick() == 0
        r.clock.advance(minutes=15)
        assert await fresh.tick() + await app.state.timers.tick() <= 1
        overdue = await eventually(lambda: _at_least(r.events("comms-i1", "StatusUpdateOverdue"), 2))
        assert [e.level for e in overdue] == ["reminder", "escalation"]  # type: ignore[attr-defined]
        timers = r.api._transport.app.state.timers  # type: ignore[attr-defined]
        assert await timers.tick() == 0  # nothing fires twice

        update = {"audience": "end_users", "text": "We are failing over"}
        forbidden = await r.api.post("/v1/incidents/i1/updates", json=update, headers=as_role(Role.RESPONDER))
        assert forbidden.status_code == 403
        cm = as_role(Role.COMMUNICATIONS_MANAGER) | {"Idempotency-Key": "u-1"}
        first = await r.api.post("/v1/incidents/i1/updates", json=update, headers=cm)
        assert first.status_code == 201, first.text
        assert first.json()["latency_seconds"] == 15 * 60  # due at 09:30, published at 09:45
        again = await r.api.post("/v1/incidents/i1/updates", json=update, headers=cm)
        assert again.json()["update_id"] == first.json()["update_id"]
        assert len(await r.events("comms-i1", "StatusUpdatePublished")) == 1
        empty = await r.api.post("/v1/incidents/i1/updates", json={"audience": "all"})
        assert empty.status_code == 422

        await r.emit(
            r.intake, IncidentResolved(incident_id="i1", by="x", reason="fixed", occurred_at=r.clock())
        )
        await eventually(lambda: r.events("comms-i1", "UpdateCadenceStopped"))
        r.clock.advance(hours=3)
        assert await timers.tick() == 0


async def test_dead_lettered_notifications_are_listed_and_retryable() -> None:
    async with webhook_receiver(fail_first=2) as hook:
        comms = {
            "outbound": {"allow": ["127.0.0.1"]},
            "retry": {"attempts": 2, "first_delay": 0.01, "max_delay": 0.02},
            "stakeholders": [{"id": "h", "channels": [{"kind": "webhook", "address": hook.url}]}],
            "subscriptions": [{"id": "h", "stakeholder": "h"}],
        }
        async with rig(comms) as r:
            await r.open_p1("i1")

            async def failed() -> list[dict[str, Any]]:
                return list((await r.api.get("/v1/notifications", params={"status": "failed"})).json())

            [dead] = await eventually(failed)
            assert dead["stakeholder"] == "h" and dead["error"].startswith("HTTP 500")
            assert hook.failed == 2 and not hook.received
            retried = await r.api.post(f"/v1/notifications/{dead['notification_id']}/retry")
            assert retried.status_code == 202, retried.text
            await eventually(lambda: _async(hook.received))

            async def sent() -> list[dict[str, Any]]:
                items = (await r.api.get("/v1/incidents/i1/notifications")).json()
                return [n for n in items if n["stakeholder"] == "h" and n["status"] == "sent"]

            await eventually(sent)
            again = await r.api.post(f"/v1/notifications/{dead['notification_id']}/retry")
            assert again.status_code == 409
            assert (await r.api.post("/v1/notifications/unknown/retry")).status_code == 404


async def test_a_webhook_outside_the_allowlist_falls_back_without_sending() -> None:
    async with webhook_receiver() as hook:
        comms = {
            "stakeholders": [
                {
                    "id": "h",
                    "channels": [{"kind": "webhook", "address": hook.url}, {"kind": "log", "address": "ops"}],
                }
            ],
            "subscriptions": [{"id": "h", "stakeholder": "h"}],
        }
        async with rig(comms) as r:
            await r.open_p1("i1")

            async def delivered() -> list[dict[str, Any]]:
                items = (await r.api.get("/v1/incidents/i1/notifications")).json()
                return [n for n in items if n["stakeholder"] == "h" and n["status"] == "sent"]

            [note] = await eventually(delivered)
            assert note["delivered_via"] == "log" and "allow" in (note["error"] or "")
            assert hook.received == []


async def test_an_alert_storm_becomes_a_few_messages_and_one_digest_per_recipient() -> None:
    comms = {
        "coalesce": {"window": 60, "max_per_window": 3},
        "stakeholders": [LEAD],
        "subscriptions": [{"id": "lead", "stakeholder": "lead"}],
    }
    async with rig(comms) as r:
        for n in range(12):
            await r.open_p1(f"s{n}")

        async def handled() -> list[dict[str, Any]]:
            items = (await r.api.get("/v1/notifications")).json()
            mine = [n for n in items if n["stakeholder"] == "lead"]
            return mine if len(mine) == 12 else []

        mine = await eventually(handled)
        assert sorted(n["status"] for n in mine).count("coalesced") == 9
        r.clock.advance(seconds=61)

        async def digests() -> list[dict[str, Any]]:
            items = (await r.api.get("/v1/notifications")).json()
            return [n for n in items if n["cause_type"] == "Digest" and n["stakeholder"] == "lead"]

        [digest] = await eventually(digests)
        assert digest["subject"] == "9 incident notifications held back"
        timers = r.api._transport.app.state.timers  # type: ignore[attr-defined]
        assert await timers.tick() == 0


async def _at_least(probe: Any, n: int) -> Any:
    items = await probe
    return items if len(items) >= n else None


async def _async(value: Any) -> Any:
    return value

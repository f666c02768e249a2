"""Grouping windows, resolve rules, maintenance windows and heartbeats, driven by a fake clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from shared.auth import Role
from shared.events import AlertAttached, AlertSuppressed, HeartbeatExpired, IncidentOpened
from shared.policy.intake import IntakePolicy, MaintenanceWindow
from shared.store.memory import MemoryStore
from tests.helpers import eventually
from tests.service.test_intake_support import START, bearer, intake, token


def alert(key: str, group: str | None = "checkout-latency", **extra: Any) -> dict[str, Any]:
    body = {"title": f"Latency {key}", "service": "checkout", "severity": "high", "dedup_key": key, **extra}
    if group is not None:
        body["group_key"] = group
    return body


async def test_a_group_joins_its_open_incident_only_within_the_window() -> None:
    async with intake() as i:
        first = (await i.client.post("/v1/alerts", json=alert("a"))).json()
        i.clock.advance(minutes=30)
        second = (await i.client.post("/v1/alerts", json=alert("b"))).json()
        assert second["action"] == "attached" and second["incident_id"] == first["incident_id"]
        i.clock.advance(hours=2)
        third = (await i.client.post("/v1/alerts", json=alert("c"))).json()
        assert third["action"] == "opened" and third["incident_id"] != first["incident_id"]
        [*_, why] = await i.store.read(f"incident-{third['incident_id']}")
        assert isinstance(why.event, AlertAttached) and "outside the 3600s window" in why.event.reason
        fourth = (await i.client.post("/v1/alerts", json=alert("d"))).json()
        assert fourth["incident_id"] == third["incident_id"]  # the group now leads to the new incident
        other = (await i.client.post("/v1/alerts", json=alert("e", group=None))).json()
        assert other["action"] == "opened"  # no group: its own incident


async def test_a_group_never_joins_a_resolved_incident() -> None:
    async with intake() as i:
        first = (await i.client.post("/v1/alerts", json=alert("a"))).json()
        await i.client.post(
            f"/v1/incidents/{first['incident_id']}/resolve", headers=bearer(token(Role.RESPONDER))
        )
        second = (await i.client.post("/v1/alerts", json=alert("b"))).json()
        assert second["action"] == "opened" and second["incident_id"] != first["incident_id"]


async def resolve_rule_outcome(rule: str) -> list[str]:
    """Three alerts a, b, c in one group; resolve a, then c, then b; the incident's status after each."""
    async with intake() as i:
        _, key = await i.integration(
            name=rule, source_type="canonical", default_service="x", resolve_rule=rule
        )
        headers = bearer(key)
        incident = ""
        for k in "abc":
            incident = (await i.client.post("/v1/alerts", json=alert(k), headers=headers)).json()[
                "incident_id"
            ]
        statuses = []
        for k in "acb":
            await i.client.post("/v1/alerts", json=alert(k, status="resolved"), headers=headers)
            statuses.append((await i.incident(incident))["status"])
        return statuses


async def test_resolve_rules_all_first_last_never() -> None:
    assert await resolve_rule_outcome("all") == ["open", "open", "resolved"]
    assert await resolve_rule_outcome("first") == ["resolved", "resolved", "resolved"]
    assert await resolve_rule_outcome("last") == ["open", "resolved", "resolved"]
    assert await resolve_rule_outcome("never") == ["open", "open", "open"]


async def test_maintenance_windows_record_alerts_and_open_nothing() -> None:
    policy = IntakePolicy(
        maintenance=(
            MaintenanceWindow(
                id="db-upgrade",
                service="db",
                starts_at=START,
                ends_at=START + timedelta(hours=1),
                reason="upgrade",
            ),
        )
    )
    async with intake(policy=policy) as i:
        body = {"title": "Replica lag", "service": "db", "severity": "critical", "dedup_key": "lag"}
        r = await i.client.post("/v1/alerts", json=body)
        assert r.status_code == 202 and r.json()["action"] == "suppressed"
        [suppressed] = [e.event for e in await i.events("alert-") if isinstance(e.event, AlertSuppressed)]
        assert suppressed.window_id == "db-upgrade" and suppressed.partition_key == "db"
        assert not [e for e in await i.events("incident-")]

        later = START + timedelta(hours=2)
        window = {"service": "checkout", "starts_at": START.isoformat(), "ends_at": later.isoformat()}
        r = await i.client.post("/v1/maintenance-windows", json=window, headers=bearer(token(Role.RESPONDER)))
        assert r.status_code == 201
        r = await i.client.post("/v1/alerts", json=alert("a"))
        assert r.json()["action"] == "suppressed"
        listed = (await i.client.get("/v1/maintenance-windows", headers=bearer(token(Role.VIEWER)))).json()
        assert {w["service"] for w in listed} == {"db", "checkout"}

        i.clock.advance(hours=3)
        assert (await i.client.post("/v1/alerts", json=body)).json()["action"] == "opened"
        bad = {**window, "ends_at": START.isoformat()}
        r = await i.client.post("/v1/maintenance-windows", json=bad, headers=bearer(token(Role.RESPONDER)))
        assert r.status_code == 422


async def test_a_heartbeat_that_expires_opens_an_incident_and_its_return_resolves_it() -> None:
    store = MemoryStore(source="intake")
    async with intake(store=store) as i:
        r = await i.client.post(
            "/v1/heartbeats/nightly-backup", json={"timeout_seconds": 60, "service": "backup"}
        )
        assert r.status_code == 202 and r.json()["status"] == "ok"
        i.clock.advance(seconds=30)
        await i.client.post("/v1/heartbeats/nightly-backup")  # keeps its timeout and service
        i.clock.advance(seconds=45)
        assert (
            await i.app.state.intake.expire_heartbeat("nightly-backup") is None
        )  # due 60s after the last beat

        i.clock.advance(seconds=20)

        async def expired() -> list[HeartbeatExpired]:
            return [e.event for e in await i.events("heartbeat-") if isinstance(e.event, HeartbeatExpired)]

        [expiry] = await eventually(expired)
        assert expiry.due_at == START + timedelta(seconds=90)
        opened = (await i.store.read(f"incident-{expiry.incident_id}"))[0].event
        assert (
            isinstance(opened, IncidentOpened) and opened.service == "backup" and opened.source == "heartbeat"
        )
        assert opened.occurred_at == expiry.due_at
        i.clock.advance(minutes=10)
        assert await i.app.state.intake.expire_heartbeat("nightly-backup") is None  # expires once
        assert len(await expired()) == 1

        r = await i.client.post("/v1/heartbeats/nightly-backup")
        assert r.json()["status"] == "ok"
        assert (await i.incident(expiry.incident_id))["status"] == "resolved"
        assert [e.type for e in await i.events("heartbeat-")][-2:] == [
            "HeartbeatReceived",
            "HeartbeatRecovered",
        ]
        listed = (await i.client.get("/v1/heartbeats", headers=bearer(token(Role.VIEWER)))).json()
        assert [(h["name"], h["status"]) for h in listed] == [("nightly-backup", "ok")]


async def test_heartbeat_timers_survive_a_restart() -> None:
    store = MemoryStore(source="intake")
    async with intake(store=store) as i:
        await i.client.post("/v1/heartbeats/etl", json={"timeout_seconds": 300})
        clock = i.clock
    clock.advance(minutes=10)  # expires while intake is down
    async with intake(store=store, clock=clock) as again:

        async def opened() -> list[str]:
            return [e.type for e in await again.events("incident-") if e.type == "IncidentOpened"]

        assert await eventually(opened) == ["IncidentOpened"]


async def test_fifty_concurrent_copies_over_http_open_one_incident_and_a_group_storm_too() -> None:
    async with intake() as i:
        copies = await asyncio.gather(*(i.client.post("/v1/alerts", json=alert("same")) for _ in range(50)))
        assert {r.status_code for r in copies} == {202}
        assert len({r.json()["incident_id"] for r in copies}) == 1
        assert sorted(r.json()["action"] for r in copies).count("opened") == 1

        storm = await asyncio.gather(
            *(i.client.post("/v1/alerts", json=alert(f"k{n}", group="storm")) for n in range(50))
        )
        assert len({r.json()["incident_id"] for r in storm}) == 1
        assert [r.json()["action"] for r in storm].count("opened") == 1

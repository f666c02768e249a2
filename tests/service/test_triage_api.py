"""Triage's HTTP API in-process: priority override, the major-incident decisions and who may make
them, roles and handovers, role gaps, problems and suggestions, the policy in force."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.triage.app import create_app
from shared.auth import Role, sign_token
from shared.bus.embedded import EmbeddedBus
from shared.clock import FakeClock
from shared.events import AlertAttached, Event, IncidentOpened, Severity
from shared.policy import parse_policy
from shared.settings import Settings
from shared.store import append
from shared.store.memory import MemoryStore
from tests.helpers import eventually, running

SECRET = "s" * 32
ADMIN = "admin-token"
NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)
POLICY = parse_policy(
    {
        "triage": {
            "services": {"payments": {"team": "payments-team", "criticality": "business_critical"}},
            "roles": {"gap_minutes": 5},
            "problems": {"recurrences": 2, "days": 7},
        }
    }
)


def token(subject: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {sign_token(SECRET, subject, role)}"}


RESPONDER = token("bob", Role.RESPONDER)
MANAGER = token("ima", Role.INCIDENT_MANAGER)
COMMS = token("cam", Role.COMMUNICATIONS_MANAGER)
VIEWER = token("val", Role.VIEWER)


@asynccontextmanager
async def triage() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryStore, FakeClock]]:
    intake = MemoryStore(source="intake")
    clock = FakeClock(NOW)
    settings = Settings(admin_token=ADMIN, secret=SECRET)
    app = create_app(
        settings,
        store=MemoryStore(source="triage"),
        bus=EmbeddedBus({"intake": intake}),
        clock=clock,
        policy=POLICY,
    )
    async with running({"triage": app}, ADMIN) as clients:
        yield clients["triage"], intake, clock


async def publish(intake: MemoryStore, *events: Event) -> None:
    for event in events:
        await append(intake, f"incident-{event.partition_key}", [event], None)


def opened(
    incident_id: str, service: str = "payments", severity: Severity = Severity.WARNING
) -> IncidentOpened:
    return IncidentOpened(
        incident_id=incident_id,
        title=f"Trouble {incident_id}",
        service=service,
        severity=severity,
        source="test",
        reporter="test",
        occurred_at=NOW,
    )


async def triaged(client: httpx.AsyncClient, incident_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await client.get(f"/v1/incidents/{incident_id}/triage")
        return r.json() if r.status_code == 200 else None

    return await eventually(probe)


async def test_priority_team_and_an_override_with_its_reason() -> None:
    async with triage() as (client, intake, _):
        await publish(intake, opened("a"))
        got = await triaged(client, "a")
        assert (got["priority"], got["team"], got["rule"]) == ("P2", "payments-team", "service-owner")
        assert "business-critical -> impact high" in got["priority_reason"]

        r = await client.post("/v1/incidents/a/priority", json={"priority": "P1"}, headers=RESPONDER)
        assert r.status_code == 422 and "reason" in r.json()["detail"]
        r = await client.post(
            "/v1/incidents/a/priority", json={"priority": "P1", "reason": "checkout down"}, headers=VIEWER
        )
        assert r.status_code == 403
        r = await client.post(
            "/v1/incidents/a/priority", json={"priority": "P1", "reason": "checkout down"}, headers=RESPONDER
        )
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["priority"], got["priority_reason"], got["priority_by"]) == ("P1", "checkout down", "bob")
        response = next(c for c in got["sla"] if c["kind"] == "response")
        assert response["target_seconds"] == 15 * 60
        # P1 on a business-critical service: proposed automatically
        assert got["major"]["status"] == "proposed" and got["major"]["automatic"]

        r = await client.post(
            "/v1/incidents/nope/priority", json={"priority": "P1", "reason": "x"}, headers=RESPONDER
        )
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_only_an_incident_manager_decides_on_a_major_incident() -> None:
    async with triage() as (client, intake, clock):
        await publish(intake, opened("m", service="search"))
        await triaged(client, "m")
        r = await client.post("/v1/incidents/m/major/propose", json={}, headers=RESPONDER)
        assert r.status_code == 422
        r = await client.post(
            "/v1/incidents/m/major/propose", json={"reason": "all search down"}, headers=RESPONDER
        )
        assert r.status_code == 200 and r.json()["major"]["status"] == "proposed"
        again = await client.post(
            "/v1/incidents/m/major/propose", json={"reason": "again"}, headers=RESPONDER
        )
        assert again.status_code == 409

        decision = {"business_impact": "no one can search", "notes": "bridge open"}
        for who in (RESPONDER, COMMS, VIEWER):
            r = await client.post("/v1/incidents/m/major/accept", json=decision, headers=who)
            assert r.status_code == 403, r.text
            r = await client.post("/v1/incidents/m/major/reject", json={"reason": "no"}, headers=who)
            assert r.status_code == 403
        r = await client.post("/v1/incidents/m/major/accept", json={"notes": "x"}, headers=MANAGER)
        assert r.status_code == 422 and "business_impact" in r.json()["detail"]

        listed = (await client.get("/v1/major-incidents?status=proposed", headers=VIEWER)).json()
        assert [i["incident_id"] for i in listed] == ["m"]

        r = await client.post("/v1/incidents/m/major/accept", json=decision, headers=MANAGER)
        assert r.status_code == 200, r.text
        major = r.json()["major"]
        assert (major["status"], major["decided_by"], major["business_impact"]) == (
            "accepted",
            "ima",
            "no one can search",
        )
        assert major["required_roles"] == ["incident_manager", "communications_manager"]
        assert major["missing_roles"] == ["incident_manager", "communications_manager"]
        assert (major["post_incident_review"], major["close_allowed"]) == ("pending", False)
        r = await client.post("/v1/incidents/m/major/reject", json={"reason": "late"}, headers=MANAGER)
        assert r.status_code == 409
        assert (await client.get("/v1/major-incidents?status=proposed")).json() == []
        assert [
            i["incident_id"] for i in (await client.get("/v1/major-incidents?status=accepted")).json()
        ] == ["m"]
        assert (await client.get("/v1/major-incidents?status=bogus")).status_code == 422

        # Roles: the incident manager arrives, the communications manager never does.
        r = await client.post(
            "/v1/incidents/m/roles",
            json={"action": "assign", "role": "incident_manager", "person": "ann"},
            headers=RESPONDER,
        )
        assert r.status_code == 200 and r.json()["roles"] == {"incident_manager": ["ann"]}
        clock.advance(minutes=5)

        async def gap() -> list[str] | None:
            store = client._transport.app.state.store  # type: ignore[attr-defined]
            found = [e.event.role for e in await store.read("triage-m") if e.type == "RoleGapDetected"]
            return found or None

        assert await eventually(gap) == ["communications_manager"]

        handover = {
            "role": "incident_manager",
            "from": "ann",
            "to": "ben",
            "briefing": {"current_state": "failing over", "open_actions": ["check replicas"]},
        }
        r = await client.post("/v1/incidents/m/handovers", json=handover, headers=RESPONDER)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["roles"] == {"incident_manager": ["ben"]}
        assert [(t["person"], t["via"], t["relinquished_at"] is None) for t in got["tenure"]] == [
            ("ann", "assignment", False),
            ("ben", "handover", True),
        ]
        r = await client.post("/v1/incidents/m/handovers", json=handover, headers=RESPONDER)
        assert r.status_code == 409

        r = await client.post("/v1/incidents/m/major/review", json={"summary": "lessons"}, headers=MANAGER)
        assert r.json()["major"]["post_incident_review"] == "done"
        assert r.json()["major"]["close_allowed"] is True


async def test_a_rejection_needs_a_reason() -> None:
    async with triage() as (client, intake, _):
        await publish(intake, opened("r", service="search"))
        await triaged(client, "r")
        await client.post("/v1/incidents/r/major/propose", json={"reason": "maybe"}, headers=RESPONDER)
        r = await client.post("/v1/incidents/r/major/reject", json={"reason": ""}, headers=MANAGER)
        assert r.status_code == 422
        r = await client.post("/v1/incidents/r/major/reject", json={"reason": "one user"}, headers=MANAGER)
        assert r.json()["major"]["status"] == "rejected"
        assert r.json()["major"]["rejection_reason"] == "one user"


async def test_problems_are_suggested_then_recorded_and_linked() -> None:
    async with triage() as (client, intake, _):
        for n in range(2):
            await publish(
                intake,
                opened(f"d{n}", service="db"),
                AlertAttached(
                    incident_id=f"d{n}",
                    alert_key="canonical:disk",
                    dedup_key="disk",
                    title="Disk full",
                    severity=Severity.WARNING,
                    source="canonical",
                    reason="new",
                    occurred_at=NOW,
                ),
            )

        async def suggested() -> list[dict[str, Any]] | None:
            found = (await client.get("/v1/problem-suggestions")).json()
            return found if len(found) == 2 else None

        suggestions = await eventually(suggested)
        assert {s["fingerprint"] for s in suggestions} == {"", "canonical:disk"}
        assert all(s["incident_ids"] == ["d0", "d1"] and s["problem_id"] is None for s in suggestions)
        assert (await client.get("/v1/problems")).json() == []  # suggested, never created silently

        body = {
            "title": "Disk fills up",
            "service": "db",
            "incident_ids": ["d0"],
            "suggestion_id": suggestions[0]["suggestion_id"],
        }
        r = await client.post("/v1/problems", json=body, headers={**RESPONDER, "Idempotency-Key": "k1"})
        assert r.status_code == 201, r.text
        problem = r.json()
        again = await client.post("/v1/problems", json=body, headers={**RESPONDER, "Idempotency-Key": "k1"})
        assert again.json()["id"] == problem["id"]
        pid = problem["id"]
        r = await client.post(f"/v1/problems/{pid}/incidents", json={"incident_id": "d1"}, headers=RESPONDER)
        assert r.json()["incident_ids"] == ["d0", "d1"]
        r = await client.post(f"/v1/problems/{pid}/incidents", json={"incident_id": "d1"}, headers=RESPONDER)
        assert r.status_code == 409
        r = await client.patch(
            f"/v1/problems/{pid}",
            json={"root_cause": "log rotation off", "workaround": "rotate by hand", "known_error": True},
            headers=RESPONDER,
        )
        got = r.json()
        assert (got["root_cause"], got["workaround"], got["known_error"], got["status"]) == (
            "log rotation off",
            "rotate by hand",
            True,
            "known_error",
        )
        listed = (await client.get("/v1/problems?status=known_error")).json()
        assert [p["id"] for p in listed] == [pid]
        taken = {
            s["suggestion_id"]: s["problem_id"] for s in (await client.get("/v1/problem-suggestions")).json()
        }
        assert taken[suggestions[0]["suggestion_id"]] == pid
        assert (await client.get("/v1/problems/nope")).status_code == 404


@pytest.mark.parametrize("who", [VIEWER, MANAGER])
async def test_the_policy_in_force_is_shown(who: dict[str, str]) -> None:
    async with triage() as (client, _, _):
        r = await client.get("/v1/policy", headers=who)
        assert r.status_code == 200
        policy = r.json()["triage"]
        assert policy["matrix"]["high"]["high"] == "P1"
        assert policy["services"]["payments"]["criticality"] == "business_critical"
        assert policy["sla"]["P1"]["response"] == "PT15M"
        assert (await client.get("/v1/policy", headers={"Authorization": "Bearer x"})).status_code == 401


async def test_etag_and_if_match_guard_against_lost_updates() -> None:
    async with triage() as (client, intake, _):
        await publish(intake, opened("e", service="search"))
        await triaged(client, "e")
        r = await client.get("/v1/incidents/e/triage")
        etag = r.headers["etag"]
        assert etag == f'"{r.json()["version"]}"'
        body = {"priority": "P4", "reason": "only one user"}
        r = await client.post("/v1/incidents/e/priority", json=body, headers={**RESPONDER, "If-Match": etag})
        assert r.status_code == 200 and r.headers["etag"] != etag
        stale = await client.post(
            "/v1/incidents/e/major/propose", json={"reason": "x"}, headers={**RESPONDER, "If-Match": etag}
        )
        assert stale.status_code == 409 and "reload and retry" in stale.json()["detail"]
        bad = await client.post(
            "/v1/incidents/e/major/propose", json={"reason": "x"}, headers={**RESPONDER, "If-Match": "nope"}
        )
        assert bad.status_code == 400

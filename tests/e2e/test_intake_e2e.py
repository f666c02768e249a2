"""Captured payloads from real senders through all four services (embedded mode): the incidents,
repeats, groupings, resolutions and lifecycle steps intake records, as analytics shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from shared.auth import Role, sign_token
from shared.launcher import embedded_apps
from shared.settings import Settings
from tests.helpers import eventually, running

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "intake"
ADMIN, KEY, SECRET = "admin-token", "R0ut1ngKeyForLocalTestsOnly00003", "s" * 32


CAPTURED = b"2026-11-22T"
"""The day the Alertmanager payloads were captured (their startsAt and endsAt)."""
SENT = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
"""The day they are sent on here: intake believes a sender's times up to a week old."""


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes().replace(CAPTURED, f"{SENT}T".encode())


async def detail(analytics: httpx.AsyncClient, incident_id: str, **expected: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await analytics.get(f"/v1/incidents/{incident_id}")
        if r.status_code != 200:
            return None
        body: dict[str, Any] = r.json()
        return body if all(body.get(k) == v for k, v in expected.items()) else None

    return await eventually(probe)


async def test_alertmanager_and_pagerduty_fixtures_end_to_end(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path, admin_token=ADMIN, integration_key=KEY, secret=SECRET)
    async with running(embedded_apps(config), KEY) as c:
        intake, analytics = c["intake"], c["analytics"]
        analytics.headers["Authorization"] = f"Bearer {ADMIN}"
        am = "/v1/alerts/alertmanager"
        disk = (await intake.post(am, content=fixture("alertmanager_webhook_01_firing_DiskFull.json"))).json()
        cpu = (await intake.post(am, content=fixture("alertmanager_webhook_02_firing_HighCPU.json"))).json()
        await intake.post(am, content=fixture("alertmanager_webhook_01_firing_DiskFull.json"))
        await intake.post(am, content=fixture("alertmanager_webhook_03_resolved_DiskFull.json"))

        disk_id = disk["alerts"][0]["incident_id"]
        seen = await detail(analytics, disk_id, status="resolved", alert_count=2)
        assert seen["service"] == "checkout" and seen["severity"] == "critical"
        assert seen["opened_at"].startswith(f"{SENT}T11:38:27.027")  # Alertmanager's startsAt
        assert seen["resolved_at"].startswith(f"{SENT}T11:40:23.032")  # and endsAt
        types = [e["type"] for e in seen["timeline"]]
        for kind in ("IncidentOpened", "AlertAttached", "AlertRepeated", "AlertResolved", "IncidentResolved"):
            assert kind in types

        cpu_id = cpu["alerts"][0]["incident_id"]
        grouped = await detail(analytics, cpu_id, alert_count=2)
        assert grouped["status"] == "open"
        summaries = [
            f"{e['summary']} {e.get('why') or ''}"
            for e in grouped["timeline"]
            if e["type"] == "AlertAttached"
        ]
        assert any("grouped with incident" in s for s in summaries)

        trigger = {
            **orjson.loads(fixture("pagerduty_py_01_trigger.json")),
            "dedup_key": "6bab8eb4cbde483b8ca9e07b1745a497",
        }
        r = await intake.post("/v2/enqueue", json=trigger)
        assert r.status_code == 202 and r.json()["dedup_key"] == trigger["dedup_key"]
        pd_id = (
            await intake.post("/v1/alerts", json={"title": "probe", "service": "s", "severity": "low"})
        ).json()
        await intake.post("/v2/enqueue", content=fixture("pagerduty_py_03_acknowledge.json"))
        await intake.post("/v2/enqueue", content=fixture("pagerduty_py_02_resolve.json"))
        r = await intake.post("/v2/change/enqueue", content=fixture("pagerduty_py_04_change_event.json"))
        assert r.status_code == 202

        async def pagerduty_incident() -> dict[str, Any] | None:
            items = (await analytics.get("/v1/incidents")).json()["items"]
            found = [i for i in items if i["title"] == "Checkout latency high (pagerduty)"]
            return found[0] if found and found[0]["status"] == "resolved" else None

        item = await eventually(pagerduty_incident)
        assert item["acknowledged_at"] and item["resolved_at"] and item["severity"] == "warning"
        titles = [i["title"] for i in (await analytics.get("/v1/incidents")).json()["items"]]
        assert "Deployed checkout v2 (change event)" not in titles  # a change event opens nothing
        assert pd_id["action"] == "opened"


async def test_lifecycle_steps_reach_the_analytics_timeline(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path, admin_token=ADMIN, integration_key=KEY, secret=SECRET)
    ana = {"Authorization": f"Bearer {sign_token(SECRET, 'ana', Role.RESPONDER)}"}
    async with running(embedded_apps(config), ADMIN) as c:
        intake, analytics = c["intake"], c["analytics"]
        new = {
            "title": "Payments failing",
            "service": "payments",
            "severity": "critical",
            "impact": "high",
            "urgency": "high",
        }
        incident = (await intake.post("/v1/incidents", json=new, headers=ana)).json()["id"]
        url = f"/v1/incidents/{incident}"
        steps = [
            ("acknowledge", None),
            ("assign", {"assignee": "bob"}),
            ("notes", {"text": "rolled back the deploy"}),
            ("hold", {"reason": "waiting for the card network"}),
            ("resume", None),
            ("resolve", {"reason": "network recovered"}),
            ("reopen", {"reason": "errors again"}),
            ("resolve", {"reason": "fixed"}),
            ("close", None),
        ]
        for step, body in steps:
            r = await intake.post(f"{url}/{step}", json=body, headers=ana)
            assert r.status_code in (200, 201), (step, r.text)
        wanted = [
            "IncidentAcknowledged",
            "IncidentAssigned",
            "NoteAdded",
            "IncidentPutOnHold",
            "IncidentResumed",
            "IncidentResolved",
            "IncidentReopened",
            "IncidentResolved",
            "IncidentClosed",
        ]

        async def timeline() -> list[dict[str, Any]] | None:
            r = await analytics.get(url)
            if r.status_code != 200:
                return None
            entries: list[dict[str, Any]] = r.json()["timeline"]
            kinds = [e["type"] for e in entries if e["source"] == "intake"]
            return entries if kinds[1:] == wanted else None

        entries = await eventually(timeline)
        by_type = {e["type"]: e for e in entries}
        assert by_type["IncidentAssigned"]["by"] == "ana" and "bob" in by_type["IncidentAssigned"]["summary"]
        said = {kind: f"{e['summary']} {e.get('why') or ''}" for kind, e in by_type.items()}
        assert "rolled back the deploy" in said["NoteAdded"]
        assert "card network" in said["IncidentPutOnHold"]


async def test_maintenance_and_change_events_are_recorded_but_no_incident_appears(tmp_path: Path) -> None:
    config = Settings(data_dir=tmp_path, admin_token=ADMIN, integration_key=KEY, secret=SECRET)
    async with running(embedded_apps(config), ADMIN) as c:
        intake, analytics = c["intake"], c["analytics"]
        now = datetime.now(UTC)
        window = {
            "service": "db",
            "starts_at": (now - timedelta(hours=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        }
        assert (await intake.post("/v1/maintenance-windows", json=window)).status_code == 201
        key = {"Authorization": f"Bearer {KEY}"}
        alert = {"title": "Replica lag", "service": "db", "severity": "critical", "dedup_key": "lag"}
        r = await intake.post("/v1/alerts", json=alert, headers=key)
        assert r.json()["action"] == "suppressed"
        down = {"title": "Checkout down", "service": "default", "severity": "high", "dedup_key": "down"}
        open_id = (await intake.post("/v1/alerts", json=down, headers=key)).json()["incident_id"]
        await intake.post("/v2/change/enqueue", content=fixture("pagerduty_py_04_change_event.json"))
        marker = {"title": "After", "service": "api", "severity": "low", "dedup_key": "after"}
        after = (await intake.post("/v1/alerts", json=marker, headers=key)).json()["incident_id"]

        async def listed() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await analytics.get("/v1/incidents")).json()["items"]
            return items if any(i["id"] == after for i in items) else None

        items = await eventually(listed)  # analytics has seen everything intake wrote before
        assert sorted(i["title"] for i in items) == [
            "After",
            "Checkout down",
        ]  # none for the suppressed alert
        timeline = (await analytics.get(f"/v1/incidents/{open_id}")).json()["timeline"]
        [change] = [e for e in timeline if e["type"] == "AlertChangeRecorded"]
        assert "Deployed checkout v2" in change["summary"] and change["at"].startswith("2026-01-01")

        async def counted() -> bool:
            counts = (await intake.get("/v1/integrations/default")).json()["counts"]
            return bool(counts["suppressed"] == 1 and counts["changes"] == 1)

        assert await eventually(counted)

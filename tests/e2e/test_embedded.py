"""One alert flows through all four services in the embedded mode (one process, SQLite)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson

from shared.launcher import embedded_apps
from shared.settings import Settings
from tests.helpers import eventually, running
from tests.receivers import webhook_receiver

ADMIN, KEY = "admin-token", "integration-key"


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, admin_token=ADMIN, integration_key=KEY, secret="s" * 32)


async def test_an_alert_opens_an_incident_that_is_prioritised_notified_and_listed(tmp_path: Path) -> None:
    async with running(embedded_apps(settings(tmp_path)), ADMIN) as c:
        alert = {
            "title": "Disk full on db-1",
            "service": "db",
            "severity": "critical",
            "dedup_key": "disk-db-1",
        }
        r = await c["intake"].post("/v1/alerts", json=alert, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 202, r.text
        incident_id = r.json()["incident_id"]
        assert r.json()["action"] == "opened"

        async def listed() -> dict[str, Any] | None:
            items = (await c["analytics"].get("/v1/incidents")).json()["items"]
            done = [i for i in items if i["id"] == incident_id and i["priority"] and i["notification_count"]]
            return done[0] if done else None

        item = await eventually(listed)
        assert item["priority"] == "P1"
        assert item["title"] == "Disk full on db-1"
        assert item["status"] == "open"
        assert item["alert_count"] == 1

        detail = (await c["analytics"].get(f"/v1/incidents/{incident_id}")).json()
        types = [e["type"] for e in detail["timeline"]]
        assert types[:3] == ["IncidentOpened", "AlertAttached", "PriorityAssigned"]
        assert "NotificationPlanned" in types
        assert all(e["by"] and e["summary"] and e["at"] for e in detail["timeline"])

        notes = (await c["comms"].get(f"/v1/incidents/{incident_id}/notifications")).json()
        assert [n["recipient"] for n in notes] == ["responders"]


async def test_responders_webhook_gets_a_signed_notification_after_a_failed_attempt(tmp_path: Path) -> None:
    async with webhook_receiver(fail_first=1) as hook:
        config = settings(tmp_path).model_copy(
            update={"webhook_url": hook.url, "webhook_secret": "hook-secret"}
        )
        async with running(embedded_apps(config), ADMIN) as c:
            alert = {"title": "API down", "service": "api", "severity": "high", "dedup_key": "api-down"}
            r = await c["intake"].post("/v1/alerts", json=alert, headers={"Authorization": f"Bearer {KEY}"})
            incident_id = r.json()["incident_id"]

            async def delivered() -> bool:
                return bool(hook.received)

            await eventually(delivered)
            [got] = hook.received
            body = orjson.loads(got.body)
            assert body["incident_id"] == incident_id
            assert body["subject"].startswith("[P2] API down")
            assert got.headers["idempotency-key"] == body["notification_id"]
            stamp, mac = (part.split("=", 1)[1] for part in got.headers["x-lynchpin-signature"].split(","))
            expected = hmac.new(b"hook-secret", f"{stamp}.".encode() + got.body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(mac, expected)

            async def sent_recorded() -> dict[str, Any] | None:
                detail = (await c["analytics"].get(f"/v1/incidents/{incident_id}")).json()
                return detail if detail.get("notifications_sent") == 2 else None

            detail = await eventually(sent_recorded)
            summaries = [e["summary"] for e in detail["timeline"]]
            assert any("failed (attempt 1, will retry)" in s for s in summaries)

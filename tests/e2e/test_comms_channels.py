"""Comms end to end in the embedded mode, with a real SMTP server (aiosmtpd) and real HTTP receivers:
a P1 reaches email and a signed webhook, a failing receiver is retried then replaced by the
fallback channel, accepting a major incident starts the update cadence, a missed update raises
a reminder to the communications manager, and the resolve reaches everyone notified before."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import yaml

from shared.launcher import embedded_apps
from shared.settings import Settings
from tests.helpers import eventually, running
from tests.receivers import Mail, SmtpReceiver, WebhookReceiver, smtp_receiver, webhook_receiver

ADMIN, KEY, HOOK_SECRET = "admin-token", "integration-key", "hook-secret"


def policy_file(tmp_path: Path, smtp: SmtpReceiver, users: WebhookReceiver, flaky: WebhookReceiver) -> Path:
    comms = {
        "outbound": {"allow": ["127.0.0.1"]},
        "email": {"host": smtp.host, "port": smtp.port, "sender": "lynchpin@example.org"},
        "retry": {"attempts": 2, "first_delay": 0.05, "max_delay": 0.2},
        "cadence": {"major_incident": 1, "reminder_after": 0, "escalate_after": 3600},
        "coalesce": {"max_per_window": 50},
        "timer_tick": 0.1,
        "stakeholders": [
            {
                "id": "ops-lead",
                "name": "Ops lead",
                "audience": "management",
                "channels": [{"kind": "email", "address": "lead@example.org"}],
            },
            {
                "id": "status-page",
                "audience": "end_users",
                "channels": [{"kind": "webhook", "address": users.url}],
            },
            {
                "id": "api-oncall",
                "audience": "responders",
                "channels": [
                    {"kind": "webhook", "address": flaky.url},
                    {"kind": "email", "address": "oncall@example.org"},
                ],
            },
            {
                "id": "cm",
                "roles": ["communications_manager"],
                "channels": [{"kind": "email", "address": "cm@example.org"}],
            },
        ],
        "lists": [{"id": "api-people", "members": ["ops-lead", "status-page"]}],
        "subscriptions": [
            {"id": "api-list", "list": "api-people", "services": ["api"]},
            {"id": "api-oncall", "stakeholder": "api-oncall", "services": ["api"], "priorities": ["P1"]},
        ],
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"comms": comms}))
    return path


def mails_to(smtp: SmtpReceiver, address: str) -> list[Mail]:
    return [m for m in smtp.mails if address in m.recipients]


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    stamp, mac = (part.split("=", 1)[1] for part in headers["x-lynchpin-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, expected)


async def test_p1_to_major_incident_to_resolve_over_email_and_webhooks(tmp_path: Path) -> None:
    async with (
        smtp_receiver() as smtp,
        webhook_receiver() as users,
        webhook_receiver(fail_first=10_000) as flaky,
    ):
        settings = Settings(
            data_dir=tmp_path,
            admin_token=ADMIN,
            integration_key=KEY,
            secret="s" * 32,
            webhook_secret=HOOK_SECRET,
            policy=policy_file(tmp_path, smtp, users, flaky),
        )
        async with running(embedded_apps(settings), ADMIN) as c:
            alert = {
                "title": "Checkout API down",
                "service": "api",
                "severity": "critical",
                "dedup_key": "api-5xx",
            }
            r = await c["intake"].post("/v1/alerts", json=alert, headers={"Authorization": f"Bearer {KEY}"})
            assert r.status_code == 202, r.text
            incident_id = r.json()["incident_id"]

            # a P1 on a subscribed service: management by email, end users by signed webhook
            [mail] = await eventually(lambda: _async(mails_to(smtp, "lead@example.org")))
            assert mail.message["Subject"] == "[P1] Checkout API down (api)"
            body = mail.message.get_content()
            assert "Current status:" in body and "Next steps:" in body  # the executive shape
            await eventually(lambda: _async(users.received))
            posted = users.received[0]
            assert verify(HOOK_SECRET, posted.headers, posted.body)
            payload = orjson.loads(posted.body)
            assert payload["incident_id"] == incident_id and payload["audience"] == "end_users"
            assert posted.headers["idempotency-key"] == payload["notification_id"]
            assert "no need to report it" in payload["text"]

            # the on-call webhook keeps failing: retried, then the fallback channel (email) delivers
            [fallback] = await eventually(lambda: _async(mails_to(smtp, "oncall@example.org")))
            assert "Conditions:" in fallback.message.get_content()  # the tactical shape
            assert flaky.failed == 2

            async def oncall_delivered() -> dict[str, Any] | None:
                notes = (await c["comms"].get(f"/v1/incidents/{incident_id}/notifications")).json()
                mine = [n for n in notes if n["stakeholder"] == "api-oncall" and n["status"] == "sent"]
                return mine[0] if mine else None

            note = await eventually(oncall_delivered)
            assert note["delivered_via"] == "email" and note["attempts"] == 3

            # accepting it as a major incident starts the cadence; missing the update reminds the CM
            r = await c["triage"].post(
                f"/v1/incidents/{incident_id}/major/propose", json={"reason": "checkout down"}
            )
            assert r.status_code == 200, r.text
            r = await c["triage"].post(
                f"/v1/incidents/{incident_id}/major/accept",
                json={"business_impact": "no orders", "notes": "all hands"},
            )
            assert r.status_code == 200, r.text
            state = await eventually(lambda: _comms_state(c["comms"], incident_id, "cadence_seconds"))
            assert state["cadence_seconds"] == 1 and state["next_update_due"]
            [reminder] = await eventually(lambda: _async(mails_to(smtp, "cm@example.org")))
            assert reminder.message["Subject"].startswith("[reminder] status update overdue")

            r = await c["comms"].post(
                f"/v1/incidents/{incident_id}/updates",
                json={
                    "audience": "all",
                    "text": "Failover in progress",
                    "fields": {"next_steps": "fail over"},
                },
            )
            assert r.status_code == 201, r.text
            update = r.json()
            assert update["due_at"] is not None and update["latency_seconds"] >= 0
            assert update["next_due_at"] > update["due_at"]

            # resolve reaches everyone notified before, whatever their channel
            r = await c["intake"].post(f"/v1/incidents/{incident_id}/resolve", json={"reason": "failed over"})
            assert r.status_code == 200, r.text

            async def resolved_everywhere() -> bool:
                subjects = {
                    addr: [m.message["Subject"] for m in mails_to(smtp, addr)]
                    for addr in ("lead@example.org", "oncall@example.org", "cm@example.org")
                }
                hooks = [orjson.loads(p.body)["cause"] for p in users.received]
                return all(any(s.startswith("[resolved]") for s in v) for v in subjects.values()) and (
                    "IncidentResolved" in hooks
                )

            await eventually(resolved_everywhere)
            state = await eventually(lambda: _comms_state(c["comms"], incident_id, "status", "resolved"))
            assert state["cadence_seconds"] is None


async def _async(value: Any) -> Any:
    return value


async def _comms_state(client: Any, incident_id: str, key: str, want: Any = None) -> dict[str, Any] | None:
    r = await client.get(f"/v1/incidents/{incident_id}/comms")
    if r.status_code != 200:
        return None
    doc: dict[str, Any] = r.json()
    if want is None:
        return doc if doc.get(key) else None
    return doc if doc.get(key) == want else None

"""On-call end to end in the embedded mode, with a real SMTP server, a real Slack-style webhook
receiver and intake served over real HTTP: an incident routed to a team pages whoever is on
call by email, escalates to the team lead's chat when nobody acknowledges within the
(seconds-long) wait, and stops when the acknowledge link in the email is followed."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
import yaml
from fastapi import FastAPI

from shared.launcher import embedded_apps
from shared.settings import Settings
from tests.helpers import eventually, running
from tests.receivers import Mail, SmtpReceiver, WebhookReceiver, smtp_receiver, webhook_receiver

ADMIN, KEY = "admin-token", "integration-key"
LINK = re.compile(r"http://127\.0\.0\.1:\d+/v1/ack/ack1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def policy_file(tmp_path: Path, smtp: SmtpReceiver, chat: WebhookReceiver, intake_url: str) -> Path:
    policy = {
        "triage": {"services": {"db": {"team": "db"}}},
        "comms": {
            "outbound": {"allow": ["127.0.0.1"]},
            "email": {"host": smtp.host, "port": smtp.port, "sender": "lynchpin@example.org"},
            "retry": {"attempts": 2, "first_delay": 0.05, "max_delay": 0.2},
            "timer_tick": 0.1,
        },
        "oncall": {
            "ack_base_url": intake_url,
            "people": [
                {"id": "ann", "name": "Ann", "contacts": [{"kind": "email", "address": "ann@example.org"}]},
                {"id": "lead", "name": "Team lead", "contacts": [{"kind": "slack", "address": chat.url}]},
            ],
            "schedules": [
                {"id": "db-primary", "team": "db", "layers": [{"rotation": "daily", "people": ["ann"]}]}
            ],
            "escalation_policies": [
                {
                    "id": "db",
                    "teams": ["db"],
                    "steps": [
                        {"targets": [{"kind": "schedule", "id": "db-primary"}], "wait": 1.5},
                        {"targets": [{"kind": "person", "id": "lead"}], "wait": 1.5},
                    ],
                    "repeat": 5,
                }
            ],
        },
    }
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


@asynccontextmanager
async def served(app: FastAPI, port: int) -> AsyncIterator[None]:
    """Serve an app whose lifespan is already running over real HTTP on 127.0.0.1:`port`."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def _async(value: Any) -> Any:
    return value


def mails_to(smtp: SmtpReceiver, address: str) -> list[Mail]:
    return [m for m in smtp.mails if address in m.recipients]


async def test_paged_escalated_and_stopped_by_the_acknowledge_link(tmp_path: Path) -> None:
    port = free_port()
    intake_url = f"http://127.0.0.1:{port}"
    async with smtp_receiver() as smtp, webhook_receiver() as chat:
        settings = Settings(
            data_dir=tmp_path,
            admin_token=ADMIN,
            integration_key=KEY,
            secret="s" * 32,
            policy=policy_file(tmp_path, smtp, chat, intake_url),
        )
        apps = embedded_apps(settings)
        async with running(apps, ADMIN) as c, served(apps["intake"], port), httpx.AsyncClient() as browser:
            alert = {
                "title": "Primary DB down",
                "service": "db",
                "severity": "critical",
                "dedup_key": "db-down",
            }
            r = await c["intake"].post("/v1/alerts", json=alert, headers={"Authorization": f"Bearer {KEY}"})
            assert r.status_code == 202, r.text
            incident_id = r.json()["incident_id"]

            # step 1: whoever is on call for the db team (ann) is paged by email, with her link
            [page] = await eventually(lambda: _async(mails_to(smtp, "ann@example.org")))
            text = page.message.get_content()
            assert "Primary DB down" in str(page.message["Subject"])
            [ann_link] = LINK.findall(text)

            # nobody acknowledges within the wait: step 2 pages the team lead on chat, with his link
            await eventually(lambda: _async(chat.received))
            posted = orjson.loads(chat.received[0].body)
            [lead_link] = LINK.findall(posted["text"])
            assert lead_link != ann_link

            # ann follows her link over HTTP: a confirmation page, then its button acknowledges
            shown = await browser.get(ann_link, headers={"Accept": "text/html"})
            assert shown.status_code == 200 and '<form method="post"' in shown.text
            done = await browser.post(ann_link)
            assert done.status_code == 200, done.text
            assert done.json()["by"] == "ann"

            async def stopped() -> dict[str, Any] | None:
                body = (await c["triage"].get(f"/v1/incidents/{incident_id}/escalation")).json()
                return body if not body["running"] else None

            escalation = await eventually(stopped)
            assert (escalation["stop_reason"], escalation["stopped_by"]) == ("acknowledged", "ann")
            assert escalation["next_due_at"] is None
            kinds = [e["type"] for e in escalation["events"]]
            assert kinds[:5] == [
                "EscalationStarted",
                "EscalationStepReached",
                "PageRequested",
                "EscalationStepReached",
                "PageRequested",
            ]
            assert kinds[-1] == "EscalationStopped" and kinds.count("EscalationStopped") == 1
            pages = kinds.count("PageRequested")

            # everyone paged hears that ann acknowledged; by then no new page has gone out
            await eventually(
                lambda: _async(
                    [
                        m
                        for m in mails_to(smtp, "ann@example.org")
                        if "Acknowledged" in m.message.get_content()
                    ]
                )
            )
            again = await browser.post(ann_link)
            assert again.status_code == 409 and "already used" in again.json()["detail"]
            after = (await c["triage"].get(f"/v1/incidents/{incident_id}/escalation")).json()
            assert [e["type"] for e in after["events"]].count("PageRequested") == pages
            assert (await c["intake"].get(f"/v1/incidents/{incident_id}")).json()["status"] == "acknowledged"

            # the timeline says who was paged and that the pages were delivered
            async def delivered() -> list[dict[str, Any]] | None:
                notes = (await c["comms"].get(f"/v1/incidents/{incident_id}/notifications")).json()
                sent = [n for n in notes if n.get("cause_type") == "PageRequested" and n["status"] == "sent"]
                return sent if len(sent) >= 2 else None

            sent = await eventually(delivered)
            assert {n["channel"] for n in sent} >= {"email", "slack"}

            # analytics' timeline tells the story: who was paged, through what, and why it stopped
            async def told() -> list[str] | None:
                doc = (await c["analytics"].get(f"/v1/incidents/{incident_id}")).json()
                said = [str(e["summary"]) for e in doc.get("timeline", [])]
                return said if "Escalation stopped: acknowledged" in said else None

            said = await eventually(told)
            assert "Page to Ann via email" in said and "Page to Team lead via slack" in said
            assert "Escalation step 1 (round 1): paged ann" in said

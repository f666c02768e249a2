"""The `lynchpin` CLI against the four services running in-process (embedded mode, SQLite).

The CLI's HTTP goes through an `httpx.MockTransport` whose handler is a plain function that forwards
each request to the real app named by the URL's host, in one event loop run by an anyio portal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from click.testing import Result
from fastapi import FastAPI
from typer.testing import CliRunner

from shared.cli import app
from shared.launcher import embedded_apps
from shared.settings import Settings
from tests.helpers import eventually

ADMIN, KEY = "admin-token", "integration-key"
URLS = {f"LYNCHPIN_{s.upper()}_URL": f"http://{s}" for s in ("intake", "triage", "comms", "analytics")}

Cli = Callable[..., Result]


@asynccontextmanager
async def serving(apps: Mapping[str, FastAPI]) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """Start the apps' lifespans; one ASGI client per app, with no credentials of its own."""
    async with AsyncExitStack() as stack:
        clients = {}
        for name, application in apps.items():
            await stack.enter_async_context(application.router.lifespan_context(application))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=f"http://{name}")
            )
        yield clients


def forwarding(portal: BlockingPortal, clients: Mapping[str, httpx.AsyncClient]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        async def forward() -> httpx.Response:
            return await clients[request.url.host].request(
                request.method,
                request.url.raw_path.decode(),
                headers=request.headers,
                content=request.content,
            )

        answer = portal.call(forward)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(handle)


class Lynchpin:
    def __init__(self, portal: BlockingPortal, clients: Mapping[str, httpx.AsyncClient]) -> None:
        self.portal = portal
        self.clients = clients
        self.transport = forwarding(portal, clients)

    def cli(self, *args: str, token: str | None = ADMIN) -> Result:
        env = dict(URLS, LYNCHPIN_TOKEN=token or "", LYNCHPIN_ADMIN_TOKEN="")
        return CliRunner().invoke(app, list(args), obj=self.transport, env=env)

    def alert(self, dedup_key: str, severity: str = "critical") -> str:
        body = {
            "title": f"Disk full ({dedup_key})",
            "service": "db",
            "severity": severity,
            "dedup_key": dedup_key,
        }

        async def post() -> httpx.Response:
            return await self.clients["intake"].post(
                "/v1/alerts", json=body, headers={"Authorization": f"Bearer {KEY}"}
            )

        answer = self.portal.call(post)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["incident_id"])

    def listed(self, incident_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            r = await self.clients["analytics"].get(
                f"/v1/incidents/{incident_id}", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            return r.json() if r.status_code == 200 and r.json()["priority"] else None

        async def wait() -> dict[str, Any]:
            return await eventually(probe)

        return self.portal.call(wait)


@pytest.fixture
def lynchpin(tmp_path: Path) -> Iterator[Lynchpin]:
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, integration_key=KEY, secret="s" * 32)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serving(embedded_apps(settings))) as clients,
    ):
        yield Lynchpin(portal, clients)


def test_incidents_list_shows_a_table_and_json_for_scripts(lynchpin: Lynchpin) -> None:
    incident = lynchpin.alert("disk-db-1")
    lynchpin.listed(incident)

    table = lynchpin.cli("incidents", "list")
    assert table.exit_code == 0, table.output
    assert incident in table.stdout and "P1" in table.stdout and "1 incident(s)" in table.stdout

    scripted = lynchpin.cli("incidents", "list", "--json", "--priority", "P1")
    assert scripted.exit_code == 0, scripted.output
    assert [i["id"] for i in json.loads(scripted.stdout)["items"]] == [incident]
    assert json.loads(lynchpin.cli("incidents", "list", "--json", "--priority", "P5").stdout)["items"] == []


def test_incidents_show_prints_the_incident_and_its_timeline(lynchpin: Lynchpin) -> None:
    incident = lynchpin.alert("disk-db-2")
    lynchpin.listed(incident)

    shown = lynchpin.cli("incidents", "show", incident)
    assert shown.exit_code == 0, shown.output
    assert "Timeline" in shown.stdout and "Priority P1" in shown.stdout

    doc = json.loads(lynchpin.cli("incidents", "show", incident, "--json").stdout)
    assert doc["id"] == incident and doc["timeline"][0]["type"] == "IncidentOpened"


def test_ack_then_resolve_moves_the_incident_and_a_stale_if_match_is_one_clear_error(
    lynchpin: Lynchpin,
) -> None:
    incident = lynchpin.alert("disk-db-3")

    acked = lynchpin.cli("incidents", "ack", incident, "--json")
    assert acked.exit_code == 0, acked.output
    assert json.loads(acked.stdout)["status"] == "acknowledged"
    version = json.loads(acked.stdout)["version"]
    other = lynchpin.alert("disk-db-4")
    told = lynchpin.cli("incidents", "ack", other)
    assert f"Incident {other} acknowledged: now acknowledged (version " in told.stdout

    stale = lynchpin.cli("incidents", "resolve", incident, "--if-match", str(version - 1))
    assert stale.exit_code == 1
    assert stale.stdout == ""
    [line] = stale.stderr.splitlines()
    assert line.startswith(("error: intake: 409 ", "error: intake: 412 ")), line

    resolved = lynchpin.cli(
        "incidents", "resolve", incident, "--reason", "disk cleaned", "--if-match", str(version), "--json"
    )
    assert resolved.exit_code == 0, resolved.output
    assert json.loads(resolved.stdout)["status"] == "resolved"


def test_an_unknown_incident_is_a_one_line_not_found(lynchpin: Lynchpin) -> None:
    result = lynchpin.cli("incidents", "show", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: analytics: 404 Not found: no incident nope"


def test_without_a_token_the_error_says_how_to_give_one(lynchpin: Lynchpin) -> None:
    result = lynchpin.cli("incidents", "list", token=None)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert "401" in line and "LYNCHPIN_TOKEN" in line


def test_a_bad_request_names_the_field(lynchpin: Lynchpin) -> None:
    result = lynchpin.cli(
        "incidents", "open", "--title", "Checkout slow", "--service", "shop", "--severity", "huge"
    )
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: intake: 422 Invalid request: severity")


def test_incidents_open_by_hand(lynchpin: Lynchpin) -> None:
    result = lynchpin.cli("incidents", "open", "--title", "Checkout slow", "--service", "shop", "--json")
    assert result.exit_code == 0, result.output
    opened = json.loads(result.stdout)
    assert opened["status"] == "open" and opened["service"] == "shop"


def test_a_token_issued_by_the_cli_works_until_the_cli_revokes_it(lynchpin: Lynchpin) -> None:
    created = lynchpin.cli("tokens", "create", "vera", "--role", "viewer", "--json")
    assert created.exit_code == 0, created.output
    issued = json.loads(created.stdout)

    assert lynchpin.cli("incidents", "list", token=issued["token"]).exit_code == 0
    refused = lynchpin.cli("incidents", "open", "--title", "t", "--service", "s", token=issued["token"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: intake: 403 Forbidden: ")

    assert issued["token_id"] in lynchpin.cli("tokens", "list").stdout
    assert lynchpin.cli("tokens", "revoke", issued["token_id"]).exit_code == 0
    at_intake = lynchpin.cli("incidents", "open", "--title", "t", "--service", "s", token=issued["token"])
    assert at_intake.exit_code == 1 and at_intake.stderr.startswith("error: intake: 401 ")

    async def refused_by_analytics() -> bool:  # analytics learns the revocation from intake's log
        r = await lynchpin.clients["analytics"].get(
            "/v1/incidents", headers={"Authorization": f"Bearer {issued['token']}"}
        )
        return r.status_code == 401

    async def wait() -> bool:
        return await eventually(refused_by_analytics)

    assert lynchpin.portal.call(wait)
    after = lynchpin.cli("incidents", "list", token=issued["token"])
    assert after.exit_code == 1 and after.stderr.startswith("error: analytics: 401 ")

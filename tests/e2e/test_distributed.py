"""One alert flows through four separate processes on real PostgreSQL and a real Kafka broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_embedded_crash import free_ports, wait_until

ADMIN, KEY = "admin-token", "integration-key"
SERVICES = ("intake", "triage", "comms", "analytics")

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]


@pytest.fixture
def cluster(pg_dsn: str, kafka_server: Any, tmp_path: Path) -> Iterator[dict[str, str]]:
    ports = dict(zip(SERVICES, free_ports(4), strict=True))
    env = {
        **os.environ,
        "LYNCHPIN_STORE_URL": pg_dsn,
        "LYNCHPIN_KAFKA_BOOTSTRAP": kafka_server.bootstrap,
        "LYNCHPIN_KAFKA_PARTITIONS": "3",
        "LYNCHPIN_KAFKA_NAMESPACE": f"t{uuid.uuid4().hex[:8]}",
        "LYNCHPIN_DATA_DIR": str(tmp_path),
        "LYNCHPIN_ADMIN_TOKEN": ADMIN,
        "LYNCHPIN_INTEGRATION_KEY": KEY,
        "LYNCHPIN_SECRET": "d" * 32,
        **{f"LYNCHPIN_{s.upper()}_PORT": str(p) for s, p in ports.items()},
    }
    procs = []
    log = tmp_path / "services.log"
    try:
        with log.open("ab") as out:
            for service in SERVICES:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", f"services.{service}"], env=env, stdout=out, stderr=out
                    )
                )
        for service in SERVICES:
            url = f"http://127.0.0.1:{ports[service]}/readyz"
            wait_until(lambda url=url: _ok(url), timeout=60, what=f"{service} ready", log=log)
        yield {s: f"http://127.0.0.1:{p}" for s, p in ports.items()} | {"log": str(log)}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_alert_flows_through_four_processes_on_postgres_and_kafka(cluster: dict[str, str]) -> None:
    alert = {"title": "Checkout errors", "service": "checkout", "severity": "critical", "dedup_key": "co-5xx"}
    r = httpx.post(f"{cluster['intake']}/v1/alerts", json=alert, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 202, r.text
    incident_id = r.json()["incident_id"]
    again = httpx.post(
        f"{cluster['intake']}/v1/alerts", json=alert, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert again.json() == {**r.json(), "action": "repeated"}

    def complete() -> dict[str, Any] | None:
        d = httpx.get(
            f"{cluster['analytics']}/v1/incidents/{incident_id}", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        if d.status_code != 200:
            return None
        body: dict[str, Any] = d.json()
        return body if body["priority"] and body["notifications_sent"] and body["alert_count"] == 2 else None

    detail = wait_until(
        complete, timeout=60, what="incident prioritised, notified, listed", log=Path(cluster["log"])
    )
    assert detail["priority"] == "P1"
    types = [e["type"] for e in detail["timeline"]]
    for expected in (
        "IncidentOpened",
        "AlertAttached",
        "AlertRepeated",
        "PriorityAssigned",
        "NotificationPlanned",
        "NotificationSent",
    ):
        assert expected in types
    assert {e["source"] for e in detail["timeline"]} == {"intake", "triage", "comms"}
    listed = httpx.get(
        f"{cluster['analytics']}/v1/incidents", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    assert [i["id"] for i in listed["items"]] == [incident_id]
    triage = httpx.get(
        f"{cluster['triage']}/v1/incidents/{incident_id}/triage", headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()
    assert triage["priority"] == "P1"

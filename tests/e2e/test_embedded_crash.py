"""SIGKILL of the embedded process right after a 202, then restart: the incident is there and flows on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN, KEY = "admin-token", "integration-key"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    intake, triage, comms, analytics = free_ports(4)
    return {
        **os.environ,
        "LYNCHPIN_DATA_DIR": str(tmp_path),
        "LYNCHPIN_ADMIN_TOKEN": ADMIN,
        "LYNCHPIN_INTEGRATION_KEY": KEY,
        "LYNCHPIN_SECRET": "x" * 32,
        "LYNCHPIN_INTAKE_PORT": str(intake),
        "LYNCHPIN_TRIAGE_PORT": str(triage),
        "LYNCHPIN_COMMS_PORT": str(comms),
        "LYNCHPIN_ANALYTICS_PORT": str(analytics),
    }


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shared.launcher"], env=env, stdout=out, stderr=out)
    wait_until(lambda: _ready(env), timeout=30, what="services ready", log=log)
    return proc


def _ready(env: dict[str, str]) -> bool:
    try:
        return all(
            httpx.get(f"http://127.0.0.1:{env[f'LYNCHPIN_{s}_PORT']}/readyz", timeout=1).status_code == 200
            for s in ("INTAKE", "TRIAGE", "COMMS", "ANALYTICS")
        )
    except httpx.HTTPError:
        return False


def wait_until(probe: Any, *, timeout: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what}: not within {timeout}s\n{tail}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.mark.slow
def test_sigkill_right_after_202_loses_nothing(
    env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "lynchpin.log"
    proc = start(env, log)
    processes.append(proc)
    intake = f"http://127.0.0.1:{env['LYNCHPIN_INTAKE_PORT']}"
    accepted = []
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        for n in range(20):
            alert = {"title": f"Alert {n}", "service": "api", "severity": "high", "dedup_key": f"k{n}"}
            r = client.post(f"{intake}/v1/alerts", json=alert)
            assert r.status_code == 202, r.text
            accepted.append(r.json()["incident_id"])
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    processes.append(start(env, log))
    analytics = f"http://127.0.0.1:{env['LYNCHPIN_ANALYTICS_PORT']}"

    def all_prioritised() -> dict[str, Any] | None:
        r = httpx.get(
            f"{analytics}/v1/incidents", params={"limit": 100}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        items = {i["id"]: i for i in r.json()["items"]}
        ready = all(i in items and items[i]["priority"] for i in accepted)
        return items if ready else None

    items = wait_until(
        all_prioritised, timeout=30, what="every accepted alert's incident, prioritised", log=log
    )
    assert sorted(items) == sorted(accepted)
    assert all(items[i]["alert_count"] == 1 for i in accepted)
    # Comms coalesces a storm per recipient: the responders hear of the first incidents, not all 20.
    assert 1 <= sum(items[i]["notification_count"] for i in accepted) < len(accepted)

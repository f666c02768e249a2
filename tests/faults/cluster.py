"""Lynchpin as real processes for the fault tests: start, SIGKILL, restart by PID, wait until ready.

Distributed: one process per service (`python -m services.<name>`) on a PostgreSQL database and a Kafka
broker that the test owns. Embedded: the single process (`python -m shared.launcher`) on SQLite files.
Every process is ended by the PID it was started with.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx

from shared.settings import SERVICES, Settings
from shared.testing.servers import free_ports

ADMIN, KEY, SECRET = "faults-admin-token", "faults-integration-key", "f" * 32
POLICY = Path(__file__).with_name("policy.yaml")


def base_env(data_dir: Path, *, webhook_url: str | None = None) -> dict[str, str]:
    """The environment every process of one cluster shares (ports chosen here, fixed for restarts)."""
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYNCHPIN_")}
    env.update(
        {
            "LYNCHPIN_DATA_DIR": str(data_dir),
            "LYNCHPIN_ADMIN_TOKEN": ADMIN,
            "LYNCHPIN_INTEGRATION_KEY": KEY,
            "LYNCHPIN_SECRET": SECRET,
            "LYNCHPIN_LOG_LEVEL": "WARNING",
            "LYNCHPIN_POLICY": str(POLICY),
            **{f"LYNCHPIN_{s.upper()}_PORT": str(p) for s, p in ports.items()},
        }
    )
    if webhook_url is not None:
        env["LYNCHPIN_WEBHOOK_URL"] = webhook_url
    return env


def distributed_env(
    data_dir: Path, store_url: str, bootstrap: str, *, webhook_url: str | None = None
) -> dict[str, str]:
    env = base_env(data_dir, webhook_url=webhook_url)
    env.update(
        {
            "LYNCHPIN_STORE_URL": store_url,
            "LYNCHPIN_KAFKA_BOOTSTRAP": bootstrap,
            "LYNCHPIN_KAFKA_PARTITIONS": "3",
            "LYNCHPIN_KAFKA_NAMESPACE": f"f{uuid.uuid4().hex[:8]}",
        }
    )
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The settings the processes read from `env` (for opening their stores from the test)."""
    values = {k.removeprefix("LYNCHPIN_").lower(): v for k, v in env.items() if k.startswith("LYNCHPIN_")}
    return Settings.model_validate(values)


def url(env: dict[str, str], service: str) -> str:
    return f"http://127.0.0.1:{env[f'LYNCHPIN_{service.upper()}_PORT']}"


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(probe: Callable[[], object], *, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll `probe` (a blocking call) until it is truthy; fail with the log's tail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{tail}")


class Processes:
    """Named child processes sharing one environment and one log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: dict[str, int] = {}

    def start(self, name: str, module: str, *, services: Iterable[str]) -> None:
        """Start `python -m module` as `name`; return when every one of `services` answers /readyz."""
        with self.log.open("ab") as out:
            out.write(f"--- start {name} ({module})\n".encode())
            out.flush()
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", module],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        for service in services:
            base = url(self.env, service)
            wait_until(functools.partial(ready, base), timeout=90, what=f"{service} ready", log=self.log)

    def kill(self, name: str) -> None:
        """SIGKILL by PID (a crash: no shutdown code runs) and reap."""
        proc = self.procs[name]
        with self.log.open("ab") as out:
            out.write(f"--- SIGKILL {name} (pid {proc.pid})\n".encode())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills[name] = self.kills.get(name, 0) + 1

    def stop_all(self) -> None:
        """SIGTERM every process we started (by PID), SIGKILL after 20 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Distributed(Processes):
    """Four processes, one per service."""

    def start_service(self, service: str) -> None:
        self.start(service, f"services.{service}", services=[service])

    def start_all(self) -> None:
        with self.log.open("ab") as out:
            for service in SERVICES:  # start them together: imports overlap
                self.procs[service] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{service}"],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
        for service in SERVICES:
            base = url(self.env, service)
            wait_until(functools.partial(ready, base), timeout=90, what=f"{service} ready", log=self.log)

    def crash_and_restart(self, service: str) -> None:
        self.kill(service)
        self.start_service(service)


class Embedded(Processes):
    """The single process with all four services."""

    def start_all(self) -> None:
        self.start("lynchpin", "shared.launcher", services=SERVICES)

    def crash_and_restart(self) -> None:
        self.kill("lynchpin")
        self.start_all()

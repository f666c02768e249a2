"""`lynchpin up` (what `make run` runs): serves all four services and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_up_serves_the_four_services_and_one_ctrl_c_stops_them_all_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYNCHPIN_")}
    env |= {f"LYNCHPIN_{name.upper()}_PORT": str(port) for name, port in ports.items()}
    env |= {"LYNCHPIN_DATA_DIR": str(tmp_path), "LYNCHPIN_LOG_FORMAT": "json"}
    up = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        waiting = set(SERVICES)
        deadline = time.monotonic() + 60
        while waiting and time.monotonic() < deadline and up.poll() is None:
            for name in sorted(waiting):
                try:
                    if httpx.get(f"http://127.0.0.1:{ports[name]}/readyz", timeout=1).status_code == 200:
                        waiting.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        assert not waiting, f"not ready: {waiting}"
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 0, err
    assert "Lynchpin is running (embedded mode" in out
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert not [line for line in lines if line["level"] in ("ERROR", "CRITICAL")], err
    stopped = {line["service"] for line in lines if line["message"].endswith(" stopping")}
    assert stopped == set(SERVICES)

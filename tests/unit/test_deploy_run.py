"""The image's commands, run here: `python -m services.<name>` for each service as the container
would start it (configured by LYNCHPIN_* only, JSON logs), then the container's health check,
`lynchpin healthcheck <name>`, against it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import app
from shared.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, subprocess.Popen[str]]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LYNCHPIN_")}
    env |= {
        "LYNCHPIN_DATA_DIR": str(tmp_path),
        "LYNCHPIN_HOST": "127.0.0.1",
        "LYNCHPIN_ADMIN_TOKEN": "admin",
        "LYNCHPIN_SECRET": "s" * 32,
        "LYNCHPIN_LOG_FORMAT": "json",
        "LYNCHPIN_LOG_LEVEL": "DEBUG",
    }
    env |= {f"LYNCHPIN_{name.upper()}_PORT": str(free_port()) for name in SERVICES}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SERVICES
    }
    try:
        yield env, processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def healthcheck(env: dict[str, str], name: str, *extra: str) -> int:
    return CliRunner().invoke(app, ["healthcheck", name, *extra], env=env).exit_code


@pytest.mark.slow
def test_each_service_module_starts_and_passes_the_container_health_check(
    services: tuple[dict[str, str], dict[str, subprocess.Popen[str]]],
) -> None:
    env, processes = services
    waiting = set(SERVICES)
    deadline = time.monotonic() + 60
    while waiting and time.monotonic() < deadline:
        for name in sorted(waiting):
            assert processes[name].poll() is None, f"{name} exited: {processes[name].communicate()[1]}"
            if healthcheck(env, name) == 0:
                waiting.discard(name)
        time.sleep(0.1)
    assert not waiting, f"not healthy within 60s: {waiting}"
    for name in SERVICES:
        assert healthcheck(env, name, "--ready") == 0, name

    for process in processes.values():
        process.send_signal(signal.SIGINT)
    for name, process in processes.items():
        _, err = process.communicate(timeout=20)
        lines = [json.loads(line) for line in err.splitlines() if line.strip()]
        assert lines, f"{name} logged nothing"
        assert all({"time", "level", "logger", "message", "service"} <= line.keys() for line in lines)
        assert {line["service"] for line in lines} == {name}, name


@pytest.mark.slow
def test_the_package_the_image_installs_holds_every_file_of_shared_and_services(tmp_path: Path) -> None:
    # The Dockerfile copies pyproject.toml, README.md, shared/ and services/ and runs `pip install .`,
    # which installs a wheel, not the source tree: templates and static files must be package data.
    tracked = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", "shared", "services"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    source = tmp_path / "src"
    for path in tracked:
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, source / path)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("lynchpin-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
    missing = [p for p in tracked if p.startswith(("shared/", "services/")) and p not in packaged]
    assert not missing, (
        f"not in the installed package (add them to [tool.setuptools.package-data]): {missing}"
    )

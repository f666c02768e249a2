"""Comms stops between sending a notification and recording it; after a restart the notification
is sent at most once more, with the same Idempotency-Key, and recorded as sent exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.comms.delivery import notification_stream
from shared.events import NotificationSent
from shared.launcher import embedded_apps
from shared.settings import Settings
from shared.store import open_store
from tests.helpers import eventually, running
from tests.receivers import webhook_receiver

ADMIN, KEY = "admin-token", "integration-key"


async def test_a_crash_between_send_and_record_resends_once_with_the_same_key(tmp_path: Path) -> None:
    async with webhook_receiver(hold_first=True) as hook:
        settings = Settings(
            data_dir=tmp_path, admin_token=ADMIN, integration_key=KEY, secret="s" * 32, webhook_url=hook.url
        )
        async with running(embedded_apps(settings), ADMIN) as c:
            alert = {"title": "Queue stuck", "service": "jobs", "severity": "critical", "dedup_key": "q"}
            r = await c["intake"].post("/v1/alerts", json=alert, headers={"Authorization": f"Bearer {KEY}"})
            assert r.status_code == 202, r.text
            # the receiver has the post, but comms has not heard back: stop everything now
            await eventually(lambda: _true(hook.held.is_set()))
        assert len(hook.received) == 1

        async with running(embedded_apps(settings), ADMIN) as c:
            await eventually(lambda: _true(len(hook.received) >= 2))
            first, second = hook.received[0], hook.received[1]
            key = first.headers["idempotency-key"]
            assert second.headers["idempotency-key"] == key
            assert orjson.loads(first.body)["notification_id"] == key

            async def recorded() -> int:
                notes = (await c["comms"].get("/v1/notifications?status=sent")).json()
                return sum(1 for n in notes if n["notification_id"] == key)

            assert await eventually(recorded) == 1

        store = open_store(settings.store_url_for("comms"), source="comms")
        async with store:
            history = [e.event for e in await store.read(notification_stream(key))]
        assert [type(e) for e in history] == [NotificationSent]
        assert len(hook.received) == 2


async def _true(value: bool) -> bool:
    return value


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def _start(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shared.launcher", env=env, stdout=out, stderr=out
        )

    async def ready() -> bool:
        async with httpx.AsyncClient(timeout=1) as client:
            try:
                r = await client.get(f"http://127.0.0.1:{env['LYNCHPIN_COMMS_PORT']}/readyz")
                return r.status_code == 200
            except httpx.HTTPError:
                return False

    await eventually(ready, timeout=30)
    return proc


@pytest.mark.slow
async def test_sigkill_between_send_and_record_resends_once_with_the_same_key(tmp_path: Path) -> None:
    async with webhook_receiver(hold_first=True) as hook:
        intake, triage, comms, analytics = _ports(4)
        env = {
            **os.environ,
            "LYNCHPIN_DATA_DIR": str(tmp_path),
            "LYNCHPIN_ADMIN_TOKEN": ADMIN,
            "LYNCHPIN_INTEGRATION_KEY": KEY,
            "LYNCHPIN_SECRET": "x" * 32,
            "LYNCHPIN_WEBHOOK_URL": hook.url,
            "LYNCHPIN_INTAKE_PORT": str(intake),
            "LYNCHPIN_TRIAGE_PORT": str(triage),
            "LYNCHPIN_COMMS_PORT": str(comms),
            "LYNCHPIN_ANALYTICS_PORT": str(analytics),
        }
        log = tmp_path / "lynchpin.log"
        proc = await _start(env, log)
        try:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as client:
                alert = {"title": "Queue stuck", "service": "jobs", "severity": "critical", "dedup_key": "q"}
                r = await client.post(f"http://127.0.0.1:{intake}/v1/alerts", json=alert)
                assert r.status_code == 202, r.text
            await eventually(lambda: _true(hook.held.is_set()), timeout=30)
            proc.send_signal(signal.SIGKILL)  # sent, not yet recorded
            await proc.wait()
            assert len(hook.received) == 1
            hook.release.set()

            proc = await _start(env, log)
            await eventually(lambda: _true(len(hook.received) >= 2), timeout=30)
            key = hook.received[0].headers["idempotency-key"]
            assert hook.received[1].headers["idempotency-key"] == key

            async def recorded() -> list[dict[str, Any]]:
                async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN}"}) as client:
                    r = await client.get(
                        f"http://127.0.0.1:{comms}/v1/notifications", params={"status": "sent"}
                    )
                    return [n for n in r.json() if n["notification_id"] == key]

            [note] = await eventually(recorded, timeout=30)
            assert note["attempts"] == 1
            assert len(hook.received) == 2
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

"""Comms stops between sending a notification and recording it; after a restart the notification
is sent at most once more, with the same Idempotency-Key, and recorded as sent exactly once."""

from __future__ import annotations

from pathlib import Path

import orjson

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

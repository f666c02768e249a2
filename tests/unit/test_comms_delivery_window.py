"""The delivery worker gives each notification a task of its own: one that waits out its retries
holds up no later notification, and the saved checkpoint never passes one that is unfinished."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.comms.channels import DeliveryFailed, Message
from services.comms.delivery import DELIVERY, Delivery, comms_stream, notification_stream
from shared.clock import FakeClock
from shared.events import NotificationPlanned
from shared.policy.comms import RetryPolicy
from shared.store import START, Write
from shared.store.memory import MemoryStore
from tests.helpers import eventually

T = datetime(2026, 11, 23, 3, tzinfo=UTC)


class Down:
    """A chat webhook that is down: every try fails (not permanently, so it is retried)."""

    def __init__(self) -> None:
        self.tries = 0

    async def send(self, message: Message) -> None:
        self.tries += 1
        raise DeliveryFailed("HTTP 503")


class Up:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message.notification_id)


def planned(notification_id: str, channel: str) -> NotificationPlanned:
    return NotificationPlanned(
        incident_id="inc-1",
        notification_id=notification_id,
        cause_event_id="ev-1",
        cause_type="IncidentOpened",
        recipient=f"{notification_id}@example.org",
        channel=channel,
        audience="responders",
        subject="Primary database down",
        body="P1",
        occurred_at=T,
    )


async def test_a_notification_in_backoff_holds_up_no_later_one_nor_passes_the_checkpoint() -> None:
    store = MemoryStore(source="comms")
    down, up = Down(), Up()
    slow = RetryPolicy(attempts=3, first_delay=timedelta(seconds=60), jitter=0)
    delivery = Delivery(store, {"chat": down, "email": up}, FakeClock(T), slow)
    await store.commit([Write(comms_stream("inc-1"), [planned("n-chat", "chat")], None)])
    worker = asyncio.create_task(delivery.run())
    try:
        await eventually(lambda: _true(down.tries == 1))  # the first try failed: now a minute's wait
        await store.commit([Write(comms_stream("inc-1"), [planned("n-page", "email")], None)])
        await eventually(lambda: _true(up.sent == ["n-page"]))
        sent = await store.read(notification_stream("n-page"))
        assert [e.type for e in sent] == ["NotificationSent"]
        assert down.tries == 1  # still waiting out its backoff
        # The checkpoint stays before the unfinished notification: a restart picks it up again.
        [first] = await store.read_all(after=START, limit=1)
        assert await store.checkpoint(DELIVERY) < first.checkpoint
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def _true(value: bool) -> bool | None:
    return True if value else None

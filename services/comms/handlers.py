"""Comms' shell: plan notifications from events; a delivery worker sends what was planned."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.comms import domain
from services.comms.channels import Channel, DeliveryFailed
from shared.aggregates import Aggregates
from shared.clock import Clock
from shared.envelope import Envelope
from shared.events import Event, NotificationFailed, NotificationPlanned, NotificationSent
from shared.store import ConcurrencyError, EventStore, Tracking, Write

log = logging.getLogger("lynchpin.comms")

DELIVERY = "delivery"


def comms_stream(incident_id: str) -> str:
    return f"comms-{incident_id}"


def notification_stream(notification_id: str) -> str:
    return f"notification-{notification_id}"


@dataclass
class CommsHandlers:
    store: EventStore
    responders: Sequence[domain.Recipient]

    def __post_init__(self) -> None:
        self.incidents: Aggregates[domain.CommsIncident] = Aggregates(
            self.store, domain.CommsIncident, domain.evolve
        )

    async def on_event(self, env: Envelope) -> Sequence[Write]:
        incident_id = env.event.partition_key
        if incident_id is None:
            return []
        stream = comms_stream(incident_id)
        state, version = await self.incidents.load(stream)
        events = domain.plan(state, env.event, cause_event_id=env.id, responders=self.responders)
        if not events:
            return []
        return [Write(stream, events, version, correlation_id=env.correlation_id, causation_id=env.id)]


@dataclass
class Delivery:
    """Sends every planned notification once, records the outcome; resumes from its checkpoint.

    Each attempt's outcome is appended to the notification's own stream at the next expected
    version, so a notification is recorded as sent at most once. A crash between sending and
    recording resends it once after restart, with the same Idempotency-Key.
    """

    store: EventStore
    channels: Mapping[str, Channel]
    clock: Clock
    attempts: int = 4
    first_delay: float = 0.2
    concurrency: int = 32
    _gate: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.concurrency)

    async def run(self) -> None:
        at = await self.store.checkpoint(DELIVERY)
        while True:
            page = await self.store.read_all(after=at, limit=200)
            if not page:
                await self.store.wait_for_append(1.0, after=at)
                continue
            planned = [e for e in page if isinstance(e.event, NotificationPlanned)]
            await asyncio.gather(*(self._deliver(e) for e in planned))
            at = page[-1].checkpoint
            await self.store.commit([], tracking=Tracking(DELIVERY, None, checkpoint=at))

    async def _deliver(self, env: Envelope) -> None:
        n = env.event
        assert isinstance(n, NotificationPlanned)
        stream = notification_stream(n.notification_id)
        history = [e.event for e in await self.store.read(stream)]
        if any(
            isinstance(e, NotificationSent) or (isinstance(e, NotificationFailed) and e.final)
            for e in history
        ):
            return  # delivered or given up on before a restart
        channel = self.channels.get(n.channel)
        delay = self.first_delay
        async with self._gate:
            for attempt in range(len(history) + 1, self.attempts + 1):
                outcome: Event
                try:
                    if channel is None:
                        raise DeliveryFailed(f"no channel {n.channel!r} is configured")
                    await channel.send(n)
                    outcome = NotificationSent(
                        incident_id=n.incident_id,
                        notification_id=n.notification_id,
                        channel=n.channel,
                        recipient=n.recipient,
                        attempt=attempt,
                        occurred_at=self.clock(),
                    )
                except DeliveryFailed as e:
                    log.warning("notification %s attempt %d failed: %s", n.notification_id, attempt, e)
                    outcome = NotificationFailed(
                        incident_id=n.incident_id,
                        notification_id=n.notification_id,
                        channel=n.channel,
                        recipient=n.recipient,
                        attempt=attempt,
                        error=str(e)[:1000],
                        final=attempt == self.attempts or channel is None,
                        occurred_at=self.clock(),
                    )
                try:
                    await self.store.commit(
                        [
                            Write(
                                stream,
                                [outcome],
                                attempt - 1,
                                correlation_id=env.correlation_id,
                                causation_id=env.id,
                            )
                        ]
                    )
                except ConcurrencyError:
                    log.info("notification %s is being delivered elsewhere", n.notification_id)
                    return
                if not isinstance(outcome, NotificationFailed) or outcome.final:
                    return
                await asyncio.sleep(delay * (1 + random.random()))
                delay *= 2

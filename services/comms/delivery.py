"""The delivery worker: sends every planned notification, records each attempt's outcome.

Each outcome is appended to the notification's own stream at the next expected version, so a
notification is recorded as sent at most once. A crash between sending and recording resends it
once after restart, with the same Idempotency-Key. Each channel gets `attempts` tries with
exponential backoff and jitter; then the stakeholder's fallback channel; then the notification is
dead-lettered (a final NotificationFailed) until someone asks for a retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from services.comms.channels import Channel, DeliveryFailed, Message
from shared.clock import Clock
from shared.envelope import Checkpoint, Envelope
from shared.events import (
    Event,
    NotificationCoalesced,
    NotificationFailed,
    NotificationPlanned,
    NotificationRetryRequested,
    NotificationSent,
)
from shared.policy.comms import RetryPolicy
from shared.store import ConcurrencyError, EventStore, Tracking, Write

log = logging.getLogger("lynchpin.comms.delivery")

DELIVERY = "delivery"
PAGE = 200  # events of comms' log read at a time


def comms_stream(incident_id: str) -> str:
    return f"comms-{incident_id}"


def notification_stream(notification_id: str) -> str:
    return f"notification-{notification_id}"


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a notification's delivery stands, from its stream (since the last retry request)."""

    sent: bool = False
    dead: bool = False
    primary_failures: int = 0
    fallback_failures: int = 0
    primary_given_up: bool = False
    attempts: int = 0
    last_error: str | None = None


def progress(history: Sequence[Event], *, attempts: int) -> Progress:
    p = Progress()
    for e in history:
        match e:
            case NotificationSent():
                p = Progress(sent=True, attempts=p.attempts + 1, last_error=p.last_error)
            case NotificationRetryRequested():
                p = Progress(attempts=p.attempts)
            case NotificationFailed():
                fallback = p.primary_given_up
                p = Progress(
                    dead=e.final,
                    primary_failures=p.primary_failures + (not fallback),
                    fallback_failures=p.fallback_failures + fallback,
                    primary_given_up=p.primary_given_up
                    or (not fallback and (e.permanent or p.primary_failures + 1 >= attempts)),
                    attempts=p.attempts + 1,
                    last_error=e.error,
                )
    return p


def backoff(policy: RetryPolicy, failures: int, rand: float) -> float:
    """Seconds before the next try: doubling from `first_delay`, capped, plus up to `jitter` more."""
    base = min(policy.first_delay * (2 ** max(failures - 1, 0)), policy.max_delay).total_seconds()
    return float(base * (1 + policy.jitter * rand))


@dataclass
class Delivery:
    store: EventStore
    channels: Mapping[str, Channel]
    clock: Clock
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 32
    backlog: int = 1000
    save_every: float = 1.0
    """Seconds between saves of the position: each is a store transaction of its own, and a restart
    that starts a little further back costs only a read of each finished notification's stream."""
    rand: random.Random = field(default_factory=random.Random)
    _gate: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.concurrency)

    async def run(self) -> None:
        """Follow comms' log and deliver each notification in a task of its own, so that one that
        waits out its retries holds up nobody else's. The saved checkpoint is the end of the longest
        finished prefix of the log: after a restart, what was in flight is picked up again (each
        notification's own stream says how far it got)."""
        at = saved = done = await self.store.checkpoint(DELIVERY)
        loop = asyncio.get_running_loop()
        saved_at = loop.time()
        window: deque[tuple[Checkpoint, asyncio.Task[None] | None]] = deque()
        try:
            while True:
                while window and (window[0][1] is None or window[0][1].done()):
                    checkpoint, task = window.popleft()
                    if task is not None:
                        task.result()  # a store outage ends the worker; its supervisor starts it again
                    done = checkpoint
                if done != saved and loop.time() - saved_at >= self.save_every:
                    await self.store.commit([], tracking=Tracking(DELIVERY, None, checkpoint=done))
                    saved, saved_at = done, loop.time()
                if len(window) >= self.backlog:
                    head = window[0][1]
                    assert head is not None  # finished and empty places were taken off above
                    await asyncio.wait([head], timeout=1.0)
                    continue
                page = await self.store.read_all(after=at, limit=PAGE)
                for env in page:
                    wanted = isinstance(env.event, NotificationPlanned | NotificationRetryRequested)
                    window.append(
                        (env.checkpoint, asyncio.create_task(self._deliver(env)) if wanted else None)
                    )
                if page:
                    at = page[-1].checkpoint
                if len(page) < PAGE:  # the end of the log: wait for more rather than read again at once
                    await self.store.wait_for_append(0.2 if window else 1.0, after=at)
        finally:
            for _, task in window:
                if task is not None:
                    task.cancel()

    async def _planned(self, env: Envelope) -> NotificationPlanned | None:
        e = env.event
        if isinstance(e, NotificationPlanned):
            return e
        assert isinstance(e, NotificationRetryRequested)
        for h in await self.store.read(comms_stream(e.incident_id)):
            if isinstance(h.event, NotificationPlanned) and h.event.notification_id == e.notification_id:
                return h.event
        return None

    async def _deliver(self, env: Envelope) -> None:
        n = await self._planned(env)
        if n is None:
            return
        stream = notification_stream(n.notification_id)
        history = [e.event for e in await self.store.read(stream)]
        version = len(history)
        p = progress(history, attempts=self.policy.attempts)
        if p.sent or p.dead:
            return  # delivered, or given up on, before a restart
        phases: list[tuple[str, str, bool, int]] = []
        if not p.primary_given_up:
            phases.append((n.channel, n.recipient, False, p.primary_failures))
        if n.fallback_channel and n.fallback_recipient:
            phases.append((n.fallback_channel, n.fallback_recipient, True, p.fallback_failures))
        if not phases:
            phases.append((n.channel, n.recipient, False, 0))
        for index, (kind, address, fallback, failures) in enumerate(phases):
            last_phase = index == len(phases) - 1
            while failures < self.policy.attempts:
                failures += 1
                version += 1
                outcome: Event
                delay: float | None = None
                try:
                    async with self._gate:  # at most `concurrency` sends in flight; backoffs wait outside
                        await self._send(kind, address, n)
                    outcome = NotificationSent(
                        incident_id=n.incident_id,
                        notification_id=n.notification_id,
                        channel=kind,
                        recipient=address,
                        attempt=version,
                        fallback=fallback,
                        occurred_at=self.clock(),
                    )
                except DeliveryFailed as e:
                    log.warning(
                        "notification %s via %s attempt %d failed: %s",
                        n.notification_id,
                        kind,
                        failures,
                        e,
                    )
                    if e.permanent:
                        failures = self.policy.attempts
                    exhausted = failures >= self.policy.attempts
                    if not exhausted:
                        delay = backoff(self.policy, failures, self.rand.random())
                    now = self.clock()
                    outcome = NotificationFailed(
                        incident_id=n.incident_id,
                        notification_id=n.notification_id,
                        channel=kind,
                        recipient=address,
                        attempt=version,
                        error=str(e)[:1000],
                        final=exhausted and last_phase,
                        retry_at=now + timedelta(seconds=delay) if delay is not None else None,
                        permanent=e.permanent,
                        occurred_at=now,
                    )
                try:
                    await self.store.commit(
                        [
                            Write(
                                stream,
                                [outcome],
                                version - 1,
                                correlation_id=env.correlation_id,
                                causation_id=env.id,
                            )
                        ]
                    )
                except ConcurrencyError:
                    log.info("notification %s is being delivered elsewhere", n.notification_id)
                    return
                if isinstance(outcome, NotificationSent):
                    return
                if delay is not None:
                    await asyncio.sleep(delay)

    async def _send(self, kind: str, address: str, n: NotificationPlanned) -> None:
        channel = self.channels.get(kind)
        if channel is None:
            raise DeliveryFailed(f"no channel {kind!r} is configured", permanent=True)
        await channel.send(
            Message(
                notification_id=n.notification_id,
                incident_id=n.incident_id,
                cause=n.cause_type,
                audience=n.audience,
                subject=n.subject,
                body=n.body,
                channel=kind,
                address=address,
            )
        )


@dataclass
class Status:
    notification_id: str
    incident_id: str
    recipient: str
    channel: str
    audience: str
    subject: str
    cause_type: str
    stakeholder: str
    status: str = "planned"
    attempts: int = 0
    error: str | None = None
    delivered_via: str | None = None


class NotificationIndex:
    """Every notification's status, folded from comms' own log (rebuilt on start)."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.items: dict[str, Status] = {}

    def fold(self, env: Envelope) -> None:
        self.apply(env.event)

    def apply(self, e: Event) -> None:
        match e:
            case NotificationPlanned() | NotificationCoalesced():
                self.items[e.notification_id] = Status(
                    e.notification_id,
                    e.incident_id,
                    e.recipient,
                    e.channel,
                    e.audience,
                    e.subject,
                    e.cause_type,
                    e.stakeholder,
                    status="coalesced" if isinstance(e, NotificationCoalesced) else "planned",
                )
            case NotificationSent() if e.notification_id in self.items:
                s = self.items[e.notification_id]
                s.status, s.attempts, s.delivered_via = "sent", s.attempts + 1, e.channel
            case NotificationFailed() if e.notification_id in self.items:
                s = self.items[e.notification_id]
                s.status = "failed" if e.final else "retrying"
                s.attempts, s.error = s.attempts + 1, e.error
            case NotificationRetryRequested() if e.notification_id in self.items:
                self.items[e.notification_id].status = "planned"

"""Intake's background work: follow its own log into the registry, and the heartbeat timer.

The timer is durable: due times come from the heartbeat streams (rebuilt from the log after a
restart), the time from the clock, and an expiry is appended at the heartbeat stream's expected
version, so two instances (or a retry) cannot expire one heartbeat twice."""

from __future__ import annotations

import asyncio
import logging

from services.intake.handlers import Intake
from shared.store import EventStore

log = logging.getLogger("lynchpin.intake")


async def follow_own_log(store: EventStore, intake: Intake, caught_up: asyncio.Event) -> None:
    """Fold intake's log into the registry, from the start, then as it grows (a restart of this
    task resumes where the registry stands, so nothing counts twice)."""
    while True:
        await intake.catch_up()
        caught_up.set()
        await store.wait_for_append(1.0, after=intake.registry.checkpoint)
        _stop_if_cancelled()


def _stop_if_cancelled() -> None:
    """Python 3.11's `asyncio.wait_for` can swallow a cancellation that arrives as the awaited
    thing completes; a loop around it would then never stop. Honour the request here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def heartbeat_timer(intake: Intake, caught_up: asyncio.Event, *, tick: float = 0.2) -> None:
    """Expire every overdue heartbeat (by the clock), opening its incident."""
    await caught_up.wait()
    while True:
        for name in intake.registry.due_heartbeats(intake.clock()):
            decision = await intake.expire_heartbeat(name)
            if decision is not None:
                log.info(
                    "heartbeat %s expired: incident %s (%s)", name, decision.incident_id, decision.outcome
                )
        await asyncio.sleep(tick)

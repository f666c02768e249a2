"""Durable timers, recomputed from comms' own log: overdue status updates (reminder, then
escalation) and coalescing digests. The worker follows the log into memory, and on each tick
asks the handlers to fire what is due; they decide again from the store and append to the
incident's stream at its expected version (an overdue level per due time, a digest per id), so a
second instance or a restart fires nothing twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.comms import cadence, domain
from services.comms.recipients import Recipients
from shared.clock import Clock
from shared.envelope import Envelope
from shared.events import UpdateCadenceStarted
from shared.logviews import LogViews
from shared.policy.comms import CommsPolicy
from shared.store import EventStore

log = logging.getLogger("lynchpin.comms.timers")

RECIPIENT_PREFIX = "comms-recipient-"
INCIDENT_PREFIX = "comms-"


@dataclass
class Timers:
    store: EventStore
    clock: Clock
    policy: CommsPolicy
    fire_overdue: Callable[[str], Awaitable[int]]
    flush_digest: Callable[[str], Awaitable[int]]
    log: LogViews | None = None
    """The process's reader of comms' log (shared with the handlers); a reader of its own if None."""
    recipients: Recipients | None = None
    incidents: dict[str, domain.CommsIncident] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = LogViews(self.store)
        if self.recipients is None:
            self.recipients = Recipients(self.policy.coalesce.window)
            self.log.add(self.recipients.fold)
        self.log.add(self.fold)

    def fold(self, env: Envelope) -> None:
        """Keep only what a timer may need: incidents whose cadence runs (recipients fold apart)."""
        e = env.event
        if env.stream.startswith(RECIPIENT_PREFIX) or not env.stream.startswith(INCIDENT_PREFIX):
            return
        key = e.partition_key
        if not key or (key not in self.incidents and not isinstance(e, UpdateCadenceStarted)):
            return
        state = domain.evolve(self.incidents.get(key, domain.CommsIncident(id=key)), e)
        if state.cadence_every is None:
            self.incidents.pop(key, None)
        else:
            self.incidents[key] = state

    async def catch_up(self) -> None:
        assert self.log is not None and self.recipients is not None
        await self.log.catch_up()
        self.recipients.forget_quiet(self.clock())

    def due(self, now: datetime) -> tuple[list[str], list[str]]:
        incidents = [i for i, s in self.incidents.items() if cadence.overdue(s, self.policy.cadence, now=now)]
        assert self.recipients is not None
        return incidents, self.recipients.due(now)

    async def tick(self) -> int:
        """Catch up with the log, fire what is due now; returns how many timers fired."""
        await self.catch_up()
        incidents, digests = self.due(self.clock())
        fired = 0
        for incident_id in incidents:
            fired += await self.fire_overdue(incident_id)
        for key in digests:
            fired += await self.flush_digest(key)
        if fired:
            await self.catch_up()
        return fired

    async def run(self) -> None:
        tick = self.policy.timer_tick.total_seconds()
        while True:
            await self.tick()
            await asyncio.sleep(tick)

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
from shared.envelope import Checkpoint
from shared.events import UpdateCadenceStarted
from shared.policy.comms import CommsPolicy
from shared.store import START, EventStore

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
    incidents: dict[str, domain.CommsIncident] = field(default_factory=dict)
    recipients: Recipients = field(init=False)
    at: Checkpoint = START

    def __post_init__(self) -> None:
        self.recipients = Recipients(self.store, self.policy.coalesce.window)

    async def catch_up(self) -> None:
        while page := await self.store.read_all(after=self.at, limit=1000):
            for env in page:
                e = env.event
                # only what a timer may need is kept: recipients with held notifications (and their
                # count, to tell what is held), incidents whose cadence runs
                self.recipients.note([e])
                if env.stream.startswith(RECIPIENT_PREFIX):
                    continue
                if env.stream.startswith(INCIDENT_PREFIX) and e.partition_key:
                    key = e.partition_key
                    if key not in self.incidents and not isinstance(e, UpdateCadenceStarted):
                        continue
                    state = domain.evolve(self.incidents.get(key, domain.CommsIncident(id=key)), e)
                    if state.cadence_every is None:
                        self.incidents.pop(key, None)
                    else:
                        self.incidents[key] = state
            self.at = page[-1].checkpoint
        self.recipients.forget_quiet(self.clock())

    def due(self, now: datetime) -> tuple[list[str], list[str]]:
        incidents = [i for i, s in self.incidents.items() if cadence.overdue(s, self.policy.cadence, now=now)]
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

"""Paging, the shell: start and stop escalations as triage reacts to intake, and a durable timer
worker that reaches each due step.

Escalations live on `escalation-<incident id>` streams in triage's store. `Paging.on_event`
wraps triage's handler: when the handler routes an incident, the escalation starts in the same
commit; an acknowledgement, resolve or close from intake stops it in the consumer's transaction.
The worker folds triage's own log (from the start after every restart), and appends each due step
at the stream's expected version, so a step is reached once per incident + step + due time even
with several instances, a crash between deciding and appending, or an acknowledgement racing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.triage import escalation
from services.triage.escalation import Escalation
from services.triage.handlers import TriageHandlers, constant, triage_stream
from services.triage.schedule import DueTimes
from services.triage.state import Triage, evolve
from shared.acklinks import AckClaim, sign_ack
from shared.aggregates import Aggregates
from shared.clock import Clock
from shared.envelope import Envelope
from shared.events import (
    EscalationStarted,
    EscalationStopped,
    Event,
    IncidentAcknowledged,
    IncidentClosed,
    IncidentReopened,
    IncidentResolved,
    IncidentRouted,
    OnCallOverrideAdded,
    OnCallOverrideRemoved,
    PageRequested,
)
from shared.logviews import LogViews
from shared.policy.oncall import OnCallPolicy, Override
from shared.service import credentials_from
from shared.settings import Settings
from shared.store import ConcurrencyError, EventStore, Write

PREFIX = "escalation-"
OVERRIDES = "oncall-schedule-"


def overrides_stream(schedule_id: str) -> str:
    return f"{OVERRIDES}{schedule_id}"


def escalation_stream(incident_id: str) -> str:
    return f"{PREFIX}{incident_id}"


def settled(state: Triage) -> bool:
    """Acknowledged (the response clock stopped) or resolved: nobody needs paging."""
    response = state.clocks.get("response")
    return state.resolved or (response is not None and response.stopped_at is not None)


@dataclass
class Paging:
    handlers: TriageHandlers
    policy: OnCallPolicy
    secret: str
    base_url: str
    clock: Clock
    log: LogViews
    """The process's reader of triage's log (shared with the timers)."""
    poll: float = 0.25
    escalations: dict[str, Escalation] = field(default_factory=dict)
    due: DueTimes = field(default_factory=DueTimes)
    history: list[Event] = field(default_factory=list)
    overrides: dict[str, dict[str, OnCallOverrideAdded]] = field(default_factory=dict)
    _effective: OnCallPolicy | None = None

    def __post_init__(self) -> None:
        self.loads: Aggregates[Escalation] = Aggregates(self.store, constant(Escalation()), escalation.evolve)
        self.log.add(self._fold)

    @property
    def store(self) -> EventStore:
        return self.handlers.store

    def link(self, incident_id: str, now: datetime) -> escalation.Link:
        base = self.base_url.rstrip("/")

        def make(person: str) -> tuple[str, datetime]:
            expires = now + self.policy.ack_link_ttl
            token = sign_ack(self.secret, AckClaim(incident_id, person, now, expires))
            return f"{base}/v1/ack/{token}", expires

        return make

    # --- reactions, in triage's consumer transaction ----------------------------------------

    async def on_event(self, env: Envelope) -> Sequence[Write]:
        """Triage's handler, then what its writes and the input event mean for escalations."""
        decided = await self.handlers.decide(env)
        return [*decided.writes, *await self.react(env, decided.writes, decided.triage)]

    async def react(
        self, env: Envelope, writes: Sequence[Write], triage: Triage | None = None
    ) -> list[Write]:
        """`triage`: the incident's triage state after `writes`, when the handler has it (else it
        is loaded and the writes folded onto it)."""
        event = env.event
        incident_id = event.partition_key
        routed = [e for w in writes for e in w.events if isinstance(e, IncidentRouted)]
        match event:
            case IncidentAcknowledged():
                ending: tuple[str, str] | None = ("acknowledged", event.by)
            case IncidentResolved():
                ending = ("resolved", event.by)
            case IncidentClosed():
                ending = ("closed", event.by)
            case _:
                ending = None
        reopened = isinstance(event, IncidentReopened)
        if incident_id is None or (ending is None and not routed and not reopened):
            return []
        stream = escalation_stream(incident_id)
        state, version = await self.loads.load(stream)
        events: list[Event] = []
        if ending is not None:
            events += escalation.stop(state, ending[0], by=ending[1], now=event.occurred_at)
        if reopened:
            events += escalation.on_reopened(state, self.policy, now=event.occurred_at)
        if routed and triage is None:
            triage, _ = await self.handlers.triages.load(triage_stream(incident_id))
            for w in writes:
                if w.stream == triage_stream(incident_id):
                    for e in w.events:
                        triage = evolve(triage, e)
        for e in events:
            state = escalation.evolve(state, e)
        for r in routed:
            assert triage is not None
            started = escalation.on_routed(
                state,
                self.policy,
                incident_id=incident_id,
                team=r.team,
                service=r.service or triage.service,
                priority=triage.priority.value if triage.priority else "",
                title=r.title or triage.title,
                settled=settled(triage),
                now=r.occurred_at,
            )
            for e in started:
                state = escalation.evolve(state, e)
            events += started
        if not events:
            return []
        return [Write(stream, events, version, correlation_id=env.correlation_id, causation_id=env.id)]

    # --- the timer worker --------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Fold every escalation appended since the last call (the first reads the whole log)."""
        await self.log.catch_up()

    def _fold(self, env: Envelope) -> None:
        if env.stream.startswith(PREFIX):
            incident_id = env.stream.removeprefix(PREFIX)
            state = escalation.evolve(self.escalations.get(incident_id, Escalation()), env.event)
            self.escalations[incident_id] = state
            if isinstance(env.event, EscalationStarted | EscalationStopped | PageRequested):
                self.history.append(env.event)  # what the on-call report counts
            self.due.set(incident_id, escalation.due(state))
        elif env.stream.startswith(OVERRIDES):
            self._override(env.event)

    def _override(self, event: Event) -> None:
        match event:
            case OnCallOverrideAdded():
                self.overrides.setdefault(event.schedule_id, {})[event.override_id] = event
            case OnCallOverrideRemoved():
                self.overrides.get(event.schedule_id, {}).pop(event.override_id, None)
        self._effective = None

    def effective(self) -> OnCallPolicy:
        """The policy file's on-call section with the overrides added over the API."""
        if self._effective is None:
            schedules = []
            for s in self.policy.schedules:
                added = [
                    Override(start=o.start, end=o.end, person=o.person, reason=o.reason)
                    for o in self.overrides.get(s.id, {}).values()
                ]
                schedules.append(s.model_copy(update={"overrides": [*s.overrides, *added]}) if added else s)
            self._effective = self.policy.model_copy(update={"schedules": schedules})
        return self._effective

    def next_due(self) -> datetime | None:
        return self.due.next()

    async def tick(self) -> int:
        """Reach every step due now; returns how many events were appended."""
        await self.catch_up()
        now = self.clock()
        written = 0
        for incident_id in self.due.due(now):
            stream = escalation_stream(incident_id)
            state, version = await self.loads.load(stream)
            events = escalation.reach_step(state, self.effective(), now=now, link=self.link(incident_id, now))
            if not events:
                continue
            try:
                await self.store.commit([Write(stream, events, version, correlation_id=incident_id)])
            except ConcurrencyError:
                continue  # acknowledged meanwhile, or another instance reached it: decide again next tick
            written += len(events)
        await self.catch_up()
        return written

    async def run(self) -> None:
        """Forever: reach what is due, then wait for the next due time, an append, or the poll."""
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                raise asyncio.CancelledError  # 3.11's wait_for can swallow a cancellation
            await self.tick()
            wait = min(self.poll, self.policy.tick.total_seconds())
            when = self.next_due()
            if when is not None:
                wait = min(wait, max((when - self.clock()).total_seconds(), 0.0))
            await self.store.wait_for_append(max(wait, 0.05), after=self.log.at)


def paging_for(
    settings: Settings, policy: OnCallPolicy, handlers: TriageHandlers, clock: Clock, log: LogViews
) -> Paging:
    """Paging as triage's app runs it: links signed with the secret every service holds, pointing
    at intake's public URL."""
    base = policy.ack_base_url or f"http://{settings.host}:{settings.intake_port}"
    return Paging(handlers, policy, credentials_from(settings).secret, base, clock, log)

"""Triage's shell: react to intake's events and to commands by loading, deciding and writing.

Streams: `triage-<incident id>` (one incident's triage), `service-activity-<service>` (what the
storm and recurrence rules count), and `problem-<id>`; problem suggestions
are recorded on the activity stream of their service.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from services.triage import domain, major, problems
from services.triage.activity import ServiceActivity, evolve_activity
from services.triage.problems import Problem, evolve_problem
from services.triage.state import Triage, evolve
from shared.aggregates import Aggregates
from shared.clock import Clock, system_clock
from shared.envelope import Envelope
from shared.events import (
    AlertAttached,
    AlertRepeated,
    Event,
    IncidentAcknowledged,
    IncidentClosed,
    IncidentOpened,
    IncidentPutOnHold,
    IncidentReopened,
    IncidentResolved,
    IncidentResumed,
    StormDetected,
)
from shared.policy.triage import TriagePolicy
from shared.store import ConcurrencyError, EventStore, Write

S = TypeVar("S")


def triage_stream(incident_id: str) -> str:
    return f"triage-{incident_id}"


def activity_stream(service: str) -> str:
    return f"service-activity-{service}"


def problem_stream(problem_id: str) -> str:
    return f"problem-{problem_id}"


@dataclass(frozen=True, slots=True)
class Decided:
    """What triage decided for one input event: its writes, and the incident's triage state after
    them (None when the event is not about an incident triage knows), for paging to go on from."""

    writes: list[Write]
    triage: Triage | None = None


def constant(value: S) -> Callable[[], S]:
    """The initial state of a new stream: one immutable value serves them all (it is asked for on
    every load)."""
    return lambda: value


INPUTS = frozenset(
    cls.__name__
    for cls in (
        IncidentOpened,
        AlertAttached,
        AlertRepeated,
        IncidentAcknowledged,
        IncidentResolved,
        IncidentClosed,
        IncidentPutOnHold,
        IncidentResumed,
        IncidentReopened,
    )
)
"""The intake events `TriageHandlers.decide` acts on; the bus passes over the rest (AlertObserved, say)."""

MEMO = 1024  # decisions remembered for a handler run again (the consumer re-runs one whose streams moved)


@dataclass
class TriageHandlers:
    store: EventStore
    policy: TriagePolicy = field(default_factory=TriagePolicy)
    clock: Clock = system_clock

    def __post_init__(self) -> None:
        self.triages: Aggregates[Triage] = Aggregates(self.store, constant(Triage()), evolve)
        self.activities: Aggregates[ServiceActivity] = Aggregates(
            self.store, constant(ServiceActivity()), evolve_activity
        )
        self.problems: Aggregates[Problem] = Aggregates(self.store, constant(Problem()), evolve_problem)
        self._memo: OrderedDict[str, tuple[int, tuple[Event, ...], Triage]] = OrderedDict()

    # --- reactions to intake's events ----------------------------------------------------------

    async def on_event(self, env: Envelope) -> Sequence[Write]:
        return (await self.decide(env)).writes

    async def decide(self, env: Envelope) -> Decided:
        event = env.event
        match event:
            case IncidentOpened():
                return await self._opened(env, event)
            case AlertAttached() | AlertRepeated():
                return await self._alert(env, event)
            case IncidentAcknowledged():
                return await self._clocks(
                    env,
                    lambda s: domain.stop_clocks(
                        s, ("response",), by=event.by, now=event.occurred_at, policy=self.policy
                    ),
                )
            case IncidentResolved() | IncidentClosed():
                kinds = ("response", "resolution")
                return await self._clocks(
                    env,
                    lambda s: domain.stop_clocks(
                        s, kinds, by=event.by, now=event.occurred_at, policy=self.policy
                    ),
                )
            case IncidentPutOnHold():
                return await self._clocks(
                    env,
                    lambda s: domain.pause_clocks(s, by=event.by, reason=event.reason, now=event.occurred_at),
                )
            case IncidentResumed():
                return await self._clocks(
                    env,
                    lambda s: domain.resume_clocks(s, by=event.by, reason="resumed", now=event.occurred_at),
                )
            case IncidentReopened():
                return await self._clocks(
                    env,
                    lambda s: domain.resume_clocks(
                        s,
                        by=event.by,
                        reason=f"reopened: {event.reason}",
                        now=event.occurred_at,
                        kinds=("resolution",),
                        reopen=True,
                    ),
                )
            case _:
                return Decided([])

    def _write(self, env: Envelope, stream: str, events: list[Event], version: int | None) -> Write:
        return Write(stream, events, version, correlation_id=env.correlation_id, causation_id=env.id)

    async def _clocks(self, env: Envelope, decide: Callable[[Triage], list[Event]]) -> Decided:
        incident_id = env.event.partition_key
        assert incident_id is not None
        state, version = await self.triages.load(triage_stream(incident_id))
        if not state.exists:
            return Decided([])
        events = decide(state)
        if not events:
            return Decided([], state)
        for event in events:
            state = evolve(state, event)
        return Decided([self._write(env, triage_stream(incident_id), events, version)], state)

    async def _opened(self, env: Envelope, opened: IncidentOpened) -> Decided:
        stream = triage_stream(opened.incident_id)
        state, version = await self.triages.load(stream)
        # Every alert of a service writes that service's activity stream, so the consumer runs this
        # again whenever another incident's commit moved it on: the incident's own decision, a
        # pure function of its stream at this version, is remembered rather than made again.
        remembered = self._memo.get(env.id)
        if remembered is not None and remembered[0] == version:
            _, made, state = remembered
            events = list(made)
        else:
            events, state = domain.opening(state, opened, self.policy)
            self._remember(env.id, (version, tuple(events), state))
        if not events:
            return Decided([])
        return await self._activity(env, state, "incident", "", stream, version, events)

    def _remember(self, key: str, decision: tuple[int, tuple[Event, ...], Triage]) -> None:
        self._memo[key] = decision
        if len(self._memo) > MEMO:
            self._memo.popitem(last=False)

    async def _alert(self, env: Envelope, alert: AlertAttached | AlertRepeated) -> Decided:
        stream = triage_stream(alert.incident_id)
        state, version = await self.triages.load(stream)
        if not state.exists:
            return Decided([])
        events: list[Event] = []
        if isinstance(alert, AlertAttached):
            events += domain.on_labels(state, alert.labels, alert.occurred_at, self.policy)
            for event in events:
                state = evolve(state, event)
        return await self._activity(env, state, "alert", alert.alert_key, stream, version, events)

    async def _activity(
        self,
        env: Envelope,
        state: Triage,
        kind: Literal["incident", "alert"],
        fingerprint: str,
        stream: str,
        version: int,
        events: list[Event],
    ) -> Decided:
        """Count the incident or alert on its service; a storm may propose the incident as major,
        and a recurrence may suggest a problem."""
        activity, activity_version = await self.activities.load(activity_stream(state.service))
        seen, found = major.notice(
            activity,
            service=state.service,
            kind=kind,
            incident_id=state.incident_id,
            fingerprint=fingerprint,
            at=env.event.occurred_at,
            policy=self.policy,
        )
        now = seen.occurred_at
        service_events: list[Event] = [seen]
        if found is not None:
            proposal = major.storm_proposal(state, found, now, self.policy)
            events += proposal
            for event in proposal:
                state = evolve(state, event)
            service_events.append(
                StormDetected(
                    incident_id=state.incident_id,
                    service=state.service,
                    activity=found.activity,
                    count=found.count,
                    window_minutes=found.window_minutes,
                    proposed=bool(proposal),
                    occurred_at=now,
                )
            )
        suggested: list[Event] = []
        if kind == "incident" or env.event.type == "AlertAttached":
            suggested = problems.suggest(activity, seen, self.policy)
            service_events += suggested
        writes = [self._write(env, activity_stream(state.service), service_events, activity_version)]
        if events:
            writes.append(self._write(env, stream, events, version))
        return Decided(writes, state)

    # --- commands --------------------------------------------------------------------------------

    async def change(
        self, incident_id: str, decide: Callable[[Triage], list[Event]], if_match: int | None = None
    ) -> tuple[Triage, int]:
        """Load an incident's triage, decide, append at the version the caller saw (If-Match) or
        the one read; the new state and version."""
        stream = triage_stream(incident_id)
        state, version = await self.triages.load(stream)
        if if_match is not None and if_match != version:
            raise ConcurrencyError(stream, if_match, version)
        events = decide(state)
        if events:
            await self.store.commit([Write(stream, events, version)])
        return await self.triages.load(stream)

    async def change_problem(
        self, problem_id: str, decide: Callable[[Problem], list[Event]]
    ) -> tuple[Problem, int]:
        stream = problem_stream(problem_id)
        state, version = await self.problems.load(stream)
        events = decide(state)
        if events:
            await self.store.commit([Write(stream, events, version)])
        return await self.problems.load(stream)

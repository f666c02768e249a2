"""Triage's shell: react to intake's events and to commands by loading, deciding and writing.

Streams: `triage-<incident id>` (one incident's triage), `service-activity-<service>` (what the
storm and recurrence rules count), and `problem-<id>`; problem suggestions
are recorded on the activity stream of their service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

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


def triage_stream(incident_id: str) -> str:
    return f"triage-{incident_id}"


def activity_stream(service: str) -> str:
    return f"service-activity-{service}"


def problem_stream(problem_id: str) -> str:
    return f"problem-{problem_id}"


@dataclass
class TriageHandlers:
    store: EventStore
    policy: TriagePolicy = field(default_factory=TriagePolicy)
    clock: Clock = system_clock

    def __post_init__(self) -> None:
        self.triages: Aggregates[Triage] = Aggregates(self.store, Triage, evolve)
        self.activities: Aggregates[ServiceActivity] = Aggregates(
            self.store, ServiceActivity, evolve_activity
        )
        self.problems: Aggregates[Problem] = Aggregates(self.store, Problem, evolve_problem)

    # --- reactions to intake's events ----------------------------------------------------------

    async def on_event(self, env: Envelope) -> Sequence[Write]:
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
                return []

    def _write(self, env: Envelope, stream: str, events: list[Event], version: int | None) -> Write:
        return Write(stream, events, version, correlation_id=env.correlation_id, causation_id=env.id)

    async def _clocks(self, env: Envelope, decide: Callable[[Triage], list[Event]]) -> list[Write]:
        incident_id = env.event.partition_key
        assert incident_id is not None
        state, version = await self.triages.load(triage_stream(incident_id))
        if not state.exists:
            return []
        events = decide(state)
        return [self._write(env, triage_stream(incident_id), events, version)] if events else []

    async def _opened(self, env: Envelope, opened: IncidentOpened) -> list[Write]:
        stream = triage_stream(opened.incident_id)
        state, version = await self.triages.load(stream)
        events = domain.open_incident(state, opened, self.policy)
        if not events:
            return []
        for event in events:
            state = evolve(state, event)
        return await self._activity(env, state, "incident", "", stream, version, events)

    async def _alert(self, env: Envelope, alert: AlertAttached | AlertRepeated) -> list[Write]:
        stream = triage_stream(alert.incident_id)
        state, version = await self.triages.load(stream)
        if not state.exists:
            return []
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
    ) -> list[Write]:
        """Count the incident or alert on its service; a storm may propose the incident as major,
        and a recurrence may suggest a problem."""
        activity, activity_version = await self.activities.load(activity_stream(state.service))
        seen, activity, found = major.note(
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
            suggested = problems.suggestions(activity, state.service, fingerprint, now, self.policy)
            service_events += suggested
        writes = [self._write(env, activity_stream(state.service), service_events, activity_version)]
        if events:
            writes.append(self._write(env, stream, events, version))
        return writes

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

"""Triage's view of one incident, folded from its `triage-<id>` stream. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.triage.frozen import copier
from services.triage.sla import SlaClock
from shared.events import (
    Event,
    HandoverCompleted,
    IncidentRouted,
    Level,
    MajorIncidentAccepted,
    MajorIncidentProposed,
    MajorIncidentRejected,
    PostIncidentReviewRecorded,
    PriorityAssigned,
    PriorityChanged,
    RoleAssigned,
    RoleGapDetected,
    RoleRelinquished,
    SlaBreached,
    SlaClockPaused,
    SlaClockResumed,
    SlaClockStopped,
    SlaMet,
    SlaTargetSet,
    SlaWarningRaised,
)
from shared.policy.triage import Priority


@dataclass(frozen=True, slots=True)
class Major:
    """The major-incident decision: None (never proposed), proposed, accepted or rejected."""

    status: str | None = None
    proposed_by: str = ""
    proposed_at: datetime | None = None
    reason: str = ""
    automatic: bool = False
    rule: str = ""
    decided_by: str = ""
    decided_at: datetime | None = None
    business_impact: str = ""
    notes: str = ""
    rejection_reason: str = ""
    required_roles: tuple[str, ...] = ()
    review_required: bool = False
    reviewed_at: datetime | None = None
    reviewed_by: str = ""
    review_summary: str = ""


@dataclass(frozen=True, slots=True)
class Tenure:
    """One person holding one role for a while (Dispatch's participant roles)."""

    role: str
    person: str
    assumed_at: datetime
    by: str
    via: str = "assignment"
    relinquished_at: datetime | None = None

    @property
    def current(self) -> bool:
        return self.relinquished_at is None


@dataclass(frozen=True, slots=True)
class Triage:
    priority: Priority | None = None
    incident_id: str = ""
    title: str = ""
    service: str = ""
    impact: Level | None = None
    urgency: Level | None = None
    priority_reason: str = ""
    priority_by: str = ""
    team: str | None = None
    rule: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    clocks: Mapping[str, SlaClock] = field(default_factory=dict)
    on_hold: bool = False
    resolved: bool = False
    major: Major = field(default_factory=Major)
    roles: tuple[Tenure, ...] = ()
    gaps: frozenset[tuple[str, datetime]] = frozenset()

    @property
    def exists(self) -> bool:
        return self.priority is not None

    def holders(self, role: str) -> list[str]:
        return [t.person for t in self.roles if t.role == role and t.current]


_triage = copier(Triage)  # dataclasses.replace, for the fold's hot path
_sla_clock = copier(SlaClock)


def _clock(state: Triage, kind: str) -> SlaClock | None:
    return state.clocks.get(kind)


def _with_clock(state: Triage, clock: SlaClock) -> Triage:
    return _triage(state, clocks={**state.clocks, clock.kind: clock})


def _end_tenure(roles: tuple[Tenure, ...], role: str, person: str, at: datetime) -> tuple[Tenure, ...]:
    return tuple(
        replace(t, relinquished_at=at) if t.role == role and t.person == person and t.current else t
        for t in roles
    )


def evolve(state: Triage, event: Event) -> Triage:
    at = event.occurred_at
    match event:
        case PriorityAssigned():
            return _triage(
                state,
                priority=Priority(event.priority),
                incident_id=event.incident_id,
                title=event.title,
                service=event.service,
                impact=event.impact,
                urgency=event.urgency,
                priority_reason=event.reason,
                priority_by=event.by,
            )
        case PriorityChanged():
            return _triage(
                state, priority=Priority(event.priority), priority_reason=event.reason, priority_by=event.by
            )
        case IncidentRouted():
            return _triage(state, team=event.team, rule=event.rule, labels=dict(event.labels))
        case SlaTargetSet():
            current = _clock(state, event.kind)
            target = timedelta(seconds=event.target_seconds)
            if current is None:
                clock = SlaClock(
                    kind=event.kind,
                    priority=event.priority,
                    target=target,
                    calendar=event.calendar,
                    started_at=event.started_at,
                    intervals=((event.started_at, None),),
                )
            else:
                clock = _sla_clock(current, priority=event.priority, target=target, calendar=event.calendar)
            return _with_clock(state, clock)
        case SlaClockPaused():
            clocks = {k: (c.pause(at) if k in event.kinds else c) for k, c in state.clocks.items()}
            return _triage(state, clocks=clocks, on_hold=True)
        case SlaClockResumed():
            clocks = {k: (c.resume(at) if k in event.kinds else c) for k, c in state.clocks.items()}
            resolved = state.resolved and "resolution" not in event.kinds
            return _triage(state, clocks=clocks, on_hold=False, resolved=resolved)
        case SlaWarningRaised():
            if (warned := _clock(state, event.kind)) is None:
                return state
            return _with_clock(state, _sla_clock(warned, warned=True))
        case SlaBreached():
            if (breached := _clock(state, event.kind)) is None:
                return state
            return _with_clock(state, _sla_clock(breached, breached=True))
        case SlaMet() | SlaClockStopped():
            if (stopped := _clock(state, event.kind)) is None:
                return state
            state = _with_clock(state, stopped.stop(at))
            return _triage(state, resolved=True) if event.kind == "resolution" else state
        case MajorIncidentProposed():
            major = Major(
                status="proposed",
                proposed_by=event.by,
                proposed_at=at,
                reason=event.reason,
                automatic=event.automatic,
                rule=event.rule,
            )
            return _triage(state, major=major)
        case MajorIncidentAccepted():
            major = replace(
                state.major,
                status="accepted",
                decided_by=event.by,
                decided_at=at,
                business_impact=event.business_impact,
                notes=event.notes,
                required_roles=tuple(event.required_roles),
                review_required=event.review_required,
            )
            return _triage(state, major=major)
        case MajorIncidentRejected():
            major = replace(
                state.major,
                status="rejected",
                decided_by=event.by,
                decided_at=at,
                rejection_reason=event.reason,
            )
            return _triage(state, major=major)
        case PostIncidentReviewRecorded():
            major = replace(state.major, reviewed_at=at, reviewed_by=event.by, review_summary=event.summary)
            return _triage(state, major=major)
        case RoleAssigned():
            tenure = Tenure(role=event.role, person=event.person, assumed_at=at, by=event.by)
            return _triage(state, roles=(*state.roles, tenure))
        case RoleRelinquished():
            return _triage(state, roles=_end_tenure(state.roles, event.role, event.person, at))
        case HandoverCompleted():
            roles = _end_tenure(state.roles, event.role, event.from_person, at)
            tenure = Tenure(
                role=event.role, person=event.to_person, assumed_at=at, by=event.by, via="handover"
            )
            return _triage(state, roles=(*roles, tenure))
        case RoleGapDetected():
            return _triage(state, gaps=state.gaps | {(event.role, event.since)})
        case _:
            return state

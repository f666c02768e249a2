"""Triage's pure core: priority (impact x urgency, as policy data), routing, SLA clock decisions.

No I/O, no clock: time comes in as an argument. The incident's state and its fold live in
`state.py`; major incidents, roles and problems in modules of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from services.triage import major, roles
from services.triage.sla import SlaClock, point_at
from services.triage.state import Triage, evolve
from shared.errors import Conflict, NotFound
from shared.events import (
    Event,
    IncidentOpened,
    IncidentRouted,
    Level,
    PriorityAssigned,
    PriorityChanged,
    SlaBreached,
    SlaClockPaused,
    SlaClockResumed,
    SlaClockStopped,
    SlaMet,
    SlaTargetSet,
    SlaWarningRaised,
)
from shared.policy.triage import BusinessHours, Priority, TriagePolicy

__all__ = ["DEFAULT_POLICY", "Priority", "Triage", "evolve", "on_opened", "prioritise"]

DEFAULT_POLICY = TriagePolicy()
KINDS = ("response", "resolution")
_RANK = {Level.LOW: 0, Level.MEDIUM: 1, Level.HIGH: 2}


def prioritise(impact: Level, urgency: Level, policy: TriagePolicy = DEFAULT_POLICY) -> Priority:
    return policy.matrix[impact][urgency]


def derive_levels(opened: IncidentOpened, policy: TriagePolicy) -> tuple[Level, Level, str]:
    """Impact and urgency: the reporter's where given, else from the severity; the service's
    criticality raises the impact to its floor. Returns them with the reason in words."""
    derived = policy.severity[opened.severity]
    impact = opened.impact or derived.impact
    urgency = opened.urgency or derived.urgency
    said = "reporter's" if opened.impact and opened.urgency else f"severity {opened.severity.value} ->"
    reason = f"{said} impact {impact.value} x urgency {urgency.value}"
    entry = policy.services.get(opened.service)
    floor = policy.criticality_impact.get(entry.criticality) if entry is not None else None
    if entry is not None and floor is not None and _RANK[floor] > _RANK[impact]:
        impact = floor
        reason += (
            f"; service {opened.service} is {entry.criticality.value.replace('_', '-')}"
            f" -> impact {impact.value}"
        )
    return impact, urgency, reason


def on_opened(state: Triage, opened: IncidentOpened, policy: TriagePolicy = DEFAULT_POLICY) -> list[Event]:
    """Assign the first priority of a new incident, from what the reporter said or the severity."""
    if state.priority is not None:
        return []
    impact, urgency, reason = derive_levels(opened, policy)
    return [
        PriorityAssigned(
            incident_id=opened.incident_id,
            priority=prioritise(impact, urgency, policy).value,
            impact=impact,
            urgency=urgency,
            reason=reason,
            by="triage",
            title=opened.title,
            service=opened.service,
            occurred_at=opened.occurred_at,
        )
    ]


def route(
    service: str, labels: Mapping[str, str], priority: Priority | None, policy: TriagePolicy
) -> tuple[str, str, str]:
    """(team, rule, reason): the first matching routing rule, else the service's owner, else the
    default team."""
    for rule in policy.routing:
        if rule.services and service not in rule.services:
            continue
        if any(labels.get(k) != v for k, v in rule.labels.items()):
            continue
        if rule.priorities and priority not in rule.priorities:
            continue
        conditions = [f"service {service}"] if rule.services else []
        conditions += [f"{k}={v}" for k, v in rule.labels.items()]
        conditions += [f"priority {priority}"] if rule.priorities else []
        why = " and ".join(conditions) or "matches everything"
        return rule.team, rule.name, f"rule {rule.name!r}: {why}"
    entry = policy.services.get(service)
    if entry is not None:
        return entry.team, "service-owner", f"team {entry.team} owns service {service}"
    return policy.default_team, "default", f"service {service} is not in the catalogue"


def _routed(state: Triage, labels: Mapping[str, str], now: datetime, policy: TriagePolicy) -> list[Event]:
    team, rule, reason = route(state.service, labels, state.priority, policy)
    if team == state.team:
        return []
    return [
        IncidentRouted(
            incident_id=state.incident_id,
            team=team,
            rule=rule,
            reason=reason,
            labels=dict(labels),
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def _targets(state: Triage, now: datetime, policy: TriagePolicy) -> list[Event]:
    """(Re)target every clock that is not stopped to the state's priority."""
    assert state.priority is not None
    target = policy.sla[state.priority]
    calendar = policy.hours_for(state.service, state.priority)
    out: list[Event] = []
    for kind in KINDS:
        current = state.clocks.get(kind)
        if current is not None and current.stopped_at is not None:
            continue
        amount: timedelta = getattr(target, kind)
        started = current.started_at if current is not None else now
        intervals = current.intervals if current is not None else ((started, None),)
        clock = SlaClock(kind, state.priority.value, amount, calendar, started, intervals)
        out.append(
            SlaTargetSet(
                incident_id=state.incident_id,
                kind=kind,
                priority=state.priority.value,
                target_seconds=amount.total_seconds(),
                calendar=calendar,
                started_at=started,
                due_at=point_at(clock, 1.0, _hours(policy, calendar)),
                title=state.title,
                service=state.service,
                occurred_at=now,
            )
        )
    return out


def _apply(state: Triage, events: list[Event]) -> Triage:
    for event in events:
        state = evolve(state, event)
    return state


def open_incident(state: Triage, opened: IncidentOpened, policy: TriagePolicy) -> list[Event]:
    """Everything triage decides when an incident opens: priority, team, SLA clocks, and a
    major-incident proposal when the policy says so."""
    return opening(state, opened, policy)[0]


def opening(state: Triage, opened: IncidentOpened, policy: TriagePolicy) -> tuple[list[Event], Triage]:
    """`open_incident`'s events with the state after them: the decision folds them anyway, and
    the shell needs the result (paging, storm proposals) without folding them again."""
    events = on_opened(state, opened, policy)
    if not events:
        return [], state
    state = _apply(state, events)
    labels = dict(opened.labels)
    more = _routed(state, labels, opened.occurred_at, policy) + _targets(state, opened.occurred_at, policy)
    state = _apply(state, more)
    proposal = major.auto_propose(state, opened.occurred_at, policy)
    return [*events, *more, *proposal], _apply(state, proposal)


def on_labels(state: Triage, labels: Mapping[str, str], now: datetime, policy: TriagePolicy) -> list[Event]:
    """An alert brought labels: route again when they send the incident to another team."""
    if not state.exists or not labels:
        return []
    return _routed(state, {**state.labels, **labels}, now, policy)


def change_priority(
    state: Triage, priority: Priority, *, reason: str, by: str, now: datetime, policy: TriagePolicy
) -> list[Event]:
    """An override: the new priority, its SLA targets, routing and major-incident rules follow."""
    must_exist(state)
    if priority == state.priority:
        raise Conflict(f"incident {state.incident_id} is already {priority.value}")
    events: list[Event] = [
        PriorityChanged(
            incident_id=state.incident_id,
            priority=priority.value,
            previous=state.priority.value if state.priority else None,
            reason=reason,
            by=by,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]
    state = _apply(state, events)
    more = _routed(state, state.labels, now, policy) + _targets(state, now, policy)
    state = _apply(state, more)
    return events + more + major.auto_propose(state, now, policy)


def must_exist(state: Triage) -> None:
    if not state.exists:
        raise NotFound("no such incident in triage (yet)")


# --- SLA clocks ---------------------------------------------------------------------------------


def _hours(policy: TriagePolicy, calendar: str | None) -> BusinessHours | None:
    return policy.calendars.get(calendar) if calendar is not None else None


def stop_clocks(
    state: Triage, kinds: tuple[str, ...], *, by: str, now: datetime, policy: TriagePolicy
) -> list[Event]:
    """Acknowledged (response), resolved or closed (both): met, or stopped after a breach."""
    out: list[Event] = []
    for kind in kinds:
        clock = state.clocks.get(kind)
        if clock is None or clock.stopped_at is not None:
            continue
        due = point_at(clock, 1.0, _hours(policy, clock.calendar))
        common = {
            "incident_id": state.incident_id,
            "kind": kind,
            "priority": clock.priority,
            "title": state.title,
            "service": state.service,
            "occurred_at": now,
        }
        if not clock.breached and due is not None and due <= now:
            out.append(SlaBreached(due_at=due, **common))  # the timer had not got there yet
            out.append(SlaClockStopped(due_at=due, by=by, **common))
        elif clock.breached:
            out.append(SlaClockStopped(due_at=due, by=by, **common))
        else:
            out.append(SlaMet(due_at=due, by=by, **common))
    return out


def pause_clocks(state: Triage, *, by: str, reason: str, now: datetime) -> list[Event]:
    kinds = [k for k in KINDS if (c := state.clocks.get(k)) is not None and c.running]
    if not kinds:
        return []
    return [
        SlaClockPaused(
            incident_id=state.incident_id,
            kinds=kinds,
            reason=reason,
            by=by,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def resume_clocks(
    state: Triage,
    *,
    by: str,
    reason: str,
    now: datetime,
    kinds: tuple[str, ...] = KINDS,
    reopen: bool = False,
) -> list[Event]:
    """Resume paused clocks (or, on reopen, the stopped resolution clock)."""
    resumable = [
        k
        for k in kinds
        if (c := state.clocks.get(k)) is not None and (c.paused or (reopen and c.stopped_at is not None))
    ]
    if not resumable:
        return []
    return [
        SlaClockResumed(
            incident_id=state.incident_id,
            kinds=resumable,
            reason=reason,
            by=by,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def sla_due(state: Triage, now: datetime, policy: TriagePolicy) -> list[Event]:
    """The warnings and breaches that are due at `now` and not yet recorded: each once per clock."""
    out: list[Event] = []
    for kind in KINDS:
        clock = state.clocks.get(kind)
        if clock is None or clock.stopped_at is not None or clock.breached:
            continue
        hours = _hours(policy, clock.calendar)
        due = point_at(clock, 1.0, hours)
        if due is None:
            continue
        common = {
            "incident_id": state.incident_id,
            "kind": kind,
            "due_at": due,
            "priority": clock.priority,
            "title": state.title,
            "service": state.service,
        }
        warn_at = point_at(clock, policy.sla_warning_fraction, hours)
        if not clock.warned and warn_at is not None and warn_at <= now:
            out.append(SlaWarningRaised(occurred_at=warn_at, **common))
        if due <= now:
            out.append(SlaBreached(occurred_at=due, **common))
    return out


def next_sla_due(state: Triage, policy: TriagePolicy) -> datetime | None:
    """The earliest instant at which `sla_due` will have something to say (None: nothing pending)."""
    times: list[datetime] = []
    for clock in state.clocks.values():
        if clock.stopped_at is not None or clock.breached:
            continue
        hours = _hours(policy, clock.calendar)
        point = point_at(clock, 1.0 if clock.warned else policy.sla_warning_fraction, hours)
        if point is not None:
            times.append(point)
    return min(times, default=None)


def timers_due(state: Triage, now: datetime, policy: TriagePolicy) -> list[Event]:
    """Every timer event due at `now`: SLA warnings and breaches, role gaps."""
    return sla_due(state, now, policy) + roles.gaps_due(state, now, policy)


def next_timer(state: Triage, policy: TriagePolicy) -> datetime | None:
    """When `timers_due` will next have something to say; None: nothing pending."""
    times = [t for t in (next_sla_due(state, policy), roles.next_gap_due(state, policy)) if t is not None]
    return min(times, default=None)

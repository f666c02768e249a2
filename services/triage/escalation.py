"""Escalation policies, pure: which step is next, when it is due, whom it pages and how.

An escalation is folded from its `escalation-<incident id>` stream. It starts when the incident
is routed to a team that has a policy; each step is reached once (the worker appends it at the
stream's expected version), waits run from when the step was reached, and the chain stops when
the incident is acknowledged, resolved, closed or routed elsewhere, or after the last round.
No I/O, no clock: time comes in as an argument, and the acknowledge link as a function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.triage import oncall
from services.triage.sla import add_business_time
from shared.events import (
    EscalationStarted,
    EscalationStepReached,
    EscalationStopped,
    Event,
    PageContact,
    PageRequested,
)
from shared.policy.oncall import EscalationPolicy, OnCallPolicy, Step, Urgency
from shared.policy.triage import BusinessHours, Priority

Link = Callable[[str], tuple[str, datetime]]
"""person -> (acknowledge URL, when it expires)."""

ZERO = timedelta(0)


@dataclass(frozen=True, slots=True)
class Escalation:
    incident_id: str = ""
    policy_id: str = ""
    team: str = ""
    priority: str = ""
    urgency: str = Urgency.HIGH.value
    title: str = ""
    service: str = ""
    started_at: datetime | None = None
    running: bool = False
    step: int = 0
    round: int = 0
    next_due_at: datetime | None = None
    stop_reason: str = ""
    stopped_at: datetime | None = None
    stopped_by: str = ""


def evolve(state: Escalation, event: Event) -> Escalation:
    match event:
        case EscalationStarted():
            return Escalation(
                incident_id=event.incident_id,
                policy_id=event.policy_id,
                team=event.team,
                priority=event.priority,
                urgency=event.urgency,
                title=event.title,
                service=event.service,
                started_at=event.occurred_at,
                running=True,
                round=1,
                next_due_at=event.first_due_at,
            )
        case EscalationStepReached():
            return replace(state, step=event.step, round=event.round, next_due_at=event.next_due_at)
        case EscalationStopped():
            return replace(
                state,
                running=False,
                next_due_at=None,
                stop_reason=event.reason,
                stopped_at=event.occurred_at,
                stopped_by=event.by,
            )
        case _:
            return state


def urgency_of(policy: EscalationPolicy, priority: str) -> Urgency:
    try:
        return policy.urgency.get(Priority(priority), Urgency.HIGH)
    except ValueError:
        return Urgency.HIGH


def in_hours(hours: BusinessHours, at: datetime) -> bool:
    return add_business_time(at, ZERO, hours) == at


def wait_until(policy: EscalationPolicy, urgency: str, at: datetime, wait: timedelta) -> datetime:
    """When a wait that starts at `at` ends: wall time for high urgency, business time for low."""
    if urgency == Urgency.HIGH:
        return at + wait
    return add_business_time(at, wait, policy.business_hours)


def start(
    policy: EscalationPolicy,
    *,
    incident_id: str,
    team: str,
    priority: str,
    title: str,
    service: str,
    now: datetime,
) -> EscalationStarted:
    return EscalationStarted(
        incident_id=incident_id,
        policy_id=policy.id,
        team=team,
        priority=priority,
        urgency=urgency_of(policy, priority).value,
        steps=len(policy.steps),
        repeat=policy.repeat,
        first_due_at=now,
        title=title,
        service=service,
        occurred_at=now,
    )


def on_routed(
    state: Escalation,
    policies: OnCallPolicy,
    *,
    incident_id: str,
    team: str,
    service: str,
    priority: str,
    title: str,
    settled: bool,
    now: datetime,
) -> list[Event]:
    """An incident was routed to `team`: start its policy (stopping one that ran for another
    team). `settled`: already acknowledged or resolved, so nobody is paged."""
    if state.running and state.team == team:
        return []
    events: list[Event] = []
    if state.running:
        events += stop(state, "rerouted", by=f"routed to {team}", now=now)
    if settled:
        return events
    policy = policies.escalation_for(team, service)
    if policy is None:
        return events
    events.append(
        start(
            policy,
            incident_id=incident_id,
            team=team,
            priority=priority,
            title=title,
            service=service,
            now=now,
        )
    )
    return events


def on_reopened(state: Escalation, policies: OnCallPolicy, *, now: datetime) -> list[Event]:
    """A resolved incident came back: its team's policy pages again from the first step (nobody
    has acknowledged the new trouble). Nothing when it never escalated or still escalates."""
    if state.running or not state.team:
        return []
    policy = policies.escalation_for(state.team, state.service)
    if policy is None:
        return []
    return [
        start(
            policy,
            incident_id=state.incident_id,
            team=state.team,
            priority=state.priority,
            title=state.title,
            service=state.service,
            now=now,
        )
    ]


def stop(state: Escalation, reason: str, *, by: str, now: datetime) -> list[Event]:
    if not state.running:
        return []
    return [
        EscalationStopped(
            incident_id=state.incident_id,
            policy_id=state.policy_id,
            reason=reason,
            by=by,
            step=state.step,
            round=state.round,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def next_position(state: Escalation, policy: EscalationPolicy) -> tuple[int, int] | None:
    """(step, round) of the next step, both from 1; None after the last step of the last round."""
    if state.step < len(policy.steps):
        return state.step + 1, max(state.round, 1)
    if state.round < 1 + policy.repeat:
        return 1, state.round + 1
    return None


@dataclass(frozen=True, slots=True)
class Reached:
    """Whom a step reaches at an instant: people in order, and targets with nobody."""

    people: list[str]
    targets: list[str]
    unreached: list[str]


def resolve(step: Step, policies: OnCallPolicy, at: datetime) -> Reached:
    people: list[str] = []
    labels: list[str] = []
    unreached: list[str] = []
    for target in step.targets:
        label = f"{target.kind} {target.id}"
        labels.append(label)
        found: list[str] = []
        if target.kind == "person":
            found = [target.id]
        elif target.kind == "team":
            team = policies.team(target.id)
            found = list(team.members) if team is not None else []
        else:
            schedule = policies.schedule(target.id)
            person = oncall.who(schedule, at).person if schedule is not None else None
            found = [person] if person is not None else []
        if not found:
            unreached.append(f"{label}: nobody on call" if target.kind == "schedule" else f"{label}: nobody")
        people += [p for p in found if p not in people]
    return Reached(people, labels, unreached)


def due(state: Escalation) -> datetime | None:
    return state.next_due_at if state.running else None


def reach_step(state: Escalation, policies: OnCallPolicy, *, now: datetime, link: Link) -> list[Event]:
    """The step due now, with a page per person it reaches; the chain's end once every step of
    every round was tried; nothing when nothing is due (or it was already reached)."""
    when = due(state)
    if when is None or now < when:
        return []
    policy = policies.escalation_policy(state.policy_id)
    position = next_position(state, policy) if policy is not None else None
    if policy is None or position is None:
        by = "" if policy is not None else f"escalation policy {state.policy_id} no longer exists"
        return stop(state, "exhausted", by=by, now=now)
    number, round_ = position
    step = policy.steps[number - 1]
    at = max(when, now)
    mode = "page" if state.urgency == Urgency.HIGH or in_hours(policy.business_hours, at) else "notify"
    reached = resolve(step, policies, at)
    pages: list[Event] = []
    paged: list[str] = []
    unreached = list(reached.unreached)
    for person_id in reached.people:
        person = policies.person(person_id)
        contacts = (
            [] if person is None else [c for c in person.contacts if mode == "page" or not c.urgent_only]
        )
        if person is None or not contacts:
            unreached.append(f"person {person_id}: no contact method for a {mode}")
            continue
        url, expires = link(person_id)
        paged.append(person_id)
        pages.append(
            PageRequested(
                incident_id=state.incident_id,
                person=person_id,
                name=person.name or person_id,
                policy_id=policy.id,
                step=number,
                round=round_,
                urgency=state.urgency,
                mode=mode,
                contacts=[PageContact(kind=c.kind.value, address=c.address) for c in contacts],
                ack_url=url,
                ack_expires_at=expires,
                team=state.team,
                priority=state.priority,
                title=state.title,
                service=state.service,
                occurred_at=at,
            )
        )
    reached_event = EscalationStepReached(
        incident_id=state.incident_id,
        policy_id=policy.id,
        step=number,
        round=round_,
        due_at=when,
        mode=mode,
        targets=reached.targets,
        paged=paged,
        unreached=unreached,
        next_due_at=wait_until(policy, state.urgency, at, step.wait),
        title=state.title,
        service=state.service,
        occurred_at=at,
    )
    return [reached_event, *pages]

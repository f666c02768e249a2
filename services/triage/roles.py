"""Incident roles, pure: assign, relinquish, hand over (one event moves the role), and the gap
rule (an accepted major incident with nobody in a required role for too long)."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.triage.state import Triage
from shared.errors import Conflict, DomainError, NotFound
from shared.events import Briefing, Event, HandoverCompleted, RoleAssigned, RoleGapDetected, RoleRelinquished
from shared.policy.triage import IncidentRole, TriagePolicy


def _must_exist(state: Triage) -> None:
    if not state.exists:
        raise NotFound("no such incident in triage (yet)")


def assign(
    state: Triage, role: IncidentRole, person: str, *, by: str, now: datetime, policy: TriagePolicy
) -> list[Event]:
    _must_exist(state)
    holders = state.holders(role.value)
    if person in holders:
        raise Conflict(f"{person} already holds {role.value}")
    if holders and role not in policy.roles.shared:
        raise Conflict(f"{role.value} is held by {holders[0]}: hand it over instead (POST .../handovers)")
    return [
        RoleAssigned(
            incident_id=state.incident_id,
            role=role.value,
            person=person,
            by=by,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def relinquish(state: Triage, role: IncidentRole, person: str, *, by: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if person not in state.holders(role.value):
        raise Conflict(f"{person} does not hold {role.value}")
    return [
        RoleRelinquished(
            incident_id=state.incident_id,
            role=role.value,
            person=person,
            by=by,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def handover(
    state: Triage,
    role: IncidentRole,
    from_person: str,
    to_person: str,
    briefing: Briefing,
    *,
    by: str,
    now: datetime,
) -> list[Event]:
    _must_exist(state)
    if from_person == to_person:
        raise DomainError("a handover needs two different people")
    holders = state.holders(role.value)
    if from_person not in holders:
        raise Conflict(f"{from_person} does not hold {role.value}")
    if to_person in holders:
        raise Conflict(f"{to_person} already holds {role.value}")
    return [
        HandoverCompleted(
            incident_id=state.incident_id,
            role=role.value,
            from_person=from_person,
            to_person=to_person,
            briefing=briefing,
            by=by,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def vacancies(state: Triage) -> dict[str, datetime]:
    """Required roles of an accepted, unresolved major incident that nobody holds, and since when."""
    major = state.major
    if major.status != "accepted" or major.decided_at is None or state.resolved:
        return {}
    out: dict[str, datetime] = {}
    for role in major.required_roles:
        if state.holders(role):
            continue
        ended = [t.relinquished_at for t in state.roles if t.role == role and t.relinquished_at is not None]
        out[role] = max([major.decided_at, *ended])
    return out


def gaps_due(state: Triage, now: datetime, policy: TriagePolicy) -> list[Event]:
    """A RoleGapDetected for each vacancy older than the policy's minutes, once per vacancy."""
    limit = timedelta(minutes=policy.roles.gap_minutes)
    return [
        RoleGapDetected(
            incident_id=state.incident_id,
            role=role,
            since=since,
            minutes=policy.roles.gap_minutes,
            title=state.title,
            service=state.service,
            occurred_at=since + limit,
        )
        for role, since in sorted(vacancies(state).items())
        if now - since >= limit and (role, since) not in state.gaps
    ]


def next_gap_due(state: Triage, policy: TriagePolicy) -> datetime | None:
    limit = timedelta(minutes=policy.roles.gap_minutes)
    return min(
        (since + limit for role, since in vacancies(state).items() if (role, since) not in state.gaps),
        default=None,
    )


def tenure(state: Triage) -> list[dict[str, object]]:
    return [
        {
            "role": t.role,
            "person": t.person,
            "assumed_at": t.assumed_at,
            "relinquished_at": t.relinquished_at,
            "by": t.by,
            "via": t.via,
        }
        for t in state.roles
    ]

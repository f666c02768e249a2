"""The incident lifecycle people and other systems drive: pure decisions over `domain.Incident`.

open -> acknowledged -> resolved -> closed; resolved -> reopened (open); on hold and resumed while
open. Each function returns the events to append or raises a `DomainError` naming the reason.
"""

from __future__ import annotations

from datetime import datetime

from services.intake.domain import Incident, Status
from shared.errors import Conflict, NotFound
from shared.events import (
    Event,
    IncidentAcknowledged,
    IncidentAssigned,
    IncidentClosed,
    IncidentOpened,
    IncidentPutOnHold,
    IncidentReopened,
    IncidentResolved,
    IncidentResumed,
    Level,
    NoteAdded,
    Severity,
)


class IncidentNotOpen(Conflict):
    title = "Incident not open"


class WrongState(Conflict):
    title = "Incident in the wrong state"


def open_manually(
    *,
    incident_id: str,
    title: str,
    description: str,
    service: str,
    severity: Severity,
    impact: Level | None,
    urgency: Level | None,
    reporter: str,
    now: datetime,
) -> list[Event]:
    return [
        IncidentOpened(
            incident_id=incident_id,
            title=title,
            description=description,
            service=service,
            severity=severity,
            source="api",
            reporter=reporter,
            impact=impact,
            urgency=urgency,
            resolve_rule="never",
            occurred_at=now,
        )
    ]


def _must_exist(state: Incident) -> None:
    if not state.exists:
        raise NotFound("no such incident")


def acknowledge(state: Incident, *, by: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if state.status is not Status.OPEN:
        raise IncidentNotOpen(
            f"incident {state.id} is {state.status}; only an open incident can be acknowledged"
        )
    return [IncidentAcknowledged(incident_id=state.id, by=by, occurred_at=now)]


def resolve(state: Incident, *, by: str, reason: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if not state.open:
        raise IncidentNotOpen(f"incident {state.id} is {state.status}; it is not open")
    return [IncidentResolved(incident_id=state.id, by=by, reason=reason, occurred_at=now)]


def assign(state: Incident, *, assignee: str, by: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if state.status is Status.CLOSED:
        raise WrongState(f"incident {state.id} is closed; reopening is not possible, open a new one")
    if state.assignee == assignee:
        return []
    return [IncidentAssigned(incident_id=state.id, assignee=assignee, by=by, occurred_at=now)]


def add_note(state: Incident, *, text: str, by: str, note_id: str, now: datetime) -> list[Event]:
    """A note on any incident, closed ones included (post-incident findings). Same note id: no-op."""
    _must_exist(state)
    if note_id in state.notes:
        return []
    return [NoteAdded(incident_id=state.id, text=text, by=by, note_id=note_id, occurred_at=now)]


def close(state: Incident, *, by: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if state.status is not Status.RESOLVED:
        raise WrongState(f"incident {state.id} is {state.status}; only a resolved incident can be closed")
    return [IncidentClosed(incident_id=state.id, by=by, occurred_at=now)]


def reopen(state: Incident, *, by: str, reason: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if state.status is not Status.RESOLVED:
        raise WrongState(
            f"incident {state.id} is {state.status}; only a resolved (not closed) one can be reopened"
        )
    return [IncidentReopened(incident_id=state.id, by=by, reason=reason, occurred_at=now)]


def hold(state: Incident, *, by: str, reason: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if not state.open:
        raise IncidentNotOpen(
            f"incident {state.id} is {state.status}; only an open incident can be put on hold"
        )
    if state.on_hold:
        raise WrongState(f"incident {state.id} is already on hold")
    return [IncidentPutOnHold(incident_id=state.id, by=by, reason=reason, occurred_at=now)]


def resume(state: Incident, *, by: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if not state.on_hold:
        raise WrongState(f"incident {state.id} is not on hold")
    return [IncidentResumed(incident_id=state.id, by=by, occurred_at=now)]

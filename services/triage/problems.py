"""Problem records, pure: the underlying cause of one or more incidents, its root cause, known
error and workaround; and the rule that suggests one when a service or an alert recurs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from services.triage.activity import ServiceActivity, Signal, in_window, suggestion_key
from shared.errors import Conflict, NotFound
from shared.events import (
    Event,
    IncidentLinkedToProblem,
    ProblemRecorded,
    ProblemSuggested,
    ProblemUpdated,
    ServiceActivityRecorded,
)
from shared.policy.triage import TriagePolicy


@dataclass(frozen=True, slots=True)
class Problem:
    id: str = ""
    title: str = ""
    description: str = ""
    service: str = ""
    root_cause: str = ""
    workaround: str = ""
    known_error: bool = False
    status: str = "open"
    incident_ids: tuple[str, ...] = ()
    suggestion_id: str | None = None
    recorded_by: str = ""
    recorded_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def exists(self) -> bool:
        return bool(self.id)


def evolve_problem(state: Problem, event: Event) -> Problem:
    match event:
        case ProblemRecorded():
            return Problem(
                id=event.problem_id,
                title=event.title,
                description=event.description,
                service=event.service,
                root_cause=event.root_cause,
                workaround=event.workaround,
                suggestion_id=event.suggestion_id,
                recorded_by=event.by,
                recorded_at=event.occurred_at,
                updated_at=event.occurred_at,
            )
        case ProblemUpdated():
            known = event.known_error if event.known_error is not None else state.known_error
            status = event.status or ("known_error" if event.known_error and state.status == "open" else None)
            return replace(
                state,
                root_cause=event.root_cause if event.root_cause is not None else state.root_cause,
                workaround=event.workaround if event.workaround is not None else state.workaround,
                known_error=known,
                status=status or state.status,
                updated_at=event.occurred_at,
            )
        case IncidentLinkedToProblem():
            return replace(
                state, incident_ids=(*state.incident_ids, event.incident_id), updated_at=event.occurred_at
            )
        case _:
            return state


def record(
    state: Problem,
    problem_id: str,
    *,
    title: str,
    description: str,
    service: str,
    root_cause: str,
    workaround: str,
    suggestion_id: str | None,
    incident_ids: list[str],
    by: str,
    now: datetime,
) -> list[Event]:
    if state.exists:
        raise Conflict(f"problem {problem_id} exists")
    events: list[Event] = [
        ProblemRecorded(
            problem_id=problem_id,
            title=title,
            description=description,
            service=service,
            root_cause=root_cause,
            workaround=workaround,
            suggestion_id=suggestion_id,
            by=by,
            occurred_at=now,
        )
    ]
    for incident_id in dict.fromkeys(incident_ids):
        events.append(
            IncidentLinkedToProblem(problem_id=problem_id, incident_id=incident_id, by=by, occurred_at=now)
        )
    return events


def update(
    state: Problem,
    *,
    by: str,
    root_cause: str | None,
    workaround: str | None,
    known_error: bool | None,
    status: Literal["open", "known_error", "resolved", "closed"] | None,
    now: datetime,
) -> list[Event]:
    _must_exist(state)
    if root_cause is None and workaround is None and known_error is None and status is None:
        return []
    return [
        ProblemUpdated(
            problem_id=state.id,
            by=by,
            root_cause=root_cause,
            workaround=workaround,
            known_error=known_error,
            status=status,
            occurred_at=now,
        )
    ]


def link(state: Problem, incident_id: str, *, by: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if incident_id in state.incident_ids:
        raise Conflict(f"incident {incident_id} is already linked to problem {state.id}")
    return [IncidentLinkedToProblem(problem_id=state.id, incident_id=incident_id, by=by, occurred_at=now)]


def _must_exist(state: Problem) -> None:
    if not state.exists:
        raise NotFound("no such problem")


# --- the recurrence rule ------------------------------------------------------------------------


def _suggested_lately(activity: ServiceActivity, key: str, now: datetime, window: timedelta) -> bool:
    last = activity.suggested.get(key)
    return last is not None and now - last < window


def _suggestion(
    service: str, fingerprint: str, signals: list[Signal], now: datetime, policy: TriagePolicy
) -> ProblemSuggested:
    rule = policy.problems
    ids = list(dict.fromkeys(s.incident_id for s in signals))
    key = suggestion_key(service, fingerprint)
    suggestion_id = hashlib.sha256(f"{key}|{now.isoformat()}".encode()).hexdigest()[:16]
    what = f"alert {fingerprint!r}" if fingerprint else f"service {service}"
    return ProblemSuggested(
        suggestion_id=suggestion_id,
        service=service,
        fingerprint=fingerprint,
        incident_ids=ids,
        count=len(ids),
        days=rule.days,
        reason=f"{what} recurred in {len(ids)} incidents within {rule.days:g} days",
        occurred_at=now,
    )


def suggestions(
    activity: ServiceActivity, service: str, fingerprint: str, now: datetime, policy: TriagePolicy
) -> list[Event]:
    """Suggest a problem when the service (or, given a fingerprint, that alert) has recurred in
    `recurrences` incidents within `days`, unless one was suggested for it within those days.
    `activity` includes the newest signal."""
    return _recurred(activity, service, fingerprint, now, policy, None)


def suggest(activity: ServiceActivity, seen: ServiceActivityRecorded, policy: TriagePolicy) -> list[Event]:
    """`suggestions` as `seen` is recorded, from the activity before it (what folding `seen` would
    add is counted without making the activity after it)."""
    fingerprint = seen.fingerprint
    signal = Signal(seen.occurred_at, seen.incident_id, fingerprint)
    if fingerprint:
        counted = seen.activity == "alert" and not activity.attached(fingerprint, seen.incident_id)
    else:
        counted = seen.activity == "incident"
    return _recurred(
        activity, seen.service, fingerprint, seen.occurred_at, policy, signal if counted else None
    )


def _recurred(
    activity: ServiceActivity,
    service: str,
    fingerprint: str,
    now: datetime,
    policy: TriagePolicy,
    newest: Signal | None,
) -> list[Event]:
    rule = policy.problems
    window = timedelta(days=rule.days)
    key = suggestion_key(service, fingerprint)
    if _suggested_lately(activity, key, now, window):
        return []
    extra = newest is not None
    if fingerprint:
        kept = activity.attachments.get(fingerprint, ())
        if len(kept) + extra < rule.recurrences:  # a bound: fewer in the window, fewer incidents
            return []
        signals = in_window(kept, now, window)
    else:
        if activity.incidents.count(now, window) + extra < rule.recurrences:
            return []
        signals = activity.incidents.window(now, window)
    if newest is not None:
        signals.append(newest)  # at `now`: the last in the window
    if len({s.incident_id for s in signals}) < rule.recurrences:
        return []
    return [_suggestion(service, fingerprint, signals, now, policy)]

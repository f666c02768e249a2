"""Status-update cadence, pure: when the next update is due, and what is overdue at a given time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal, Protocol

from shared.events import UpdateCadenceStarted, UpdateCadenceStopped
from shared.policy.comms import CadencePolicy

Level = Literal["reminder", "escalation"]


class CadenceState(Protocol):
    @property
    def priority(self) -> str | None: ...
    @property
    def major(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def cadence_every(self) -> float | None: ...
    @property
    def next_due_at(self) -> datetime | None: ...
    @property
    def overdue_fired(self) -> frozenset[tuple[str, datetime]]: ...


def interval(policy: CadencePolicy, *, priority: str | None, major: str | None) -> timedelta | None:
    """An accepted major incident runs on the major-incident cadence; otherwise the priority's, if any."""
    if major == "accepted":
        by_priority = policy.by_priority.get(priority or "")
        return min(policy.major_incident, by_priority) if by_priority else policy.major_incident
    return policy.by_priority.get(priority or "")


def change(
    state: CadenceState, policy: CadencePolicy, *, incident_id: str, now: datetime
) -> UpdateCadenceStarted | UpdateCadenceStopped | None:
    """Start, retune or stop the cadence after the incident's context changed."""
    running = state.cadence_every is not None
    if state.status in ("resolved", "closed"):
        if running:
            return UpdateCadenceStopped(incident_id=incident_id, reason=state.status, occurred_at=now)
        return None
    every = interval(policy, priority=state.priority, major=state.major)
    if every is None:
        if running:
            return UpdateCadenceStopped(incident_id=incident_id, reason="no cadence applies", occurred_at=now)
        return None
    seconds = every.total_seconds()
    if running and state.cadence_every == seconds:
        return None
    due = now + every
    if running and state.next_due_at is not None:
        due = min(due, state.next_due_at)
    reason = "major incident accepted" if state.major == "accepted" else f"priority {state.priority}"
    return UpdateCadenceStarted(
        incident_id=incident_id, every_seconds=seconds, next_due_at=due, reason=reason, occurred_at=now
    )


def next_due(state: CadenceState, *, published_at: datetime) -> datetime | None:
    if state.cadence_every is None:
        return None
    return published_at + timedelta(seconds=state.cadence_every)


def overdue(state: CadenceState, policy: CadencePolicy, *, now: datetime) -> list[tuple[Level, datetime]]:
    """Reminders and escalations due now and not yet raised, each once per due time."""
    due = state.next_due_at
    if state.cadence_every is None or due is None or state.status in ("resolved", "closed"):
        return []
    out: list[tuple[Level, datetime]] = []
    steps: tuple[tuple[Level, timedelta], ...] = (
        ("reminder", policy.reminder_after),
        ("escalation", policy.escalate_after),
    )
    for level, after in steps:
        if now >= due + after and (level, due) not in state.overdue_fired:
            out.append((level, due))
    return out


def wake_at(state: CadenceState, policy: CadencePolicy) -> datetime | None:
    """When this incident next needs the timer (None: never, as things stand)."""
    due = state.next_due_at
    if state.cadence_every is None or due is None or state.status in ("resolved", "closed"):
        return None
    pending = [
        due + after
        for level, after in (("reminder", policy.reminder_after), ("escalation", policy.escalate_after))
        if (level, due) not in state.overdue_fired
    ]
    return min(pending) if pending else None

"""Triage's pure core: impact x urgency -> priority, as data. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from shared.events import Event, IncidentOpened, Level, PriorityAssigned, Severity


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"


H, M, L = Level.HIGH, Level.MEDIUM, Level.LOW

# The ITIL 3x3 matrix (ServiceNow's default).
PRIORITY: Final[Mapping[tuple[Level, Level], Priority]] = {
    (H, H): Priority.P1,
    (H, M): Priority.P2,
    (M, H): Priority.P2,
    (H, L): Priority.P3,
    (M, M): Priority.P3,
    (L, H): Priority.P3,
    (M, L): Priority.P4,
    (L, M): Priority.P4,
    (L, L): Priority.P5,
}

# What an alert's severity says about its impact and urgency when the reporter gave neither.
SEVERITY_LEVELS: Final[Mapping[Severity, tuple[Level, Level]]] = {
    Severity.CRITICAL: (H, H),
    Severity.HIGH: (H, M),
    Severity.WARNING: (M, M),
    Severity.INFO: (L, M),
    Severity.LOW: (L, L),
}


def prioritise(impact: Level, urgency: Level) -> Priority:
    return PRIORITY[impact, urgency]


@dataclass(frozen=True, slots=True)
class Triage:
    priority: Priority | None = None


def evolve(state: Triage, event: Event) -> Triage:
    match event:
        case PriorityAssigned(priority=priority):
            return Triage(priority=Priority(priority))
        case _:
            return state


def on_opened(state: Triage, opened: IncidentOpened) -> list[Event]:
    """Assign the first priority of a new incident, from what the reporter said or the severity."""
    if state.priority is not None:
        return []
    derived_impact, derived_urgency = SEVERITY_LEVELS[opened.severity]
    impact = opened.impact or derived_impact
    urgency = opened.urgency or derived_urgency
    given = "reporter's" if opened.impact and opened.urgency else f"severity {opened.severity.value} ->"
    return [
        PriorityAssigned(
            incident_id=opened.incident_id,
            priority=prioritise(impact, urgency).value,
            impact=impact,
            urgency=urgency,
            reason=f"{given} impact {impact.value} x urgency {urgency.value}",
            by="triage",
            title=opened.title,
            service=opened.service,
            occurred_at=opened.occurred_at,
        )
    ]

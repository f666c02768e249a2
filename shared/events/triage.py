"""Events triage records: priority, routing, SLA, major incidents, roles, problems."""

from __future__ import annotations

from typing import Literal

from shared.events.base import Event, IncidentEvent, Level


class PriorityAssigned(IncidentEvent):
    type: Literal["PriorityAssigned"] = "PriorityAssigned"
    priority: str
    impact: Level
    urgency: Level
    reason: str
    by: str
    title: str
    service: str


EVENTS: tuple[type[Event], ...] = (PriorityAssigned,)

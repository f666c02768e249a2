"""Events intake records: alerts, dedup, the incident lifecycle."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shared.events.base import AlertStatus, Event, IncidentEvent, Level, Severity


class IntegrationCreated(Event):
    type: Literal["IntegrationCreated"] = "IntegrationCreated"
    integration_id: str
    name: str
    source_type: str
    default_service: str
    key_hash: str
    by: str


class AlertObserved(IncidentEvent):
    """The dedup layer's record, on the alert-key stream: this key now belongs to this incident
    (empty when a resolve arrived for a key with no open incident)."""

    type: Literal["AlertObserved"] = "AlertObserved"
    alert_key: str
    status: AlertStatus


class IncidentOpened(IncidentEvent):
    type: Literal["IncidentOpened"] = "IncidentOpened"
    title: str
    description: str = ""
    service: str
    severity: Severity
    source: str
    reporter: str
    impact: Level | None = None
    urgency: Level | None = None
    detected_at: datetime | None = None


class AlertAttached(IncidentEvent):
    """An alert joined an incident; `reason` says why (the grouping decision)."""

    type: Literal["AlertAttached"] = "AlertAttached"
    alert_key: str
    dedup_key: str
    title: str
    severity: Severity
    source: str
    reason: str
    labels: dict[str, str] = Field(default_factory=dict)
    raw: dict[str, Any] | None = None


class AlertRepeated(IncidentEvent):
    type: Literal["AlertRepeated"] = "AlertRepeated"
    alert_key: str
    count: int


class AlertResolved(IncidentEvent):
    type: Literal["AlertResolved"] = "AlertResolved"
    alert_key: str


class IncidentAcknowledged(IncidentEvent):
    type: Literal["IncidentAcknowledged"] = "IncidentAcknowledged"
    by: str


class IncidentResolved(IncidentEvent):
    type: Literal["IncidentResolved"] = "IncidentResolved"
    by: str
    reason: str


EVENTS: tuple[type[Event], ...] = (
    IntegrationCreated,
    AlertObserved,
    IncidentOpened,
    AlertAttached,
    AlertRepeated,
    AlertResolved,
    IncidentAcknowledged,
    IncidentResolved,
)

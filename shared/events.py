"""The event catalogue: every fact any service records, as frozen pydantic models in one union.

Names are past tense. Each event carries `occurred_at`, the domain time (from the sender where it
has one). Events that concern an incident carry `incident_id`, which is also their partition key.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"
    LOW = "low"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Level(StrEnum):
    """Impact and urgency share one three-step scale."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: ClassVar[int] = 1

    type: str
    occurred_at: datetime

    @property
    def partition_key(self) -> str | None:
        return None


class IncidentEvent(Event):
    incident_id: str

    @property
    def partition_key(self) -> str | None:
        return self.incident_id


# --- intake -----------------------------------------------------------------------------------


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


# --- triage -----------------------------------------------------------------------------------


class PriorityAssigned(IncidentEvent):
    type: Literal["PriorityAssigned"] = "PriorityAssigned"
    priority: str
    impact: Level
    urgency: Level
    reason: str
    by: str
    title: str
    service: str


# --- comms ------------------------------------------------------------------------------------


class NotificationPlanned(IncidentEvent):
    type: Literal["NotificationPlanned"] = "NotificationPlanned"
    notification_id: str
    cause_event_id: str
    cause_type: str
    recipient: str
    channel: str
    audience: str
    subject: str
    body: str


class NotificationSent(IncidentEvent):
    type: Literal["NotificationSent"] = "NotificationSent"
    notification_id: str
    channel: str
    recipient: str
    attempt: int


class NotificationFailed(IncidentEvent):
    type: Literal["NotificationFailed"] = "NotificationFailed"
    notification_id: str
    channel: str
    recipient: str
    attempt: int
    error: str
    final: bool


# --- every service -----------------------------------------------------------------------------


class EventDeadLettered(Event):
    """A consumer gave up on an input event after repeated failures; `reason` is the last error."""

    type: Literal["EventDeadLettered"] = "EventDeadLettered"
    consumer: str
    event_id: str
    event_type: str
    stream: str
    attempts: int
    reason: str


AnyEvent = Annotated[
    IntegrationCreated
    | AlertObserved
    | IncidentOpened
    | AlertAttached
    | AlertRepeated
    | AlertResolved
    | IncidentAcknowledged
    | IncidentResolved
    | PriorityAssigned
    | NotificationPlanned
    | NotificationSent
    | NotificationFailed
    | EventDeadLettered,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)

# Upcasters turn an old stored shape into the current one: (type, stored schema version) -> function.
UPCASTERS: dict[tuple[str, int], Any] = {}


def event_types() -> dict[str, type[Event]]:
    """Every event class in the catalogue, by type name."""
    members = AnyEvent.__origin__.__args__  # type: ignore[attr-defined]
    return {cls.model_fields["type"].default: cls for cls in members}


def parse_event(data: dict[str, Any], schema_version: int = 1) -> Event:
    """Parse stored event data (with its `type`), upcasting older schema versions first."""
    kind = data.get("type")
    version = schema_version
    while (upcast := UPCASTERS.get((str(kind), version))) is not None:
        data = upcast(data)
        version += 1
    return EVENT_ADAPTER.validate_python(data)

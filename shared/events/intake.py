"""Events intake records: integrations, alerts (identity, dedup, grouping), heartbeats,
maintenance windows, and the incident lifecycle."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shared.events.base import AlertStatus, Event, IncidentEvent, Level, Severity


class IntegrationCreated(Event):
    """An integration (one sender's configuration). Only the key's SHA-256 is kept."""

    type: Literal["IntegrationCreated"] = "IntegrationCreated"
    integration_id: str
    name: str
    source_type: str
    default_service: str
    key_hash: str
    by: str
    severity_map: dict[str, Severity] = Field(default_factory=dict)
    resolve_rule: str = "all"
    group_by: str = "sender"
    group_labels: list[str] = Field(default_factory=list)
    group_window_seconds: int = 3600
    hmac_secret: str | None = None
    signature_header: str | None = None
    timestamp_header: str | None = None


class IntegrationRequestRefused(Event):
    """A request with this integration's key was refused (bad payload, bad signature): what its
    sender's owner needs to see to fix the configuration. `status` is the HTTP status answered."""

    type: Literal["IntegrationRequestRefused"] = "IntegrationRequestRefused"
    integration_id: str
    status: int
    error: str


class AlertObserved(IncidentEvent):
    """The dedup layer's record, on the alert-key stream: this key now belongs to this incident
    (empty when a resolve arrived for a key with no open incident)."""

    type: Literal["AlertObserved"] = "AlertObserved"
    alert_key: str
    status: AlertStatus
    integration_id: str = ""
    raw: dict[str, Any] | None = None


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
    integration_id: str = ""
    group_key: str = ""
    resolve_rule: str = "all"
    labels: dict[str, str] = Field(default_factory=dict)


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
    integration_id: str = ""
    group_key: str = ""


class AlertRepeated(IncidentEvent):
    type: Literal["AlertRepeated"] = "AlertRepeated"
    alert_key: str
    count: int
    integration_id: str = ""
    raw: dict[str, Any] | None = None


class AlertResolved(IncidentEvent):
    type: Literal["AlertResolved"] = "AlertResolved"
    alert_key: str
    integration_id: str = ""
    raw: dict[str, Any] | None = None


class AlertGrouped(Event):
    """The grouping layer's record, on the group stream: this group key now leads to this incident."""

    type: Literal["AlertGrouped"] = "AlertGrouped"
    group_key: str
    incident_id: str
    alert_key: str


class AlertSuppressed(Event):
    """An alert for a service in a maintenance window: recorded, visible, and it opens nothing."""

    type: Literal["AlertSuppressed"] = "AlertSuppressed"
    alert_key: str
    service: str
    title: str
    status: AlertStatus
    window_id: str
    reason: str
    integration_id: str = ""
    raw: dict[str, Any] | None = None

    @property
    def partition_key(self) -> str | None:
        return self.service


class AlertChangeRecorded(Event):
    """A change event (a deploy, a config change): on the timeline, it opens nothing.
    With no incident, its partition key is the service."""

    type: Literal["AlertChangeRecorded"] = "AlertChangeRecorded"
    incident_id: str = ""
    service: str
    summary: str
    source: str = ""
    integration_id: str = ""
    custom_details: dict[str, Any] = Field(default_factory=dict)
    links: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def partition_key(self) -> str | None:
        return self.incident_id or self.service


class CloudEventReceived(Event):
    """The exact-replay guard: a CloudEvent's (source, id) pair was accepted once."""

    type: Literal["CloudEventReceived"] = "CloudEventReceived"
    source: str
    id: str
    alert_key: str


class HeartbeatReceived(Event):
    """A monitor checked in; it is due again within `timeout_seconds`."""

    type: Literal["HeartbeatReceived"] = "HeartbeatReceived"
    name: str
    timeout_seconds: int
    service: str
    integration_id: str = ""


class HeartbeatExpired(IncidentEvent):
    """A heartbeat was not renewed in time; `incident_id` is the incident it opened."""

    type: Literal["HeartbeatExpired"] = "HeartbeatExpired"
    name: str
    due_at: datetime
    service: str


class HeartbeatRecovered(IncidentEvent):
    type: Literal["HeartbeatRecovered"] = "HeartbeatRecovered"
    name: str


class MaintenanceWindowScheduled(Event):
    """Alerts for `service` between `starts_at` and `ends_at` are recorded but open no incident."""

    type: Literal["MaintenanceWindowScheduled"] = "MaintenanceWindowScheduled"
    window_id: str
    service: str
    starts_at: datetime
    ends_at: datetime
    reason: str = ""
    by: str = ""


class IncidentAcknowledged(IncidentEvent):
    type: Literal["IncidentAcknowledged"] = "IncidentAcknowledged"
    by: str


class IncidentResolved(IncidentEvent):
    type: Literal["IncidentResolved"] = "IncidentResolved"
    by: str
    reason: str


class IncidentAssigned(IncidentEvent):
    type: Literal["IncidentAssigned"] = "IncidentAssigned"
    assignee: str
    by: str


class NoteAdded(IncidentEvent):
    type: Literal["NoteAdded"] = "NoteAdded"
    text: str
    by: str
    note_id: str = ""


class IncidentClosed(IncidentEvent):
    type: Literal["IncidentClosed"] = "IncidentClosed"
    by: str


class IncidentReopened(IncidentEvent):
    type: Literal["IncidentReopened"] = "IncidentReopened"
    by: str
    reason: str


class IncidentPutOnHold(IncidentEvent):
    """Work waits on something outside the team (a vendor, the customer); triage pauses SLA clocks."""

    type: Literal["IncidentPutOnHold"] = "IncidentPutOnHold"
    by: str
    reason: str


class IncidentResumed(IncidentEvent):
    type: Literal["IncidentResumed"] = "IncidentResumed"
    by: str


EVENTS: tuple[type[Event], ...] = (
    IntegrationCreated,
    IntegrationRequestRefused,
    AlertObserved,
    IncidentOpened,
    AlertAttached,
    AlertRepeated,
    AlertResolved,
    AlertGrouped,
    AlertSuppressed,
    AlertChangeRecorded,
    CloudEventReceived,
    HeartbeatReceived,
    HeartbeatExpired,
    HeartbeatRecovered,
    MaintenanceWindowScheduled,
    IncidentAcknowledged,
    IncidentResolved,
    IncidentAssigned,
    NoteAdded,
    IncidentClosed,
    IncidentReopened,
    IncidentPutOnHold,
    IncidentResumed,
)

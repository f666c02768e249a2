"""Analytics' pure core: fold events from every service into incident views and timeline entries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from shared.envelope import Envelope
from shared.events import (
    AlertAttached,
    AlertObserved,
    AlertRepeated,
    AlertResolved,
    Event,
    EventDeadLettered,
    IncidentAcknowledged,
    IncidentOpened,
    IncidentResolved,
    NotificationFailed,
    NotificationPlanned,
    NotificationSent,
    PriorityAssigned,
)


@dataclass(frozen=True, slots=True)
class IncidentView:
    id: str
    title: str = ""
    service: str = ""
    severity: str | None = None
    status: str = "open"
    priority: str | None = None
    major: str | None = None
    opened_at: datetime | None = None
    detected_at: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    alert_count: int = 0
    notification_count: int = 0
    notifications_sent: int = 0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> IncidentView:
        times = ("opened_at", "detected_at", "acknowledged_at", "resolved_at")
        fields: dict[str, Any] = {
            k: (datetime.fromisoformat(v) if k in times and v else v) for k, v in doc.items()
        }
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    incident_id: str
    event_id: str
    type: str
    at: datetime
    by: str
    summary: str
    source: str


def project(view: IncidentView | None, event: Event) -> IncidentView | None:
    """The incident view after `event`; None while the incident is unknown."""
    match event:
        case IncidentOpened():
            base = view or IncidentView(id=event.incident_id)
            return replace(
                base,
                title=event.title,
                service=event.service,
                severity=event.severity.value,
                opened_at=event.occurred_at,
                detected_at=event.detected_at,
            )
    if view is None:
        # Another service's event can arrive before intake's IncidentOpened: keep what it says.
        incident_id = event.partition_key
        if incident_id is None or not isinstance(event, PriorityAssigned | NotificationPlanned):
            return None
        view = IncidentView(id=incident_id)
    match event:
        case AlertAttached():
            return replace(view, alert_count=view.alert_count + 1)
        case AlertRepeated():
            return replace(view, alert_count=view.alert_count + 1)
        case IncidentAcknowledged():
            return replace(
                view, status="acknowledged", acknowledged_at=view.acknowledged_at or event.occurred_at
            )
        case IncidentResolved():
            return replace(view, status="resolved", resolved_at=event.occurred_at)
        case PriorityAssigned():
            return replace(
                view,
                priority=event.priority,
                title=view.title or event.title,
                service=view.service or event.service,
            )
        case NotificationPlanned():
            return replace(view, notification_count=view.notification_count + 1)
        case NotificationSent():
            return replace(view, notifications_sent=view.notifications_sent + 1)
        case _:
            return view


def summarise(event: Event) -> tuple[str, str] | None:
    """Who did it, and a sentence for a person reading the timeline; None for events not shown."""
    match event:
        case IncidentOpened():
            return (
                event.reporter,
                f"Incident opened: {event.title} on {event.service} ({event.severity.value})",
            )
        case AlertAttached():
            return event.source, f"Alert {event.dedup_key!r} attached: {event.reason}"
        case AlertRepeated():
            return "intake", f"Alert {event.alert_key!r} repeated ({event.count} times in all)"
        case AlertResolved():
            return "intake", f"Alert {event.alert_key!r} resolved by its sender"
        case IncidentAcknowledged():
            return event.by, "Incident acknowledged"
        case IncidentResolved():
            return event.by, f"Incident resolved: {event.reason}"
        case PriorityAssigned():
            return event.by, f"Priority {event.priority}: {event.reason}"
        case NotificationPlanned():
            return "comms", f"Notification planned to {event.recipient} via {event.channel}: {event.subject}"
        case NotificationSent():
            return "comms", f"Notification delivered to {event.recipient} via {event.channel}"
        case NotificationFailed():
            final = "gave up" if event.final else "will retry"
            return (
                "comms",
                f"Notification to {event.recipient} failed (attempt {event.attempt}, {final}): {event.error}",
            )
        case AlertObserved():
            return None  # the dedup layer's own record; AlertAttached tells the story
        case EventDeadLettered():
            return event.consumer, f"{event.event_type} {event.event_id} set aside: {event.reason}"
        case _:
            return _generic(event)


def _generic(event: Event) -> tuple[str, str]:
    """Any other event: its name in words and its own fields, so nothing is left off the timeline."""
    skip = {"type", "occurred_at", "incident_id"}
    fields = {
        k: v
        for k, v in event.model_dump(mode="json").items()
        if k not in skip and v not in (None, "", [], {})
    }
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in event.type).strip().capitalize()
    detail = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in list(fields.items())[:6])
    by = str(fields.get("by") or fields.get("actor") or event.type.split("Incident")[0].lower() or "lynchpin")
    return by, f"{words}" + (f" ({detail})" if detail else "")


def timeline_entry(env: Envelope) -> TimelineEntry | None:
    incident_id = env.event.partition_key
    said = summarise(env.event)
    if incident_id is None or said is None:
        return None
    by, summary = said
    return TimelineEntry(
        incident_id=incident_id,
        event_id=env.id,
        type=env.type,
        at=env.occurred_at,
        by=by,
        summary=summary,
        source=env.source,
    )

"""Comms' pure core: which notifications an event causes, and for whom. No I/O, no clock."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from shared.events import Event, IncidentResolved, NotificationPlanned, PriorityAssigned

NAMESPACE = uuid.UUID("6c1f3f0e-7d7b-4c1e-9a55-1e0c2f6b9e41")


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    channel: str
    audience: str = "responders"


@dataclass(frozen=True, slots=True)
class CommsIncident:
    title: str = ""
    service: str = ""
    priority: str = ""
    notified: frozenset[Recipient] = frozenset()


def notification_id(cause_event_id: str, recipient: Recipient) -> str:
    """One notification per cause event and recipient, whatever is redelivered."""
    return str(uuid.uuid5(NAMESPACE, f"{cause_event_id}|{recipient.channel}|{recipient.address}"))


def evolve(state: CommsIncident, event: Event) -> CommsIncident:
    match event:
        case NotificationPlanned(recipient=address, channel=channel, audience=audience):
            return replace(state, notified=state.notified | {Recipient(address, channel, audience)})
        case _:
            return state


def plan(
    state: CommsIncident, event: Event, *, cause_event_id: str, responders: Sequence[Recipient]
) -> list[Event]:
    """Opened and prioritised: tell the responders. Resolved: tell everyone told before."""
    match event:
        case PriorityAssigned():
            if any(r.audience == "responders" for r in state.notified):
                return []  # a later priority change is not a new incident
            subject = f"[{event.priority}] {event.title} ({event.service})"
            body = (
                f"Incident {event.incident_id} opened on {event.service}: {event.title}.\n"
                f"Priority {event.priority} ({event.reason})."
            )
            recipients: Sequence[Recipient] = responders
        case IncidentResolved():
            subject = f"[resolved] incident {event.incident_id}"
            body = f"Incident {event.incident_id} was resolved by {event.by}: {event.reason}."
            recipients = sorted(state.notified, key=lambda r: (r.channel, r.address))
        case _:
            return []
    return [
        NotificationPlanned(
            incident_id=event.incident_id,
            notification_id=notification_id(cause_event_id, r),
            cause_event_id=cause_event_id,
            cause_type=event.type,
            recipient=r.address,
            channel=r.channel,
            audience=r.audience,
            subject=subject,
            body=body,
            occurred_at=event.occurred_at,
        )
        for r in recipients
    ]

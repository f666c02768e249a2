"""Events comms records: notifications planned, sent, failed."""

from __future__ import annotations

from typing import Literal

from shared.events.base import Event, IncidentEvent


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


EVENTS: tuple[type[Event], ...] = (
    NotificationPlanned,
    NotificationSent,
    NotificationFailed,
)

"""Events comms records: its directory of stakeholders, what it knows of each incident, the
notifications it planned, sent, failed or coalesced, status updates and their cadence."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.base import Event, IncidentEvent


class ChannelTarget(BaseModel):
    """A channel kind (email, webhook, slack, teams, log) and its address."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    address: str


# --- the directory (stream `comms-directory`) ---------------------------------------------------


class StakeholderSaved(Event):
    """A stakeholder was created or replaced; `channels[0]` is primary, `channels[1]` the fallback."""

    type: Literal["StakeholderSaved"] = "StakeholderSaved"
    stakeholder_id: str
    name: str
    audience: str
    channels: list[ChannelTarget]
    roles: list[str] = Field(default_factory=list)
    by: str


class StakeholderRemoved(Event):
    type: Literal["StakeholderRemoved"] = "StakeholderRemoved"
    stakeholder_id: str
    by: str


class DistributionListSaved(Event):
    type: Literal["DistributionListSaved"] = "DistributionListSaved"
    list_id: str
    name: str
    members: list[str]
    by: str


class DistributionListRemoved(Event):
    type: Literal["DistributionListRemoved"] = "DistributionListRemoved"
    list_id: str
    by: str


class SubscriptionSaved(Event):
    """Who (a stakeholder or a list) hears about which incidents; empty filters match everything."""

    type: Literal["SubscriptionSaved"] = "SubscriptionSaved"
    subscription_id: str
    stakeholder_id: str | None = None
    list_id: str | None = None
    audience: str | None = None
    services: list[str] = Field(default_factory=list)
    priorities: list[str] = Field(default_factory=list)
    major_only: bool = False
    incident_id: str | None = None
    by: str


class SubscriptionRemoved(Event):
    type: Literal["SubscriptionRemoved"] = "SubscriptionRemoved"
    subscription_id: str
    by: str


# --- per incident (stream `comms-<incident id>`) ------------------------------------------------


class IncidentContextUpdated(IncidentEvent):
    """What comms now knows of an incident (for templates and subscriptions); unset fields are unchanged."""

    type: Literal["IncidentContextUpdated"] = "IncidentContextUpdated"
    title: str | None = None
    service: str | None = None
    priority: str | None = None
    status: str | None = None
    major: str | None = None
    team: str | None = None
    business_impact: str | None = None
    roles: dict[str, str] = Field(default_factory=dict)


class NotificationPlanned(IncidentEvent):
    """A message to one recipient, rendered; it counts towards the recipient's coalescing window.

    A digest lists the held-back notifications it covers in `digest_of`."""

    type: Literal["NotificationPlanned"] = "NotificationPlanned"
    notification_id: str
    cause_event_id: str
    cause_type: str
    recipient: str
    channel: str
    audience: str
    subject: str
    body: str
    stakeholder: str = ""
    fallback_channel: str | None = None
    fallback_recipient: str | None = None
    digest_of: list[str] = Field(default_factory=list)


class NotificationSent(IncidentEvent):
    type: Literal["NotificationSent"] = "NotificationSent"
    notification_id: str
    channel: str
    recipient: str
    attempt: int
    fallback: bool = False


class NotificationFailed(IncidentEvent):
    """One attempt failed. `final`: no attempt is left (dead-lettered until someone retries it)."""

    type: Literal["NotificationFailed"] = "NotificationFailed"
    notification_id: str
    channel: str
    recipient: str
    attempt: int
    error: str
    final: bool
    retry_at: datetime | None = None
    permanent: bool = False


class NotificationRetryRequested(IncidentEvent):
    """Someone asked to try a dead-lettered notification again, from its primary channel."""

    type: Literal["NotificationRetryRequested"] = "NotificationRetryRequested"
    notification_id: str
    by: str


class NotificationCoalesced(IncidentEvent):
    """Held back to avoid a message storm: it goes out in the recipient's digest at `window_ends_at`."""

    type: Literal["NotificationCoalesced"] = "NotificationCoalesced"
    notification_id: str
    cause_event_id: str
    cause_type: str
    recipient: str
    channel: str
    audience: str
    subject: str
    stakeholder: str = ""
    window_ends_at: datetime
    fallback_channel: str | None = None
    fallback_recipient: str | None = None


class RecipientNotified(Event):
    """On a recipient's own stream: a notification was planned to them. No longer recorded.

    The coalescing count comes from `NotificationPlanned` itself; logs that hold this event still fold
    as before."""

    type: Literal["RecipientNotified"] = "RecipientNotified"
    recipient: str
    notification_id: str
    incident_id: str
    digest_of: list[str] = Field(default_factory=list)


class StatusUpdatePublished(IncidentEvent):
    """A status update went out. `due_at`: when it was due by the cadence (None: no cadence ran);
    `latency_seconds`: published minus due (negative when early); `next_due_at`: the next one."""

    type: Literal["StatusUpdatePublished"] = "StatusUpdatePublished"
    update_id: str
    audience: str
    template: str
    subject: str
    text: str
    fields: dict[str, str] = Field(default_factory=dict)
    by: str
    due_at: datetime | None = None
    latency_seconds: float | None = None
    next_due_at: datetime | None = None


class UpdateCadenceStarted(IncidentEvent):
    """Status updates are now due every `every_seconds`; the next at `next_due_at`."""

    type: Literal["UpdateCadenceStarted"] = "UpdateCadenceStarted"
    every_seconds: float
    next_due_at: datetime
    reason: str


class UpdateCadenceStopped(IncidentEvent):
    type: Literal["UpdateCadenceStopped"] = "UpdateCadenceStopped"
    reason: str


class StatusUpdateOverdue(IncidentEvent):
    """The update due at `due_at` was not published: `level` reminder (to the communications
    manager) or escalation (to the incident manager); `notified` lists who was told."""

    type: Literal["StatusUpdateOverdue"] = "StatusUpdateOverdue"
    due_at: datetime
    level: Literal["reminder", "escalation"]
    role: str
    notified: list[str] = Field(default_factory=list)


EVENTS: tuple[type[Event], ...] = (
    StakeholderSaved,
    StakeholderRemoved,
    DistributionListSaved,
    DistributionListRemoved,
    SubscriptionSaved,
    SubscriptionRemoved,
    IncidentContextUpdated,
    NotificationPlanned,
    NotificationSent,
    NotificationFailed,
    NotificationRetryRequested,
    NotificationCoalesced,
    RecipientNotified,
    StatusUpdatePublished,
    UpdateCadenceStarted,
    UpdateCadenceStopped,
    StatusUpdateOverdue,
)

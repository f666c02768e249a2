"""The comms section of the policy file: who hears about what, how often, over which channels.

Every field has a default, so an empty section is a working policy. Durations are seconds or
ISO 8601 (`PT30M`). Secrets are never in the file: the SMTP password is read from the
environment variable it names.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")]
Text = Annotated[str, StringConstraints(max_length=200)]


class Audience(StrEnum):
    RESPONDERS = "responders"
    END_USERS = "end_users"
    MANAGEMENT = "management"


class ChannelKind(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    SLACK = "slack"
    TEAMS = "teams"
    LOG = "log"


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class Target(BaseModel):
    """One way to reach someone: a channel kind and its address (mailbox or URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ChannelKind
    address: Annotated[str, StringConstraints(min_length=1, max_length=2000)]

    @model_validator(mode="after")
    def _address_fits_kind(self) -> Target:
        if self.kind is ChannelKind.EMAIL and not EMAIL.match(self.address):
            raise ValueError(f"{self.address!r} is not an email address")
        if self.kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK, ChannelKind.TEAMS) and not (
            self.address.startswith(("http://", "https://"))
        ):
            raise ValueError(f"a {self.kind.value} address must be an http(s) URL")
        return self


class StakeholderSpec(BaseModel):
    """A person or group. `channels[0]` is the primary channel, `channels[1]` the fallback."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: Text = ""
    audience: Audience = Audience.RESPONDERS
    channels: list[Target] = Field(min_length=1, max_length=2)
    roles: list[Slug] = Field(default_factory=list, max_length=20)


class ListSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: Text = ""
    members: list[Slug] = Field(default_factory=list, max_length=1000)


class SubscriptionSpec(BaseModel):
    """Who (a stakeholder or a list) hears about which incidents. Empty filters match everything."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Slug
    stakeholder: Slug | None = None
    list_id: Slug | None = Field(default=None, alias="list")
    audience: Audience | None = None
    services: list[Text] = Field(default_factory=list, max_length=200)
    priorities: list[Text] = Field(default_factory=list, max_length=10)
    major_only: bool = False
    incident_id: Text | None = None

    @model_validator(mode="after")
    def _one_subscriber(self) -> SubscriptionSpec:
        if (self.stakeholder is None) == (self.list_id is None):
            raise ValueError("name exactly one of stakeholder or list")
        return self


class Trigger(BaseModel):
    """What an event kind causes: which audiences hear of it (at which priorities), and whether
    everyone notified earlier about the incident hears of it too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audiences: list[Audience] = Field(default_factory=list)
    priorities: list[str] = Field(default_factory=list, description="only at these priorities (empty: all)")
    audience_priorities: dict[Audience, list[str]] = Field(
        default_factory=dict, description="per audience, only at these priorities"
    )
    to_notified: bool = False


R, U, M = Audience.RESPONDERS, Audience.END_USERS, Audience.MANAGEMENT


def default_triggers() -> dict[str, Trigger]:
    return {
        "PriorityAssigned": Trigger(
            audiences=[R, U, M], audience_priorities={U: ["P1", "P2"], M: ["P1", "P2"]}
        ),
        "PriorityChanged": Trigger(audiences=[R, M], audience_priorities={M: ["P1", "P2"]}),
        "IncidentRouted": Trigger(),  # the opening notification already went out; enable per policy
        "IncidentAcknowledged": Trigger(to_notified=True),
        "SlaWarningRaised": Trigger(audiences=[R]),
        "SlaBreached": Trigger(audiences=[R, M]),
        "MajorIncidentProposed": Trigger(audiences=[R, M]),
        "MajorIncidentAccepted": Trigger(audiences=[R, U, M]),
        "MajorIncidentRejected": Trigger(audiences=[R, M]),
        "HandoverCompleted": Trigger(audiences=[R]),
        "IncidentResolved": Trigger(to_notified=True),
        "IncidentReopened": Trigger(audiences=[R], to_notified=True),
        "IncidentClosed": Trigger(),
    }


class CadencePolicy(BaseModel):
    """How often status updates are due. A cadence runs for an accepted major incident, and for
    priorities listed in `by_priority`; it stops when the incident is resolved or closed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    major_incident: timedelta = timedelta(minutes=30)
    by_priority: dict[str, timedelta] = Field(default_factory=dict)
    reminder_after: timedelta = timedelta(0)
    escalate_after: timedelta = timedelta(minutes=15)
    remind_role: Slug = "communications_manager"
    escalate_role: Slug = "incident_manager"

    @field_validator("major_incident")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> CadencePolicy:
        if any(v <= timedelta(0) for v in self.by_priority.values()):
            raise ValueError("by_priority: every cadence must be positive")
        if self.escalate_after < self.reminder_after:
            raise ValueError("escalate_after must not come before reminder_after")
        return self


class CoalescePolicy(BaseModel):
    """No message storms: past `max_per_window` notifications to one recipient within `window`,
    further ones are folded into one digest sent when the window ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: timedelta = timedelta(minutes=1)
    max_per_window: int = Field(default=5, ge=1)
    exempt: list[str] = Field(
        default_factory=lambda: ["StatusUpdatePublished", "StatusUpdateOverdue", "PageRequested"]
    )


class RetryPolicy(BaseModel):
    """Per channel: `attempts` tries with exponential backoff and jitter, then the fallback channel,
    then dead-lettered (visible, retryable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=4, ge=1, le=20)
    first_delay: timedelta = timedelta(seconds=0.5)
    max_delay: timedelta = timedelta(seconds=30)
    jitter: float = Field(default=0.5, ge=0, le=1, description="up to this fraction added at random")


class EmailPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = "lynchpin@localhost"
    use_tls: bool = False
    start_tls: bool = False
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="the environment variable holding the SMTP password"
    )
    timeout: timedelta = timedelta(seconds=10)


class OutboundPolicy(BaseModel):
    """Where webhooks may go. Loopback, link-local, cloud metadata, multicast and unspecified
    addresses are refused unless listed in `allow` (hosts, IP addresses or CIDR networks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] = Field(default_factory=list, max_length=200)
    allow_private: bool = True
    timeout: timedelta = timedelta(seconds=10)


class TemplateOverride(BaseModel):
    """Replaces the built-in text for an event kind x audience x channel (`*` matches any)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str = "*"
    audience: str = "*"
    channel: str = "*"
    subject: Annotated[str, StringConstraints(max_length=2000)] | None = None
    body: Annotated[str, StringConstraints(max_length=20000)] | None = None


class CommsPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    triggers: dict[str, Trigger] = Field(default_factory=default_triggers)
    cadence: CadencePolicy = Field(default_factory=CadencePolicy)
    coalesce: CoalescePolicy = Field(default_factory=CoalescePolicy)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    email: EmailPolicy = Field(default_factory=EmailPolicy)
    outbound: OutboundPolicy = Field(default_factory=OutboundPolicy)
    templates: list[TemplateOverride] = Field(default_factory=list)
    stakeholders: list[StakeholderSpec] = Field(default_factory=list)
    lists: list[ListSpec] = Field(default_factory=list)
    subscriptions: list[SubscriptionSpec] = Field(default_factory=list)
    timer_tick: timedelta = Field(default=timedelta(seconds=1), description="how often timers are checked")

    @field_validator("triggers")
    @classmethod
    def _merge_defaults(cls, value: dict[str, Trigger]) -> dict[str, Trigger]:
        """Kinds the file does not name keep their defaults."""
        return {**default_triggers(), **value}

    @model_validator(mode="after")
    def _references_resolve(self) -> CommsPolicy:
        people = {s.id for s in self.stakeholders}
        lists = {x.id for x in self.lists}
        for x in self.lists:
            missing = [m for m in x.members if m not in people]
            if missing:
                raise ValueError(f"list {x.id}: unknown stakeholders {missing}")
        for sub in self.subscriptions:
            if sub.stakeholder is not None and sub.stakeholder not in people:
                raise ValueError(f"subscription {sub.id}: unknown stakeholder {sub.stakeholder}")
            if sub.list_id is not None and sub.list_id not in lists:
                raise ValueError(f"subscription {sub.id}: unknown list {sub.list_id}")
        return self

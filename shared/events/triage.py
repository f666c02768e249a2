"""Events triage records: priority, routing, SLA clocks, major incidents, roles, problems.

Events about an incident carry its `title` and `service`, so that readers need not look them up.
Problem events have no incident: their partition key is the problem id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.base import Event, IncidentEvent, Level

SlaKind = Literal["response", "resolution"]


class PriorityAssigned(IncidentEvent):
    type: Literal["PriorityAssigned"] = "PriorityAssigned"
    priority: str
    impact: Level
    urgency: Level
    reason: str
    by: str
    title: str
    service: str


class PriorityChanged(IncidentEvent):
    """Someone overrode the priority; `reason` says why."""

    type: Literal["PriorityChanged"] = "PriorityChanged"
    priority: str
    previous: str | None
    reason: str
    by: str
    title: str = ""
    service: str = ""


class IncidentRouted(IncidentEvent):
    """The incident goes to `team`; `rule` names the routing rule that fired."""

    type: Literal["IncidentRouted"] = "IncidentRouted"
    team: str
    rule: str
    reason: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    title: str = ""
    service: str = ""


class SlaTargetSet(IncidentEvent):
    """An SLA clock's target (set when the incident opens and again when its priority changes).
    `calendar` names the business-hours calendar it counts in; none: 24x7."""

    type: Literal["SlaTargetSet"] = "SlaTargetSet"
    kind: SlaKind
    priority: str
    target_seconds: float
    calendar: str | None = None
    started_at: datetime
    due_at: datetime | None = None
    title: str = ""
    service: str = ""


class SlaClockPaused(IncidentEvent):
    type: Literal["SlaClockPaused"] = "SlaClockPaused"
    kinds: list[SlaKind]
    reason: str
    by: str
    title: str = ""
    service: str = ""


class SlaClockResumed(IncidentEvent):
    type: Literal["SlaClockResumed"] = "SlaClockResumed"
    kinds: list[SlaKind]
    reason: str
    by: str
    title: str = ""
    service: str = ""


class SlaWarningRaised(IncidentEvent):
    """An SLA clock reached the warning fraction (80% by default) of its target, due at `due_at`."""

    type: Literal["SlaWarningRaised"] = "SlaWarningRaised"
    kind: SlaKind
    due_at: datetime
    priority: str
    title: str = ""
    service: str = ""


class SlaBreached(IncidentEvent):
    type: Literal["SlaBreached"] = "SlaBreached"
    kind: SlaKind
    due_at: datetime
    priority: str
    title: str = ""
    service: str = ""


class SlaMet(IncidentEvent):
    """The clock stopped (acknowledged, resolved) before its due time."""

    type: Literal["SlaMet"] = "SlaMet"
    kind: SlaKind
    due_at: datetime | None
    priority: str
    by: str = ""
    title: str = ""
    service: str = ""


class SlaClockStopped(IncidentEvent):
    """The clock stopped after it had breached."""

    type: Literal["SlaClockStopped"] = "SlaClockStopped"
    kind: SlaKind
    due_at: datetime | None
    priority: str
    by: str = ""
    title: str = ""
    service: str = ""


class MajorIncidentProposed(IncidentEvent):
    type: Literal["MajorIncidentProposed"] = "MajorIncidentProposed"
    reason: str
    by: str
    automatic: bool
    rule: str = ""
    title: str = ""
    service: str = ""


class MajorIncidentAccepted(IncidentEvent):
    """An incident manager accepted: the major-incident procedure starts."""

    type: Literal["MajorIncidentAccepted"] = "MajorIncidentAccepted"
    by: str
    business_impact: str
    notes: str
    required_roles: list[str] = Field(default_factory=list)
    review_required: bool = True
    title: str = ""
    service: str = ""


class MajorIncidentRejected(IncidentEvent):
    type: Literal["MajorIncidentRejected"] = "MajorIncidentRejected"
    by: str
    reason: str
    title: str = ""
    service: str = ""


class PostIncidentReviewRecorded(IncidentEvent):
    """The post-incident review a major incident needs before it closes."""

    type: Literal["PostIncidentReviewRecorded"] = "PostIncidentReviewRecorded"
    by: str
    summary: str
    problem_id: str | None = None
    title: str = ""
    service: str = ""


class RoleAssigned(IncidentEvent):
    type: Literal["RoleAssigned"] = "RoleAssigned"
    role: str
    person: str
    by: str
    title: str = ""
    service: str = ""


class RoleRelinquished(IncidentEvent):
    type: Literal["RoleRelinquished"] = "RoleRelinquished"
    role: str
    person: str
    by: str
    title: str = ""
    service: str = ""


class Briefing(BaseModel):
    """What the incoming holder of a role is told."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    current_state: str
    open_actions: list[str] = Field(default_factory=list)
    next_update_due: datetime | None = None


class HandoverCompleted(IncidentEvent):
    """One event moves a role from one person to another, with the briefing."""

    type: Literal["HandoverCompleted"] = "HandoverCompleted"
    role: str
    from_person: str
    to_person: str
    briefing: Briefing
    by: str
    title: str = ""
    service: str = ""


class RoleGapDetected(IncidentEvent):
    """An accepted major incident has had nobody in a required role since `since`."""

    type: Literal["RoleGapDetected"] = "RoleGapDetected"
    role: str
    since: datetime
    minutes: float = 0
    title: str = ""
    service: str = ""


class ServiceActivityRecorded(Event):
    """Triage's count of an incident or alert on a service (for the storm and recurrence rules)."""

    type: Literal["ServiceActivityRecorded"] = "ServiceActivityRecorded"
    service: str
    activity: Literal["incident", "alert"]
    incident_id: str
    fingerprint: str = ""
    calm: bool = Field(
        default=False,
        description="After a storm: at this signal the service was below every storm threshold again",
    )

    @property
    def partition_key(self) -> str | None:
        return f"service:{self.service}"


class StormDetected(IncidentEvent):
    """`count` incidents or alerts on `service` within the window; `incident_id` tipped it."""

    type: Literal["StormDetected"] = "StormDetected"
    service: str
    activity: Literal["incident", "alert"]
    count: int
    window_minutes: float
    proposed: bool


class ProblemEvent(Event):
    problem_id: str

    @property
    def partition_key(self) -> str | None:
        return self.problem_id


class ProblemRecorded(ProblemEvent):
    type: Literal["ProblemRecorded"] = "ProblemRecorded"
    title: str
    description: str = ""
    service: str = ""
    root_cause: str = ""
    workaround: str = ""
    suggestion_id: str | None = None
    by: str


class ProblemUpdated(ProblemEvent):
    """Only the fields given changed."""

    type: Literal["ProblemUpdated"] = "ProblemUpdated"
    by: str
    root_cause: str | None = None
    workaround: str | None = None
    known_error: bool | None = None
    status: Literal["open", "known_error", "resolved", "closed"] | None = None


class IncidentLinkedToProblem(ProblemEvent):
    type: Literal["IncidentLinkedToProblem"] = "IncidentLinkedToProblem"
    incident_id: str
    by: str


class ProblemSuggested(Event):
    """A service or an alert fingerprint recurred often enough to suggest a problem record."""

    type: Literal["ProblemSuggested"] = "ProblemSuggested"
    suggestion_id: str
    service: str
    fingerprint: str = ""
    incident_ids: list[str]
    count: int
    days: float
    reason: str

    @property
    def partition_key(self) -> str | None:
        return self.suggestion_id


# --- on-call and escalation (stream `escalation-<incident id>`) ---------------------------------


class EscalationStarted(IncidentEvent):
    """The incident went to `team`: escalation policy `policy_id` runs until someone acknowledges,
    the incident resolves, or every step of every round was tried. The first step is due at
    `first_due_at`."""

    type: Literal["EscalationStarted"] = "EscalationStarted"
    policy_id: str
    team: str
    priority: str
    urgency: Literal["high", "low"]
    steps: int
    repeat: int = 0
    first_due_at: datetime
    title: str = ""
    service: str = ""


class EscalationStepReached(IncidentEvent):
    """Step `step` of round `round` (both from 1) fell due at `due_at`. `mode` page: every contact
    method; notify (low urgency outside business hours): no urgent-only ones. `paged` are the
    people reached, `unreached` the targets with nobody on call. The next step (after the last
    step of the last round: the end of the chain) is due at `next_due_at`."""

    type: Literal["EscalationStepReached"] = "EscalationStepReached"
    policy_id: str
    step: int
    round: int = 1
    due_at: datetime
    mode: Literal["page", "notify"]
    targets: list[str] = Field(default_factory=list)
    paged: list[str] = Field(default_factory=list)
    unreached: list[str] = Field(default_factory=list)
    next_due_at: datetime | None = None
    title: str = ""
    service: str = ""


class PageContact(BaseModel):
    """One of a person's contact methods: a channel kind (email, webhook, slack, teams) and address."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    address: str


class PageRequested(IncidentEvent):
    """Page `person` at each of `contacts` (comms delivers; its NotificationSent and
    NotificationFailed say whether it arrived). `ack_url` acknowledges the incident once, without
    logging in, until `ack_expires_at`."""

    type: Literal["PageRequested"] = "PageRequested"
    person: str
    name: str = ""
    policy_id: str
    step: int
    round: int = 1
    urgency: Literal["high", "low"]
    mode: Literal["page", "notify"]
    contacts: list[PageContact]
    ack_url: str
    ack_expires_at: datetime
    team: str = ""
    priority: str = ""
    title: str = ""
    service: str = ""


class EscalationStopped(IncidentEvent):
    """The escalation ended: `reason` acknowledged, resolved, closed, rerouted (to another team)
    or exhausted (every step of every round was tried); `by` who acknowledged or resolved."""

    type: Literal["EscalationStopped"] = "EscalationStopped"
    policy_id: str
    reason: Literal["acknowledged", "resolved", "closed", "rerouted", "exhausted"]
    by: str = ""
    step: int = 0
    round: int = 0
    title: str = ""
    service: str = ""


class OnCallOverrideAdded(Event):
    """Someone covers schedule `schedule_id` from `start` to `end` (added over the API; overrides in
    the policy file need no event)."""

    type: Literal["OnCallOverrideAdded"] = "OnCallOverrideAdded"
    override_id: str
    schedule_id: str
    person: str
    start: datetime
    end: datetime
    reason: str = ""
    by: str

    @property
    def partition_key(self) -> str | None:
        return f"schedule:{self.schedule_id}"


class OnCallOverrideRemoved(Event):
    type: Literal["OnCallOverrideRemoved"] = "OnCallOverrideRemoved"
    override_id: str
    schedule_id: str
    by: str

    @property
    def partition_key(self) -> str | None:
        return f"schedule:{self.schedule_id}"


EVENTS: tuple[type[Event], ...] = (
    PriorityAssigned,
    PriorityChanged,
    IncidentRouted,
    SlaTargetSet,
    SlaClockPaused,
    SlaClockResumed,
    SlaWarningRaised,
    SlaBreached,
    SlaMet,
    SlaClockStopped,
    MajorIncidentProposed,
    MajorIncidentAccepted,
    MajorIncidentRejected,
    PostIncidentReviewRecorded,
    RoleAssigned,
    RoleRelinquished,
    HandoverCompleted,
    RoleGapDetected,
    ServiceActivityRecorded,
    StormDetected,
    ProblemRecorded,
    ProblemUpdated,
    IncidentLinkedToProblem,
    ProblemSuggested,
    EscalationStarted,
    EscalationStepReached,
    PageRequested,
    EscalationStopped,
    OnCallOverrideAdded,
    OnCallOverrideRemoved,
)

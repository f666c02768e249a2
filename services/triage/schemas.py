"""Triage's API shapes: request bodies, the triage state as answered, `If-Match`/`ETag`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Header, Response
from pydantic import BaseModel, ConfigDict, Field

from services.triage import domain, major, roles
from services.triage.sla import elapsed, point_at, state_of
from services.triage.state import Triage
from shared.auth import Principal, Role
from shared.errors import DomainError
from shared.policy.triage import IncidentRole, Priority, TriagePolicy
from shared.web import require

IncidentManager = Annotated[Principal, Depends(require(Role.INCIDENT_MANAGER))]


@dataclass(frozen=True, slots=True)
class Versioned:
    """The incident's triage version: `If-Match` in, `ETag` out."""

    response: Response
    if_match: int | None


def versioned(response: Response, if_match: Annotated[str | None, Header()] = None) -> Versioned:
    if if_match is None:
        return Versioned(response, None)
    try:
        return Versioned(response, int(if_match.strip().removeprefix("W/").strip('"')))
    except ValueError:
        raise DomainError(f"If-Match must be an ETag this API returned, got {if_match!r}") from None


Version = Annotated[Versioned, Depends(versioned)]

Text = Annotated[str, Field(min_length=1, max_length=4096)]
Name = Annotated[str, Field(min_length=1, max_length=255)]


class PriorityOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Priority
    reason: Text


class Proposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text


class Acceptance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    business_impact: Text
    notes: Text


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: Annotated[str, Field(min_length=1, max_length=65536)]
    problem_id: Name | None = None


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["assign", "relinquish"]
    role: IncidentRole
    person: Name


class BriefingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_state: Annotated[str, Field(min_length=1, max_length=65536)]
    open_actions: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=200
    )
    next_update_due: datetime | None = None


class HandoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    role: IncidentRole
    from_person: Name = Field(alias="from")
    to_person: Name = Field(alias="to")
    briefing: BriefingIn


class ClockOut(BaseModel):
    kind: str
    priority: str
    target_seconds: float
    calendar: str | None
    started_at: datetime
    warning_at: datetime | None
    due_at: datetime | None
    elapsed_seconds: float
    state: str
    stopped_at: datetime | None


class MajorOut(BaseModel):
    status: str | None
    proposed_by: str = ""
    proposed_at: datetime | None = None
    reason: str = ""
    automatic: bool = False
    rule: str = ""
    decided_by: str = ""
    decided_at: datetime | None = None
    business_impact: str = ""
    notes: str = ""
    rejection_reason: str = ""
    required_roles: list[str] = Field(default_factory=list)
    missing_roles: list[str] = Field(default_factory=list)
    post_incident_review: str = "not_required"
    close_allowed: bool = True


class TenureOut(BaseModel):
    role: str
    person: str
    assumed_at: datetime
    relinquished_at: datetime | None
    by: str
    via: str


class TriageOut(BaseModel):
    incident_id: str
    title: str
    service: str
    priority: str | None
    priority_reason: str
    priority_by: str
    impact: str | None
    urgency: str | None
    team: str | None
    rule: str | None
    on_hold: bool
    sla: list[ClockOut]
    major: MajorOut
    roles: dict[str, list[str]]
    tenure: list[TenureOut]
    version: int


class MajorListItem(BaseModel):
    incident_id: str
    title: str
    service: str
    priority: str | None
    major: MajorOut


def major_out(state: Triage) -> MajorOut:
    m = state.major
    review = major.review_status(state)
    return MajorOut(
        status=m.status,
        proposed_by=m.proposed_by,
        proposed_at=m.proposed_at,
        reason=m.reason,
        automatic=m.automatic,
        rule=m.rule,
        decided_by=m.decided_by,
        decided_at=m.decided_at,
        business_impact=m.business_impact,
        notes=m.notes,
        rejection_reason=m.rejection_reason,
        required_roles=list(m.required_roles),
        missing_roles=[r for r in m.required_roles if not state.holders(r)] if m.status == "accepted" else [],
        post_incident_review=review,
        close_allowed=review != "pending",
    )


def triage_out(state: Triage, version: int, policy: TriagePolicy, now: datetime) -> TriageOut:
    clocks = []
    for kind in domain.KINDS:
        clock = state.clocks.get(kind)
        if clock is None:
            continue
        hours = policy.calendars.get(clock.calendar) if clock.calendar else None
        clocks.append(
            ClockOut(
                kind=kind,
                priority=clock.priority,
                target_seconds=clock.target.total_seconds(),
                calendar=clock.calendar,
                started_at=clock.started_at,
                warning_at=point_at(clock, policy.sla_warning_fraction, hours),
                due_at=point_at(clock, 1.0, hours),
                elapsed_seconds=elapsed(clock, now, hours).total_seconds(),
                state=state_of(clock, now, hours),
                stopped_at=clock.stopped_at,
            )
        )
    holders: dict[str, list[str]] = {}
    for t in state.roles:
        if t.current:
            holders.setdefault(t.role, []).append(t.person)
    return TriageOut(
        incident_id=state.incident_id,
        title=state.title,
        service=state.service,
        priority=state.priority.value if state.priority else None,
        priority_reason=state.priority_reason,
        priority_by=state.priority_by,
        impact=state.impact.value if state.impact else None,
        urgency=state.urgency.value if state.urgency else None,
        team=state.team,
        rule=state.rule,
        on_hold=state.on_hold,
        sla=clocks,
        major=major_out(state),
        roles=holders,
        tenure=[TenureOut.model_validate(t) for t in roles.tenure(state)],
        version=version,
    )

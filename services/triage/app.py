"""Triage's HTTP API and wiring: priority, routing, SLA clocks, major incidents, roles, problems."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from services.triage import domain, major, roles
from services.triage.handlers import TriageHandlers, triage_stream
from services.triage.problems_api import problem_routes
from services.triage.sla import elapsed, point_at, state_of
from services.triage.state import Triage
from services.triage.timers import Timers, TriageIndex
from shared.auth import Principal, Role
from shared.bus.base import Bus
from shared.clock import Clock, system_clock
from shared.errors import DomainError, NotFound
from shared.events import Briefing
from shared.policy import Policy, load_policy
from shared.policy.triage import IncidentRole, Priority, TriagePolicy
from shared.service import Wiring, build_app
from shared.settings import Settings
from shared.store import EventStore, open_store
from shared.web import Responder, Viewer, require

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


def routes(handlers: TriageHandlers, index: TriageIndex, policy: Policy) -> APIRouter:
    router = APIRouter()
    rules = handlers.policy

    async def answer(incident_id: str, loaded: tuple[Triage, int], v: Versioned) -> TriageOut:
        state, version = loaded
        if not state.exists:
            raise NotFound(f"no incident {incident_id} in triage (yet)")
        v.response.headers["ETag"] = f'"{version}"'
        return triage_out(state, version, rules, handlers.clock())

    @router.get("/v1/policy", tags=["policy"], summary="The policy in force")
    async def get_policy(who: Viewer) -> dict[str, Any]:
        return policy.model_dump(mode="json")

    @router.get("/v1/incidents/{incident_id}/triage", response_model=TriageOut, tags=["triage"])
    async def get_triage(incident_id: str, who: Viewer, v: Version) -> TriageOut:
        return await answer(incident_id, await handlers.triages.load(triage_stream(incident_id)), v)

    @router.post(
        "/v1/incidents/{incident_id}/priority",
        response_model=TriageOut,
        tags=["triage"],
        summary="Override the priority, with a reason",
    )
    async def set_priority(incident_id: str, body: PriorityOverride, who: Responder, v: Version) -> TriageOut:
        now = handlers.clock()
        return await answer(
            incident_id,
            await handlers.change(
                incident_id,
                lambda s: domain.change_priority(
                    s, body.priority, reason=body.reason, by=who.subject, now=now, policy=rules
                ),
                v.if_match,
            ),
            v,
        )

    @router.post(
        "/v1/incidents/{incident_id}/major/propose", response_model=TriageOut, tags=["major incidents"]
    )
    async def propose(incident_id: str, body: Proposal, who: Responder, v: Version) -> TriageOut:
        now = handlers.clock()
        return await answer(
            incident_id,
            await handlers.change(
                incident_id,
                lambda s: major.propose(s, reason=body.reason, by=who.subject, now=now),
                v.if_match,
            ),
            v,
        )

    @router.post(
        "/v1/incidents/{incident_id}/major/accept",
        response_model=TriageOut,
        tags=["major incidents"],
        summary="Accept a proposed major incident (incident managers only)",
    )
    async def accept(incident_id: str, body: Acceptance, who: IncidentManager, v: Version) -> TriageOut:
        now = handlers.clock()
        return await answer(
            incident_id,
            await handlers.change(
                incident_id,
                lambda s: major.accept(
                    s,
                    by=who.subject,
                    business_impact=body.business_impact,
                    notes=body.notes,
                    now=now,
                    policy=rules,
                ),
                v.if_match,
            ),
            v,
        )

    @router.post(
        "/v1/incidents/{incident_id}/major/reject",
        response_model=TriageOut,
        tags=["major incidents"],
        summary="Reject a proposed major incident (incident managers only)",
    )
    async def reject(incident_id: str, body: Rejection, who: IncidentManager, v: Version) -> TriageOut:
        now = handlers.clock()
        return await answer(
            incident_id,
            await handlers.change(
                incident_id,
                lambda s: major.reject(s, by=who.subject, reason=body.reason, now=now),
                v.if_match,
            ),
            v,
        )

    @router.post(
        "/v1/incidents/{incident_id}/major/review",
        response_model=TriageOut,
        tags=["major incidents"],
        summary="Record the post-incident review an accepted major incident needs before close",
    )
    async def review(incident_id: str, body: Review, who: Responder, v: Version) -> TriageOut:
        now = handlers.clock()
        return await answer(
            incident_id,
            await handlers.change(
                incident_id,
                lambda s: major.record_review(
                    s, by=who.subject, summary=body.summary, problem_id=body.problem_id, now=now
                ),
                v.if_match,
            ),
            v,
        )

    @router.get("/v1/major-incidents", response_model=list[MajorListItem], tags=["major incidents"])
    async def list_major(
        who: Viewer, status: Annotated[Literal["proposed", "accepted", "rejected"] | None, Query()] = None
    ) -> list[MajorListItem]:
        await index.catch_up()
        items = [
            MajorListItem(
                incident_id=s.incident_id,
                title=s.title,
                service=s.service,
                priority=s.priority.value if s.priority else None,
                major=major_out(s),
            )
            for s in index.incidents.values()
            if s.major.status is not None and (status is None or s.major.status == status)
        ]
        return sorted(items, key=lambda i: i.major.proposed_at or datetime.min, reverse=True)

    @router.post(
        "/v1/incidents/{incident_id}/roles",
        response_model=TriageOut,
        tags=["roles"],
        summary="Assign or relinquish a role (tenure is recorded)",
    )
    async def change_role(incident_id: str, body: RoleChange, who: Responder, v: Version) -> TriageOut:
        now = handlers.clock()
        if body.action == "assign":
            decide = lambda s: roles.assign(s, body.role, body.person, by=who.subject, now=now, policy=rules)  # noqa: E731
        else:
            decide = lambda s: roles.relinquish(s, body.role, body.person, by=who.subject, now=now)  # noqa: E731
        return await answer(incident_id, await handlers.change(incident_id, decide, v.if_match), v)

    @router.post(
        "/v1/incidents/{incident_id}/handovers",
        response_model=TriageOut,
        tags=["roles"],
        summary="Hand a role over with a briefing: one event moves the role",
    )
    async def hand_over(incident_id: str, body: HandoverIn, who: Responder, v: Version) -> TriageOut:
        now = handlers.clock()
        briefing = Briefing(**body.briefing.model_dump())
        return await answer(
            incident_id,
            await handlers.change(
                incident_id,
                lambda s: roles.handover(
                    s, body.role, body.from_person, body.to_person, briefing, by=who.subject, now=now
                ),
                v.if_match,
            ),
            v,
        )

    return router


def create_app(
    settings: Settings,
    *,
    store: EventStore | None = None,
    bus: Bus | None = None,
    clock: Clock | None = None,
    policy: Policy | None = None,
) -> FastAPI:
    if policy is None:
        policy = load_policy(settings.policy)
    if store is None:
        store = open_store(settings.store_url_for("triage"), source="triage")
    if bus is None:
        from shared.bus import open_bus

        bus = open_bus(settings, sources=["intake"])
    if clock is None:
        clock = system_clock
    handlers = TriageHandlers(store, policy.triage, clock)
    index = TriageIndex(handlers)
    timers = Timers(index)
    wiring = Wiring(
        name="triage",
        settings=settings,
        store=store,
        clock=clock,
        bus=bus,
        sources=["intake"],
        handler=handlers.on_event,
        workers={"timers": timers.run},
    )
    app = build_app(
        wiring,
        title="Lynchpin triage",
        description="Priority, routing, SLA clocks, major incidents, roles and problems.",
    )
    app.state.timers = timers
    app.include_router(routes(handlers, index, policy))
    app.include_router(problem_routes(handlers, index))
    return app

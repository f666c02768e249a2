"""Triage's incident endpoints: the triage state, priority overrides, major incidents, roles."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from services.triage import domain, major, roles
from services.triage.handlers import TriageHandlers, triage_stream
from services.triage.schemas import (
    Acceptance,
    HandoverIn,
    IncidentManager,
    MajorListItem,
    PriorityOverride,
    Proposal,
    Rejection,
    Review,
    RoleChange,
    TriageOut,
    Version,
    Versioned,
    major_out,
    triage_out,
)
from services.triage.state import Triage
from services.triage.timers import TriageIndex
from shared.errors import NotFound
from shared.events import Briefing
from shared.policy import Policy
from shared.web import Responder, Viewer


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

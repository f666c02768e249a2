"""On-call over HTTP: schedules and who is on call, shift lists, escalation policies (from the
policy file), one incident's escalation, and the on-call report."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from services.triage import oncall, oncall_report
from services.triage.paging import Paging, escalation_stream, overrides_stream
from shared.errors import DomainError, NotFound
from shared.events import OnCallOverrideAdded, OnCallOverrideRemoved
from shared.policy.oncall import EscalationPolicy, Schedule, Slug, Text
from shared.store import Write
from shared.web import Responder, Viewer

NAMESPACE = uuid.UUID("5b0f6f0c-3f5e-4f7e-9a3c-0c1d2e3f4a5b")
IdempotencyKey = Annotated[str | None, Header(max_length=255)]

When = Annotated[datetime | None, Query(description="An ISO 8601 instant with its offset; default: now")]


class OnCallOut(BaseModel):
    schedule_id: str
    at: datetime
    person: str | None
    name: str
    source: str
    override_reason: str = ""


class ShiftOut(BaseModel):
    person: str | None
    start: datetime
    end: datetime
    start_local: str
    end_local: str
    source: str


class ShiftsOut(BaseModel):
    schedule_id: str
    timezone: str
    start: datetime
    end: datetime
    shifts: list[ShiftOut]
    gaps: list[ShiftOut] = Field(description="The shifts with nobody on call")


class ScheduleSummary(BaseModel):
    id: str
    name: str
    team: str
    timezone: str
    layers: int
    overrides: int
    on_call_now: str | None


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person: Slug
    start: datetime
    end: datetime
    reason: Text = ""


class OverrideOut(BaseModel):
    id: str | None = None
    person: str
    start: datetime
    end: datetime
    reason: str
    source: str
    by: str = ""


class OverrideInvalid(DomainError):
    status = 422
    title = "Invalid override"


class EscalationOut(BaseModel):
    incident_id: str
    policy_id: str
    team: str
    urgency: str
    running: bool
    step: int
    round: int
    next_due_at: datetime | None
    stop_reason: str
    stopped_by: str
    events: list[dict[str, Any]]


class SummaryOut(BaseModel):
    count: int
    mean_seconds: float | None
    median_seconds: float | None
    p90_seconds: float | None


class ReportOut(BaseModel):
    start: datetime | None
    end: datetime | None
    pages: int
    out_of_hours: int
    mtta_by_team: dict[str, SummaryOut]
    mtta_by_person: dict[str, SummaryOut]
    pages_per_person_week: dict[str, dict[str, int]]
    out_of_hours_pages: dict[str, int]


def oncall_routes(paging: Paging) -> APIRouter:
    router = APIRouter(tags=["on-call"])
    policy = paging.policy

    def schedule_or_404(schedule_id: str) -> Schedule:
        found = paging.effective().schedule(schedule_id)
        if found is None:
            raise NotFound(f"no schedule {schedule_id!r} in the policy")
        return found

    def name_of(person: str | None) -> str:
        p = policy.person(person) if person is not None else None
        return (p.name or p.id) if p is not None else ""

    @router.get(
        "/v1/schedules", response_model=list[ScheduleSummary], summary="Schedules, and who is on call now"
    )
    async def list_schedules(who: Viewer) -> list[ScheduleSummary]:
        await paging.catch_up()
        now = paging.clock()
        return [
            ScheduleSummary(
                id=s.id,
                name=s.name,
                team=s.team,
                timezone=s.timezone,
                layers=len(s.layers),
                overrides=len(s.overrides),
                on_call_now=oncall.who(s, now).person,
            )
            for s in paging.effective().schedules
        ]

    @router.get("/v1/schedules/{schedule_id}", summary="One schedule: layers and overrides")
    async def get_schedule(schedule_id: str, who: Viewer) -> dict[str, Any]:
        await paging.catch_up()
        return schedule_or_404(schedule_id).model_dump(mode="json")

    @router.get(
        "/v1/schedules/{schedule_id}/oncall", response_model=OnCallOut, summary="Who is on call at a time"
    )
    async def on_call(schedule_id: str, who: Viewer, at: When = None) -> OnCallOut:
        await paging.catch_up()
        schedule = schedule_or_404(schedule_id)
        instant = at if at is not None else paging.clock()
        found = oncall.who(schedule, instant)
        return OnCallOut(
            schedule_id=schedule.id,
            at=instant,
            person=found.person,
            name=name_of(found.person),
            source=found.source,
            override_reason=found.override.reason if found.override is not None else "",
        )

    @router.get(
        "/v1/schedules/{schedule_id}/shifts", response_model=ShiftsOut, summary="Who is on call over a range"
    )
    async def shift_list(
        schedule_id: str,
        who: Viewer,
        start: Annotated[datetime | None, Query(alias="from", description="default: now")] = None,
        end: Annotated[datetime | None, Query(alias="to", description="default: a week after from")] = None,
    ) -> ShiftsOut:
        await paging.catch_up()
        schedule = schedule_or_404(schedule_id)
        begin = start if start is not None else paging.clock()
        finish = end if end is not None else begin + timedelta(days=7)
        zone = ZoneInfo(schedule.timezone)
        found = oncall.shifts(schedule, begin, finish)
        listed = [
            ShiftOut(
                person=s.person,
                start=s.start,
                end=s.end,
                start_local=s.start.astimezone(zone).isoformat(),
                end_local=s.end.astimezone(zone).isoformat(),
                source=s.source,
            )
            for s in found
        ]
        return ShiftsOut(
            schedule_id=schedule.id,
            timezone=schedule.timezone,
            start=begin,
            end=finish,
            shifts=listed,
            gaps=[s for s in listed if s.person is None],
        )

    @router.get(
        "/v1/schedules/{schedule_id}/overrides",
        response_model=list[OverrideOut],
        summary="Overrides: the policy file's (no id) and those added over the API",
    )
    async def list_overrides(schedule_id: str, who: Viewer) -> list[OverrideOut]:
        await paging.catch_up()
        schedule_or_404(schedule_id)
        base = policy.schedule(schedule_id)
        out = [
            OverrideOut(person=o.person, start=o.start, end=o.end, reason=o.reason, source="policy")
            for o in (base.overrides if base is not None else [])
        ]
        for o in paging.overrides.get(schedule_id, {}).values():
            out.append(
                OverrideOut(
                    id=o.override_id,
                    person=o.person,
                    start=o.start,
                    end=o.end,
                    reason=o.reason,
                    source="api",
                    by=o.by,
                )
            )
        return out

    @router.post(
        "/v1/schedules/{schedule_id}/overrides",
        status_code=201,
        response_model=OverrideOut,
        summary="Someone covers the schedule for a while (Idempotency-Key honoured)",
    )
    async def add_override(
        schedule_id: str, body: OverrideIn, who: Responder, idempotency_key: IdempotencyKey = None
    ) -> OverrideOut:
        await paging.catch_up()
        schedule_or_404(schedule_id)
        if policy.person(body.person) is None:
            raise OverrideInvalid(f"person: no person {body.person!r} in the on-call policy")
        start, end = oncall.aware(body.start, "start"), oncall.aware(body.end, "end")
        if end <= start:
            raise OverrideInvalid("end: must be after start")
        if end - start > oncall.MAX_RANGE:
            raise OverrideInvalid(f"end: an override lasts at most {oncall.MAX_RANGE.days} days")
        override_id = (
            uuid.uuid5(NAMESPACE, f"{schedule_id}|{who.subject}|{idempotency_key}").hex
            if idempotency_key
            else uuid.uuid4().hex
        )
        known = paging.overrides.get(schedule_id, {}).get(override_id)
        if known is None:
            known = OnCallOverrideAdded(
                override_id=override_id,
                schedule_id=schedule_id,
                person=body.person,
                start=start,
                end=end,
                reason=body.reason,
                by=who.subject,
                occurred_at=paging.clock(),
            )
            await paging.store.commit([Write(overrides_stream(schedule_id), [known], None)])
            await paging.catch_up()
        return OverrideOut(
            id=known.override_id,
            person=known.person,
            start=known.start,
            end=known.end,
            reason=known.reason,
            source="api",
            by=known.by,
        )

    @router.delete("/v1/schedules/{schedule_id}/overrides/{override_id}", status_code=204)
    async def remove_override(schedule_id: str, override_id: str, who: Responder) -> Response:
        await paging.catch_up()
        if override_id not in paging.overrides.get(schedule_id, {}):
            raise NotFound(f"no override {override_id} added over the API on schedule {schedule_id!r}")
        removed = OnCallOverrideRemoved(
            override_id=override_id, schedule_id=schedule_id, by=who.subject, occurred_at=paging.clock()
        )
        await paging.store.commit([Write(overrides_stream(schedule_id), [removed], None)])
        await paging.catch_up()
        return Response(status_code=204)

    @router.get(
        "/v1/escalation-policies", response_model=list[EscalationPolicy], summary="Escalation policies"
    )
    async def list_policies(who: Viewer) -> list[EscalationPolicy]:
        return list(policy.escalation_policies)

    @router.get("/v1/escalation-policies/{policy_id}", response_model=EscalationPolicy)
    async def get_policy(policy_id: str, who: Viewer) -> EscalationPolicy:
        found = policy.escalation_policy(policy_id)
        if found is None:
            raise NotFound(f"no escalation policy {policy_id!r}")
        return found

    @router.get(
        "/v1/incidents/{incident_id}/escalation",
        response_model=EscalationOut,
        summary="An incident's escalation: who was paged, through what, when, and why it stopped",
    )
    async def get_escalation(incident_id: str, who: Viewer) -> EscalationOut:
        envelopes = await paging.store.read(escalation_stream(incident_id))
        if not envelopes:
            raise NotFound(f"no escalation for incident {incident_id} (not routed to a team with a policy)")
        state, _ = await paging.loads.load(escalation_stream(incident_id))
        return EscalationOut(
            incident_id=incident_id,
            policy_id=state.policy_id,
            team=state.team,
            urgency=state.urgency,
            running=state.running,
            step=state.step,
            round=state.round,
            next_due_at=state.next_due_at,
            stop_reason=state.stop_reason,
            stopped_by=state.stopped_by,
            events=[_shown(e.event.model_dump(mode="json")) for e in envelopes],
        )

    @router.get(
        "/v1/oncall/report",
        response_model=ReportOut,
        summary="MTTA per team and person, pages per person per week, pages outside business hours",
    )
    async def get_report(
        who: Viewer,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
    ) -> ReportOut:
        start = oncall.aware(start, "from") if start is not None else None
        end = oncall.aware(end, "to") if end is not None else None
        await paging.catch_up()
        r = oncall_report.report(paging.history, policy, start=start, end=end)

        def out(s: oncall_report.Summary) -> SummaryOut:
            return SummaryOut(
                count=s.count,
                mean_seconds=s.mean_seconds,
                median_seconds=s.median_seconds,
                p90_seconds=s.p90_seconds,
            )

        return ReportOut(
            start=start,
            end=end,
            pages=r.pages,
            out_of_hours=r.out_of_hours,
            mtta_by_team={k: out(v) for k, v in r.mtta_by_team.items()},
            mtta_by_person={k: out(v) for k, v in r.mtta_by_person.items()},
            pages_per_person_week=r.pages_per_person_week,
            out_of_hours_pages=r.out_of_hours_pages,
        )

    return router


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    """An escalation event for a reader: a page's acknowledge link is the paged person's credential."""
    if "ack_url" in data:
        data["ack_url"] = "(hidden)"
    return data

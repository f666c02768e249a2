"""Triage's problem-record endpoints: record, update (root cause, known error, workaround), link
incidents, and the suggestions the recurrence rule made."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from services.triage import problems
from services.triage.handlers import TriageHandlers
from services.triage.problems import Problem
from services.triage.timers import TriageIndex
from shared.errors import NotFound
from shared.web import Responder, Viewer

Name = Annotated[str, Field(min_length=1, max_length=255)]
Long = Annotated[str, Field(max_length=65536)]
Status = Literal["open", "known_error", "resolved", "closed"]


class NewProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=1024)]
    description: Long = ""
    service: Annotated[str, Field(max_length=255)] = ""
    root_cause: Long = ""
    workaround: Long = ""
    incident_ids: list[Name] = Field(default_factory=list, max_length=1000)
    suggestion_id: Name | None = None


class ProblemChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    root_cause: Long | None = None
    workaround: Long | None = None
    known_error: bool | None = None
    status: Status | None = None


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: Name


class ProblemOut(BaseModel):
    id: str
    title: str
    description: str
    service: str
    root_cause: str
    workaround: str
    known_error: bool
    status: str
    incident_ids: list[str]
    suggestion_id: str | None
    recorded_by: str
    recorded_at: datetime | None
    updated_at: datetime | None
    version: int


class SuggestionOut(BaseModel):
    suggestion_id: str
    service: str
    fingerprint: str
    incident_ids: list[str]
    count: int
    days: float
    reason: str
    suggested_at: datetime
    problem_id: str | None


def out(state: Problem, version: int) -> ProblemOut:
    if not state.exists:
        raise NotFound("no such problem")
    return ProblemOut(
        id=state.id,
        title=state.title,
        description=state.description,
        service=state.service,
        root_cause=state.root_cause,
        workaround=state.workaround,
        known_error=state.known_error,
        status=state.status,
        incident_ids=list(state.incident_ids),
        suggestion_id=state.suggestion_id,
        recorded_by=state.recorded_by,
        recorded_at=state.recorded_at,
        updated_at=state.updated_at,
        version=version,
    )


def problem_routes(handlers: TriageHandlers, index: TriageIndex) -> APIRouter:
    router = APIRouter(tags=["problems"])

    @router.post("/v1/problems", status_code=201, response_model=ProblemOut, summary="Record a problem")
    async def record(
        body: NewProblem,
        who: Responder,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> ProblemOut:
        if idempotency_key is not None:
            problem_id = hashlib.sha256(f"{who.subject}|{idempotency_key}".encode()).hexdigest()[:16]
            state, version = await handlers.problems.load(f"problem-{problem_id}")
            if state.exists:  # the same request again: the same answer, nothing recorded twice
                return out(state, version)
        else:
            problem_id = uuid.uuid4().hex[:16]
        now = handlers.clock()
        state, version = await handlers.change_problem(
            problem_id,
            lambda s: problems.record(
                s,
                problem_id,
                title=body.title,
                description=body.description,
                service=body.service,
                root_cause=body.root_cause,
                workaround=body.workaround,
                suggestion_id=body.suggestion_id,
                incident_ids=body.incident_ids,
                by=who.subject,
                now=now,
            ),
        )
        response.headers["Location"] = f"/v1/problems/{problem_id}"
        return out(state, version)

    @router.get("/v1/problems", response_model=list[ProblemOut], summary="Problem records")
    async def list_problems(
        who: Viewer, status: Annotated[Status | None, Query()] = None
    ) -> list[ProblemOut]:
        await index.catch_up()
        found = [p for p in index.problems.values() if p.exists and (status is None or p.status == status)]
        return [out(p, 0) for p in sorted(found, key=lambda p: p.recorded_at or datetime.min, reverse=True)]

    @router.get("/v1/problems/{problem_id}", response_model=ProblemOut)
    async def get_problem(problem_id: str, who: Viewer) -> ProblemOut:
        return out(*(await handlers.problems.load(f"problem-{problem_id}")))

    @router.patch(
        "/v1/problems/{problem_id}",
        response_model=ProblemOut,
        summary="Update root cause, workaround, known error or status (only the fields given)",
    )
    async def update(problem_id: str, body: ProblemChange, who: Responder) -> ProblemOut:
        now = handlers.clock()
        return out(
            *await handlers.change_problem(
                problem_id,
                lambda s: problems.update(
                    s,
                    by=who.subject,
                    root_cause=body.root_cause,
                    workaround=body.workaround,
                    known_error=body.known_error,
                    status=body.status,
                    now=now,
                ),
            )
        )

    @router.post("/v1/problems/{problem_id}/incidents", response_model=ProblemOut, summary="Link an incident")
    async def link(problem_id: str, body: Link, who: Responder) -> ProblemOut:
        now = handlers.clock()
        return out(
            *await handlers.change_problem(
                problem_id, lambda s: problems.link(s, body.incident_id, by=who.subject, now=now)
            )
        )

    @router.get(
        "/v1/problem-suggestions",
        response_model=list[SuggestionOut],
        summary="Problems the recurrence rule suggested (never created silently)",
    )
    async def suggestions(who: Viewer) -> list[SuggestionOut]:
        await index.catch_up()
        taken = {p.suggestion_id: p.id for p in index.problems.values() if p.suggestion_id}
        return [
            SuggestionOut(
                suggestion_id=s.suggestion_id,
                service=s.service,
                fingerprint=s.fingerprint,
                incident_ids=s.incident_ids,
                count=s.count,
                days=s.days,
                reason=s.reason,
                suggested_at=s.occurred_at,
                problem_id=taken.get(s.suggestion_id),
            )
            for s in reversed(index.suggestions)
        ]

    return router

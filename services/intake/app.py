"""Intake's HTTP API: alerts in (202 only once durably appended), integrations, heartbeats,
maintenance windows, and the incident lifecycle."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.intake import integrations, lifecycle, webhooks, workers
from services.intake.ack import ack_routes
from services.intake.domain import Incident
from services.intake.handlers import Intake, PreconditionFailed
from services.intake.heartbeats import Window
from services.intake.registry import DEFAULT_ID, Integration, Registry
from services.intake.senders import Senders
from services.intake.tokens import tokens_router
from shared.clock import Clock, system_clock
from shared.errors import NotFound
from shared.events import Event, Level, Severity
from shared.policy import load_policy
from shared.policy.intake import IntakePolicy
from shared.service import Wiring, build_app, credentials_from
from shared.settings import Settings
from shared.store import EventStore, open_store
from shared.web import Responder, Viewer

# Kept importable from here: other code and tests know these names.
CanonicalAlert = webhooks.CanonicalAlert
Accepted = webhooks.Accepted

IfMatch = Annotated[str | None, Header()]
IdempotencyKey = Annotated[str | None, Header(max_length=255)]


class NewIncident(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=1024)
    description: str = Field(default="", max_length=65536)
    service: str = Field(min_length=1, max_length=255)
    severity: Severity = Severity.HIGH
    impact: Level | None = None
    urgency: Level | None = None
    reporter: str | None = Field(
        default=None, min_length=1, max_length=255, description="Default: the caller"
    )


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="resolved", min_length=1, max_length=4096)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=4096)


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str = Field(min_length=1, max_length=255)


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=65536)


class IncidentOut(BaseModel):
    id: str
    status: str
    title: str
    service: str
    version: int
    firing_alerts: list[str]
    alerts: list[str]
    assignee: str
    on_hold: bool
    resolve_rule: str


class NoteOut(BaseModel):
    incident_id: str
    note_id: str
    version: int


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError:
        raise PreconditionFailed(f"If-Match must be an ETag this API returned, got {value!r}") from None


def _derived(who: str, key: str) -> str:
    return hashlib.sha256(f"{who}\n{key}".encode()).hexdigest()[:16]


def routes(intake: Intake) -> APIRouter:
    router = APIRouter(tags=["incidents"])

    async def _out(incident_id: str) -> IncidentOut:
        state, version = await intake.load(incident_id)
        if not state.exists:
            raise NotFound(f"no incident {incident_id}")
        return IncidentOut(
            id=state.id,
            status=str(state.status),
            title=state.title,
            service=state.service,
            version=version,
            firing_alerts=sorted(state.firing),
            alerts=list(state.alerts),
            assignee=state.assignee,
            on_hold=state.on_hold,
            resolve_rule=state.resolve_rule.value,
        )

    async def _change(
        incident_id: str, decide: Callable[[Incident], list[Event]], if_match: str | None, response: Response
    ) -> IncidentOut:
        version = await intake.change(incident_id, decide, _if_match(if_match))
        _etag(response, version)
        return await _out(incident_id)

    @router.post(
        "/v1/incidents", status_code=201, response_model=IncidentOut, summary="Open an incident by hand"
    )
    async def open_incident(
        body: NewIncident, who: Responder, response: Response, idempotency_key: IdempotencyKey = None
    ) -> IncidentOut:
        incident_id = intake.new_id() if idempotency_key is None else _derived(who.subject, idempotency_key)
        state, version = await intake.load(incident_id)
        if not state.exists:
            events = lifecycle.open_manually(
                incident_id=incident_id,
                title=body.title,
                description=body.description,
                service=body.service,
                severity=body.severity,
                impact=body.impact,
                urgency=body.urgency,
                reporter=body.reporter or who.subject,
                now=intake.clock(),
            )
            version = await intake.append(incident_id, events, 0)
        _etag(response, version)
        return await _out(incident_id)

    @router.get(
        "/v1/incidents/{incident_id}",
        response_model=IncidentOut,
        summary="An incident's lifecycle state (analytics has the full view)",
    )
    async def get_incident(incident_id: str, who: Viewer, response: Response) -> IncidentOut:
        out = await _out(incident_id)
        _etag(response, out.version)
        return out

    @router.post("/v1/incidents/{incident_id}/acknowledge", response_model=IncidentOut)
    async def acknowledge(
        incident_id: str, who: Responder, response: Response, if_match: IfMatch = None
    ) -> IncidentOut:
        now = intake.clock()
        return await _change(
            incident_id, lambda s: lifecycle.acknowledge(s, by=who.subject, now=now), if_match, response
        )

    @router.post("/v1/incidents/{incident_id}/resolve", response_model=IncidentOut)
    async def resolve(
        incident_id: str,
        who: Responder,
        response: Response,
        body: Resolution | None = None,
        if_match: IfMatch = None,
    ) -> IncidentOut:
        now, reason = intake.clock(), (body or Resolution()).reason
        return await _change(
            incident_id,
            lambda s: lifecycle.resolve(s, by=who.subject, reason=reason, now=now),
            if_match,
            response,
        )

    @router.post("/v1/incidents/{incident_id}/assign", response_model=IncidentOut)
    async def assign(
        incident_id: str, body: Assignment, who: Responder, response: Response, if_match: IfMatch = None
    ) -> IncidentOut:
        now = intake.clock()
        return await _change(
            incident_id,
            lambda s: lifecycle.assign(s, assignee=body.assignee, by=who.subject, now=now),
            if_match,
            response,
        )

    @router.post("/v1/incidents/{incident_id}/notes", status_code=201, response_model=NoteOut)
    async def add_note(
        incident_id: str,
        body: Note,
        who: Responder,
        response: Response,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> NoteOut:
        now = intake.clock()
        note_id = uuid.uuid4().hex[:16] if idempotency_key is None else _derived(who.subject, idempotency_key)
        version = await intake.change(
            incident_id,
            lambda s: lifecycle.add_note(s, text=body.text, by=who.subject, note_id=note_id, now=now),
            _if_match(if_match),
        )
        _etag(response, version)
        return NoteOut(incident_id=incident_id, note_id=note_id, version=version)

    @router.post("/v1/incidents/{incident_id}/close", response_model=IncidentOut)
    async def close(
        incident_id: str, who: Responder, response: Response, if_match: IfMatch = None
    ) -> IncidentOut:
        now = intake.clock()
        return await _change(
            incident_id, lambda s: lifecycle.close(s, by=who.subject, now=now), if_match, response
        )

    @router.post("/v1/incidents/{incident_id}/reopen", response_model=IncidentOut)
    async def reopen(
        incident_id: str,
        who: Responder,
        response: Response,
        body: Reason | None = None,
        if_match: IfMatch = None,
    ) -> IncidentOut:
        now, reason = intake.clock(), (body or Reason()).reason or "reopened"
        return await _change(
            incident_id,
            lambda s: lifecycle.reopen(s, by=who.subject, reason=reason, now=now),
            if_match,
            response,
        )

    @router.post("/v1/incidents/{incident_id}/hold", response_model=IncidentOut)
    async def hold(
        incident_id: str,
        who: Responder,
        response: Response,
        body: Reason | None = None,
        if_match: IfMatch = None,
    ) -> IncidentOut:
        now, reason = intake.clock(), (body or Reason()).reason or "on hold"
        return await _change(
            incident_id,
            lambda s: lifecycle.hold(s, by=who.subject, reason=reason, now=now),
            if_match,
            response,
        )

    @router.post("/v1/incidents/{incident_id}/resume", response_model=IncidentOut)
    async def resume(
        incident_id: str, who: Responder, response: Response, if_match: IfMatch = None
    ) -> IncidentOut:
        now = intake.clock()
        return await _change(
            incident_id, lambda s: lifecycle.resume(s, by=who.subject, now=now), if_match, response
        )

    return router


def _overload_status(request: Request) -> int:
    """PagerDuty-style clients retry 429; Alertmanager, Grafana and Datadog retry only 5xx."""
    return 429 if request.url.path.startswith("/v2/") else 503


def create_app(
    settings: Settings,
    *,
    store: EventStore | None = None,
    clock: Clock | None = None,
    policy: IntakePolicy | None = None,
    heartbeat_tick: float = 0.2,
) -> FastAPI:
    if store is None:
        store = open_store(settings.store_url_for("intake"), source="intake")
    if clock is None:
        clock = system_clock
    if policy is None:
        policy = load_policy(settings.policy).intake
    static = tuple(Window(w.id, w.service, w.starts_at, w.ends_at, w.reason) for w in policy.maintenance)
    intake = Intake(
        store,
        clock,
        lambda: uuid.uuid4().hex[:16],
        registry=Registry(),
        static_windows=static,
        sender_max_age=timedelta(seconds=policy.sender_time_max_age_seconds),
    )
    caught_up = asyncio.Event()
    credentials = credentials_from(settings)
    default = Integration(
        id=DEFAULT_ID,
        name="default",
        source_type="any",
        default_service=policy.default_service,
        resolve_rule=policy.resolve_rule,
    )
    senders = Senders(intake.registry, credentials, clock, default, intake.catch_up)
    wiring = Wiring(
        name="intake",
        settings=settings,
        store=store,
        clock=clock,
        overload_status=_overload_status,
        credentials=credentials,
        workers={
            "registry": lambda: workers.follow_own_log(store, intake, caught_up),
            "heartbeats": lambda: workers.heartbeat_timer(intake, caught_up, tick=heartbeat_tick),
        },
    )
    app = build_app(
        wiring,
        title="Lynchpin intake",
        description="Alerts in from monitoring tools; dedup, grouping and the incident lifecycle.",
    )
    app.include_router(webhooks.routes(intake, senders, policy))
    app.include_router(integrations.routes(intake, senders, policy))
    app.include_router(routes(intake))
    app.include_router(ack_routes(intake, credentials, clock))  # acknowledge links in pages
    app.include_router(tokens_router(store, credentials, clock))
    app.state.intake = intake
    return app

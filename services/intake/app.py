"""Intake's HTTP API: alerts in (202 only once durably appended), the incident lifecycle."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.intake import domain
from services.intake.handlers import Intake
from shared.auth import Principal, Role
from shared.clock import Clock, system_clock
from shared.errors import DomainError, NotFound
from shared.events import AlertStatus, Level, Severity
from shared.service import Wiring, build_app
from shared.settings import Settings
from shared.store import EventStore, open_store
from shared.web import Responder, Viewer, require

Integration = Annotated[Principal, Depends(require(Role.INTEGRATION))]


class CanonicalAlert(BaseModel):
    """Lynchpin's own alert format."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=1024)
    service: str = Field(min_length=1, max_length=255)
    severity: Severity
    status: AlertStatus = AlertStatus.FIRING
    dedup_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Same key, same alert; omitted: every post is a new alert",
    )
    description: str = Field(default="", max_length=65536)
    labels: dict[str, str] = Field(default_factory=dict, max_length=128)
    starts_at: datetime | None = Field(default=None, description="When the sender saw it start")
    ends_at: datetime | None = Field(default=None, description="When the sender saw it end (resolved)")


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    incident_id: str
    dedup_key: str
    action: Literal["opened", "repeated", "resolved", "recorded"]


class NewIncident(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=1024)
    description: str = Field(default="", max_length=65536)
    service: str = Field(min_length=1, max_length=255)
    severity: Severity = Severity.HIGH
    impact: Level | None = None
    urgency: Level | None = None


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="resolved", min_length=1, max_length=4096)


class IncidentOut(BaseModel):
    id: str
    status: str
    title: str
    service: str
    version: int
    firing_alerts: list[str]


def _action(decision: domain.Decision) -> Literal["opened", "repeated", "resolved", "recorded"]:
    if decision.opened:
        return "opened"
    if not decision.incident_events:
        return "recorded"
    if any(e.type == "AlertRepeated" for e in decision.incident_events):
        return "repeated"
    return "resolved"


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip().strip('"'))
    except ValueError:
        raise DomainError(f"If-Match must be an ETag this API returned, got {value!r}") from None


def routes(intake: Intake) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/alerts",
        status_code=202,
        response_model=Accepted,
        tags=["alerts"],
        summary="Post an alert in Lynchpin's canonical JSON",
    )
    async def post_alert(body: CanonicalAlert, who: Integration) -> Accepted:
        dedup_key = body.dedup_key or uuid.uuid4().hex
        alert = domain.Alert(
            key=f"canonical:{dedup_key}",
            dedup_key=dedup_key,
            title=body.title,
            service=body.service,
            severity=body.severity,
            status=body.status,
            source="canonical",
            description=body.description,
            labels=body.labels,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
        )
        decision = await intake.receive(alert)
        return Accepted(incident_id=decision.incident_id, dedup_key=dedup_key, action=_action(decision))

    @router.post(
        "/v1/incidents",
        status_code=201,
        response_model=IncidentOut,
        tags=["incidents"],
        summary="Open an incident by hand",
    )
    async def open_incident(body: NewIncident, who: Responder, response: Response) -> IncidentOut:
        incident_id = intake.new_id()
        events = domain.open_manually(
            incident_id=incident_id,
            title=body.title,
            description=body.description,
            service=body.service,
            severity=body.severity,
            impact=body.impact,
            urgency=body.urgency,
            reporter=who.subject,
            now=intake.clock(),
        )
        version = await intake.append(incident_id, events, 0)
        _etag(response, version)
        return await _out(incident_id)

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
        )

    @router.get(
        "/v1/incidents/{incident_id}",
        response_model=IncidentOut,
        tags=["incidents"],
        summary="An incident's lifecycle state (analytics has the full view)",
    )
    async def get_incident(incident_id: str, who: Viewer, response: Response) -> IncidentOut:
        out = await _out(incident_id)
        _etag(response, out.version)
        return out

    @router.post("/v1/incidents/{incident_id}/acknowledge", response_model=IncidentOut, tags=["incidents"])
    async def acknowledge(
        incident_id: str, who: Responder, response: Response, if_match: Annotated[str | None, Header()] = None
    ) -> IncidentOut:
        now = intake.clock()
        version = await intake.change(
            incident_id, lambda s: domain.acknowledge(s, by=who.subject, now=now), _if_match(if_match)
        )
        _etag(response, version)
        return await _out(incident_id)

    @router.post("/v1/incidents/{incident_id}/resolve", response_model=IncidentOut, tags=["incidents"])
    async def resolve(
        incident_id: str,
        body: Resolution,
        who: Responder,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> IncidentOut:
        now = intake.clock()
        version = await intake.change(
            incident_id,
            lambda s: domain.resolve(s, by=who.subject, reason=body.reason, now=now),
            _if_match(if_match),
        )
        _etag(response, version)
        return await _out(incident_id)

    return router


def _overload_status(request: Request) -> int:
    """PagerDuty-style clients retry 429; Alertmanager, Grafana and Datadog retry only 5xx."""
    return 429 if request.url.path.startswith("/v2/") else 503


def create_app(settings: Settings, *, store: EventStore | None = None, clock: Clock | None = None) -> FastAPI:
    if store is None:
        store = open_store(settings.store_url_for("intake"), source="intake")
    if clock is None:
        clock = system_clock
    intake = Intake(store, clock, lambda: uuid.uuid4().hex[:16])
    wiring = Wiring(
        name="intake", settings=settings, store=store, clock=clock, overload_status=_overload_status
    )
    app = build_app(
        wiring,
        title="Lynchpin intake",
        description="Alerts in from monitoring tools; dedup, grouping and the incident lifecycle.",
    )
    app.include_router(routes(intake))
    return app

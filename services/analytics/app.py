"""Analytics' HTTP API: the operators' query side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel

from services.analytics.readstore import ReadStore
from shared.bus.base import Bus
from shared.clock import Clock, system_clock
from shared.envelope import Envelope
from shared.errors import DomainError, NotFound
from shared.service import Wiring, build_app
from shared.settings import Settings
from shared.web import Viewer

SOURCES = ("intake", "triage", "comms")


class IncidentItem(BaseModel):
    id: str
    title: str
    service: str
    severity: str | None
    status: str
    priority: str | None
    major: str | None
    opened_at: str | None
    detected_at: str | None
    acknowledged_at: str | None
    resolved_at: str | None
    alert_count: int
    notification_count: int
    notifications_sent: int


class IncidentPage(BaseModel):
    items: list[IncidentItem]
    next: str | None


class TimelineItem(BaseModel):
    event_id: str
    type: str
    at: str
    by: str
    summary: str
    source: str


class IncidentDetail(IncidentItem):
    timeline: list[TimelineItem]


def routes(reads: ReadStore, bus: Bus) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/v1/incidents",
        response_model=IncidentPage,
        tags=["incidents"],
        summary="Incidents, newest first, with cursor pagination",
    )
    async def incidents(
        who: Viewer,
        status: Annotated[str | None, Query(max_length=32)] = None,
        priority: Annotated[str | None, Query(max_length=8)] = None,
        service: Annotated[str | None, Query(max_length=255)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
    ) -> dict[str, Any]:
        try:
            items, nxt = await reads.incidents(
                status=status, priority=priority, service=service, limit=limit, cursor=cursor
            )
        except ValueError as e:
            raise DomainError(f"cursor: {e}") from e
        return {"items": items, "next": nxt}

    @router.get(
        "/v1/incidents/{incident_id}",
        response_model=IncidentDetail,
        tags=["incidents"],
        summary="One incident with its timeline from every service",
    )
    async def incident(incident_id: str, who: Viewer) -> dict[str, Any]:
        doc = await reads.incident(incident_id)
        if doc is None:
            raise NotFound(f"no incident {incident_id}")
        return {**doc, "timeline": await reads.timeline(incident_id)}

    @router.get("/v1/status", tags=["status"], summary="Read-model freshness: lag per source")
    async def status(who: Viewer) -> dict[str, Any]:
        return {"lag": bus.lag(), "incidents": await reads.count()}

    return router


async def project(env: Envelope) -> Sequence[Envelope]:
    return [env]


def create_app(
    settings: Settings, *, reads: ReadStore | None = None, bus: Bus | None = None, clock: Clock | None = None
) -> FastAPI:
    if reads is None:
        url = settings.analytics_store_url or f"sqlite://{(settings.data_dir / 'analytics.db').absolute()}"
        reads = ReadStore(url.removeprefix("sqlite:").removeprefix("//"))
    if bus is None:
        from shared.bus import open_bus

        bus = open_bus(settings, sources=SOURCES)
    if clock is None:
        clock = system_clock
    wiring = Wiring(
        name="analytics",
        settings=settings,
        store=reads,
        clock=clock,
        bus=bus,
        sources=SOURCES,
        handler=project,
        relay=False,
    )
    app = build_app(
        wiring,
        title="Lynchpin analytics",
        description="Incidents, timelines, metrics and reports, projected from every service's log.",
    )
    app.include_router(routes(reads, bus))
    return app

"""Analytics' HTTP API: the operators' query side (incidents, metrics, reports, exports, dashboard)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field

from services.analytics import aggregates, dashboard, exports, feedback, reports
from services.analytics.policy import analytics_policy
from services.analytics.projections import INPUTS, IncidentView
from services.analytics.readstore import ReadStore
from services.analytics.rebuild import events_url, read_store_path
from services.analytics.results import Results
from shared.bus.base import Bus
from shared.clock import Clock, system_clock
from shared.envelope import Envelope
from shared.errors import DomainError, NotFound
from shared.policy.analytics import AnalyticsPolicy
from shared.service import Wiring, build_app
from shared.settings import Settings
from shared.store import EventStore, open_store
from shared.web import Viewer

SOURCES = ("intake", "triage", "comms")
MAJOR = ("proposed", "accepted", "rejected")


class IncidentItem(BaseModel):
    id: str
    title: str
    service: str
    severity: str | None
    category: str | None = None
    status: str
    priority: str | None
    major: str | None
    team: str | None = None
    assignee: str | None = None
    opened_at: str | None
    detected_at: str | None
    acknowledged_at: str | None
    resolved_at: str | None
    closed_at: str | None = None
    alert_count: int
    notification_count: int
    notifications_sent: int
    reopen_count: int = 0
    response_breached: bool = False
    resolution_breached: bool = False
    next_update_due: str | None = None
    problem_id: str | None = None


class IncidentPage(BaseModel):
    items: list[IncidentItem]
    next: str | None


class TimelineItem(BaseModel):
    event_id: str
    type: str
    at: str
    by: str
    summary: str
    why: str | None = None
    source: str


class IncidentDetail(IncidentItem):
    roles: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    timeline: list[TimelineItem]


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: int = Field(ge=1, le=5, description="1 (very dissatisfied) to 5 (very satisfied)")
    comment: str = Field(default="", max_length=4000)


class FeedbackAccepted(BaseModel):
    feedback_id: str
    incident_id: str
    score: int
    comment: str


Format = Annotated[str | None, Query(max_length=16, description="markdown, html, json or csv")]


def _filters(
    status: str | None, priority: str | None, service: str | None, team: str | None, major: str | None
) -> dict[str, Any]:
    if major is not None and major not in MAJOR:
        raise DomainError(f"major: must be one of {', '.join(MAJOR)}")
    return {"status": status, "priority": priority, "service": service, "team": team, "major": major}


def _window(start: datetime | None, end: datetime | None) -> None:
    for name, at in (("from", start), ("to", end)):
        if at is None:
            continue
        if at.tzinfo is None:
            raise DomainError(f"{name}: give a time zone (e.g. 2026-01-01T00:00:00Z)")
        try:
            at.astimezone(UTC)
        except OverflowError:
            raise DomainError(f"{name}: out of range in UTC (years 1 to 9999)") from None
    if start is not None and end is not None and end <= start:
        raise DomainError("to: must be after from")


def routes(
    reads: ReadStore,
    bus: Bus,
    events: EventStore,
    policy: AnalyticsPolicy,
    clock: Clock,
    results: Results,
    figures: aggregates.Metrics,
) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/v1/incidents",
        response_model=IncidentPage,
        tags=["incidents"],
        summary="Incidents, newest first, filtered, with cursor pagination",
    )
    async def incidents(
        who: Viewer,
        status: Annotated[str | None, Query(max_length=32)] = None,
        priority: Annotated[str | None, Query(max_length=8)] = None,
        service: Annotated[str | None, Query(max_length=255)] = None,
        team: Annotated[str | None, Query(max_length=255)] = None,
        major: Annotated[
            str | None, Query(max_length=16, description="proposed, accepted or rejected")
        ] = None,
        start: Annotated[datetime | None, Query(alias="from", description="opened at or after")] = None,
        end: Annotated[datetime | None, Query(alias="to", description="opened before")] = None,
        q: Annotated[str | None, Query(max_length=200, description="text in id, title, service...")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
    ) -> dict[str, Any]:
        _window(start, end)
        try:
            items, nxt = await reads.incidents(
                **_filters(status, priority, service, team, major),
                opened_from=start,
                opened_to=end,
                text=q,
                limit=limit,
                cursor=cursor,
            )
        except ValueError as e:
            raise DomainError(f"cursor: {e}") from e
        return {"items": items, "next": nxt}

    @router.get(
        "/v1/incidents/{incident_id}",
        response_model=IncidentDetail,
        tags=["incidents"],
        summary="One incident with its timeline from every service (who, when, why)",
    )
    async def incident(incident_id: str, who: Viewer) -> dict[str, Any]:
        doc = await reads.incident(incident_id)
        if doc is None:
            raise NotFound(f"no incident {incident_id}")
        return {**doc, "timeline": await reads.timeline(incident_id)}

    @router.post(
        "/v1/incidents/{incident_id}/feedback",
        response_model=FeedbackAccepted,
        status_code=201,
        tags=["incidents"],
        summary="Record customer satisfaction (1-5) with how the incident was handled",
    )
    async def give_feedback(
        incident_id: str,
        body: Feedback,
        who: Viewer,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> Response:
        if await reads.incident(incident_id) is None:
            raise NotFound(f"no incident {incident_id}")
        event, new = await feedback.record(
            events,
            reads,
            incident_id=incident_id,
            score=body.score,
            comment=body.comment,
            by=who.subject,
            now=clock(),
            idempotency_key=idempotency_key,
        )
        out = FeedbackAccepted(
            feedback_id=event.feedback_id, incident_id=incident_id, score=event.score, comment=event.comment
        )
        return JSONResponse(out.model_dump(), status_code=201 if new else 200)

    @router.get("/v1/metrics", tags=["metrics"], summary="MTTA, MTTR, MTTD, MTBF, SLA %, volumes, CSAT")
    async def metrics(
        request: Request,
        who: Viewer,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
        service: Annotated[str | None, Query(max_length=255)] = None,
        priority: Annotated[str | None, Query(max_length=8)] = None,
        format: Format = None,
    ) -> Response:
        _window(start, end)
        kind = exports.negotiate(request, format, offered=("json", "csv"))

        async def make(now: datetime) -> dict[str, Any]:
            result = await figures(now=now, start=start, end=end, service=service, priority=priority)
            result["filters"] = {"service": service, "priority": priority}
            return result

        key = ("metrics", start, end, service, priority)
        result = await results.get(key, generation=reads.generation, now=clock(), make=make)
        if kind == "csv":
            return PlainTextResponse(exports.metrics_csv(result), media_type=exports.MEDIA["csv"])
        return Response(orjson.dumps(result), media_type="application/json")

    @router.get("/v1/export/incidents", tags=["export"], summary="Every incident (filtered) as CSV or JSON")
    async def export_incidents(
        request: Request,
        who: Viewer,
        status: Annotated[str | None, Query(max_length=32)] = None,
        priority: Annotated[str | None, Query(max_length=8)] = None,
        service: Annotated[str | None, Query(max_length=255)] = None,
        team: Annotated[str | None, Query(max_length=255)] = None,
        major: Annotated[str | None, Query(max_length=16)] = None,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        format: Format = None,
    ) -> Response:
        _window(start, end)
        kind = exports.negotiate(request, format, offered=("csv", "json"))
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page, cursor = await reads.incidents(
                **_filters(status, priority, service, team, major),
                opened_from=start,
                opened_to=end,
                text=q,
                limit=500,
                cursor=cursor,
            )
            items += page
            if cursor is None:
                break
        name = "incidents." + kind
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if kind == "csv":
            return PlainTextResponse(
                exports.incidents_csv(items), media_type=exports.MEDIA["csv"], headers=headers
            )
        return Response(orjson.dumps(items), media_type="application/json", headers=headers)

    @router.get("/v1/export/metrics", tags=["export"], summary="The metrics as CSV (metric,value) or JSON")
    async def export_metrics(
        request: Request,
        who: Viewer,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
        service: Annotated[str | None, Query(max_length=255)] = None,
        priority: Annotated[str | None, Query(max_length=8)] = None,
        format: Format = None,
    ) -> Response:
        response = await metrics(request, who, start, end, service, priority, format or "csv")
        response.headers["Content-Disposition"] = f'attachment; filename="metrics.{format or "csv"}"'
        return response

    def rendered(doc: reports.Document, kind: str) -> Response:
        if kind == "html":
            return HTMLResponse(reports.html(doc))
        return PlainTextResponse(reports.markdown(doc), media_type=exports.MEDIA["markdown"])

    @router.get(
        "/v1/reports/status",
        tags=["reports"],
        summary="Status report of every open incident (Markdown or HTML: Accept or ?format=)",
        response_class=Response,
    )
    async def status_report(request: Request, who: Viewer, format: Format = None) -> Response:
        kind = exports.negotiate(request, format, offered=("markdown", "html"))
        views = await reads.views(open_only=True)
        return rendered(reports.status_report(views, policy=policy, now=clock()), kind)

    @router.get(
        "/v1/reports/incidents/{incident_id}/review",
        tags=["reports"],
        summary="Post-incident review draft (Markdown or HTML: Accept or ?format=)",
        response_class=Response,
    )
    async def review(request: Request, incident_id: str, who: Viewer, format: Format = None) -> Response:
        kind = exports.negotiate(request, format, offered=("markdown", "html"))
        doc = await reads.incident(incident_id)
        if doc is None:
            raise NotFound(f"no incident {incident_id}")
        view = IncidentView.from_json(doc)
        timeline = await reads.timeline(incident_id)
        return rendered(reports.review(view, timeline, policy=policy, now=clock()), kind)

    @router.get("/v1/status", tags=["status"], summary="Read-model freshness: lag per source")
    async def status(who: Viewer) -> dict[str, Any]:
        now = clock()
        fresh: dict[str, dict[str, Any]] = dict(await reads.freshness())
        for row in fresh.values():
            behind = (now - datetime.fromisoformat(row["last_recorded_at"])).total_seconds()
            row["seconds_behind"] = max(0.0, behind)
        return {"lag": bus.lag(), "sources": fresh, "incidents": await reads.count()}

    return router


class LagCollector(Collector):
    """Prometheus: events waiting per source, and when the newest handled one was recorded."""

    def __init__(self, bus: Bus, reads: ReadStore) -> None:
        self.bus = bus
        self.reads = reads

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "lynchpin_analytics_lag_events", "Events known to exist but not yet projected", labels=["source"]
        )
        for source, n in sorted(self.bus.lag().items()):
            lag.add_metric([source], n)
        yield lag
        latest = GaugeMetricFamily(
            "lynchpin_analytics_last_event_timestamp_seconds",
            "When the newest projected event of each source was recorded (Unix time)",
            labels=["source"],
        )
        for source, at in sorted(self.reads.latest.items()):
            latest.add_metric([source], at.timestamp())
        yield latest


async def project(env: Envelope) -> Sequence[Envelope]:
    return [env]


def create_app(
    settings: Settings,
    *,
    reads: ReadStore | None = None,
    bus: Bus | None = None,
    clock: Clock | None = None,
    events: EventStore | None = None,
    policy: AnalyticsPolicy | None = None,
) -> FastAPI:
    if policy is None:
        policy = analytics_policy(settings)
    if reads is None:
        reads = ReadStore(read_store_path(settings), policy=policy)
    else:
        reads.measure_under(policy)
    if bus is None:
        from shared.bus import open_bus

        bus = open_bus(settings, sources=SOURCES)
    if clock is None:
        clock = system_clock
    if events is None:
        events = open_store(events_url(settings), source=feedback.SOURCE)
    own_log = events

    async def follow_own_log() -> None:
        await feedback.follow(own_log, reads)

    wiring = Wiring(
        name="analytics",
        settings=settings,
        store=reads,
        clock=clock,
        bus=bus,
        sources=SOURCES,
        handler=project,
        inputs=INPUTS,
        relay=False,
        resources=[events],
        workers={"feedback": follow_own_log},
    )
    app = build_app(
        wiring,
        title="Lynchpin analytics",
        description="Incidents, timelines, metrics, reports and the operator dashboard, projected from every "
        "service's log.",
    )
    results = Results(settings.analytics_results_seconds)  # services.analytics.results
    figures = aggregates.Metrics(reads, policy)  # services.analytics.aggregates
    app.include_router(routes(reads, bus, events, policy, clock, results, figures))
    app.include_router(dashboard.routes(reads, bus, policy, clock, results, figures))
    app.mount("/dashboard/static", StaticFiles(directory=dashboard.STATIC), name="dashboard-static")
    app.state.metrics.registry.register(LagCollector(bus, reads))
    return app

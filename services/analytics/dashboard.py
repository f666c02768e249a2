"""The operator dashboard: server-rendered HTML with inline SVG charts; refreshes itself (no JavaScript).

Open it in a browser with the token in the query once (`/dashboard?key=<token>`): the answer moves the
token into an HttpOnly, SameSite=Strict cookie and redirects to the same page without it, so that the
token does not stay in the address bar, the history or bookmarks, nor in the links of the pages.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.analytics import aggregates, charts
from services.analytics.metrics import sla_outcome
from services.analytics.projections import IncidentView
from services.analytics.readstore import ReadStore
from services.analytics.results import Results
from shared.bus.base import Bus
from shared.clock import Clock
from shared.errors import NotFound
from shared.policy.analytics import AnalyticsPolicy
from shared.web import KEY_COOKIE, Viewer

HERE = Path(__file__).parent
STATIC = HERE / "static"
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
OPEN_SHOWN = 50
"""Open incidents listed on the dashboard (the most urgent first); the tile counts them all."""


def templates() -> Environment:
    return Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
    )


def short(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def url(path: str, params: dict[str, str] | None = None) -> str:
    return path + ("?" + urlencode(params) if params else "")


def key_to_cookie(request: Request) -> RedirectResponse | None:
    """A page opened with `?key=` (already authenticated): the same page without it, the key in a cookie."""
    key = request.query_params.get("key")
    if key is None:
        return None
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
    answer = RedirectResponse(request.url.path + ("?" + urlencode(rest) if rest else ""), status_code=303)
    answer.set_cookie(
        KEY_COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    return answer


def routes(
    reads: ReadStore,
    bus: Bus,
    policy: AnalyticsPolicy,
    clock: Clock,
    results: Results,
    figures: aggregates.Metrics,
    *,
    days: int = 30,
) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    env = templates()

    def common(now: datetime) -> dict[str, Any]:
        return {
            "refresh": policy.dashboard_refresh_seconds,
            "static": "/dashboard/static",
            "home": url("/dashboard", None),
            "now": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "now_dt": now,
            "lag": bus.lag(),
            "fmt": short,
            "stamp": lambda iso: datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S"),
            "pct": lambda p: "n/a" if p is None else f"{p:.0f} %",
            "age": lambda at: short((now - at).total_seconds()) if at else "n/a",
            "link": lambda incident_id: url(f"/dashboard/incidents/{incident_id}", None),
            "export": lambda what, fmt: url(f"/v1/export/{what}", {"format": fmt}),
            "status_report": url("/v1/reports/status", {"format": "html"}),
        }

    @router.get("/dashboard", response_class=HTMLResponse, summary="The operator dashboard (HTML)")
    async def dashboard(
        request: Request, who: Viewer, window: Annotated[int, Query(ge=1, le=366)] = days
    ) -> Response:
        if moved := key_to_cookie(request):
            return moved
        now = clock()

        async def make(at: datetime) -> tuple[dict[str, Any], int, list[IncidentView], list[IncidentView]]:
            m = await figures(now=at, start=at - timedelta(days=window))
            return (m, *await reads.open_views(first=OPEN_SHOWN))

        m, open_count, majors, open_ = await results.get(
            ("dashboard", window), generation=reads.generation, now=now, make=make
        )
        volume = {p: float(m["volume"]["by_priority"].get(p, 0)) for p in PRIORITIES}
        services = dict(sorted(m["volume"]["by_service"].items(), key=lambda kv: -kv[1])[:8])
        drawn = {
            "mttr": charts.line_chart(
                "Median MTTR per day, minutes",
                [(p["day"], (p["median_seconds"] or 0) / 60) for p in m["mttr_trend"]],
                unit="m",
            ),
            "volume": charts.bar_chart("Incidents by priority", volume),
            "sla": charts.percent_bars(
                "SLA compliance",
                {
                    "Response": m["sla"]["response"]["percent"],
                    "Resolution": m["sla"]["resolution"]["percent"],
                },
            ),
            "services": charts.bar_chart("Incidents by service", {k: float(v) for k, v in services.items()}),
        }
        page = env.get_template("dashboard.html").render(
            **common(now), m=m, open=open_, open_count=open_count, majors=majors, charts=drawn, days=window
        )
        return HTMLResponse(page)

    @router.get(
        "/dashboard/incidents/{incident_id}",
        response_class=HTMLResponse,
        summary="One incident's page (HTML)",
    )
    async def incident_page(request: Request, incident_id: str, who: Viewer) -> Response:
        if moved := key_to_cookie(request):
            return moved
        doc = await reads.incident(incident_id)
        if doc is None:
            raise NotFound(f"no incident {incident_id}")
        now = clock()
        v = IncidentView.from_json(doc)
        phases = {}
        if v.opened_at is not None:
            phases["acknowledge"] = ((v.acknowledged_at or now) - v.opened_at).total_seconds() / 60
            phases["resolve"] = ((v.resolved_at or now) - v.opened_at).total_seconds() / 60
        page = env.get_template("incident.html").render(
            **common(now),
            v=v,
            sla=sla_outcome(v, policy, now=now),
            timeline=await reads.timeline(incident_id),
            chart=charts.bar_chart("Minutes to acknowledge and to resolve", phases, unit="m"),
            review_md=url(f"/v1/reports/incidents/{incident_id}/review", {"format": "markdown"}),
            review_html=url(f"/v1/reports/incidents/{incident_id}/review", {"format": "html"}),
        )
        return HTMLResponse(page)

    return router

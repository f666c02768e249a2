"""Analytics over HTTP, in-process: filters and pages, timelines, metrics, feedback, reports, exports,
the dashboard and the freshness of the read models."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.analytics.app import SOURCES, create_app
from services.analytics.readstore import ReadStore
from shared.bus.base import tracking_name
from shared.bus.embedded import EmbeddedBus
from shared.clock import FakeClock
from shared.events import parse_event
from shared.policy.analytics import AnalyticsPolicy
from shared.settings import Settings
from shared.store import EventStore, Write
from shared.store.memory import MemoryStore
from tests.helpers import eventually, running

ADMIN = "admin-token"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
POLICY = AnalyticsPolicy(excluded_services=("sandbox",))
"""The drills run on the sandbox service: left out of the metrics."""


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


def ev(type_: str, incident: str, at: str, **data: Any) -> tuple[str, Any]:
    return incident, parse_event({"type": type_, "incident_id": incident, "occurred_at": at, **data})


def opened(incident: str, at: str, service: str, title: str, **extra: Any) -> tuple[str, Any]:
    return ev(
        "IncidentOpened",
        incident,
        at,
        title=title,
        service=service,
        severity="critical",
        source="am",
        reporter="alertmanager",
        **extra,
    )


def prio(incident: str, at: str, priority: str, service: str, title: str) -> tuple[str, Any]:
    return ev(
        "PriorityAssigned",
        incident,
        at,
        priority=priority,
        impact="high",
        urgency="high",
        reason="matrix",
        by="triage",
        title=title,
        service=service,
    )


def scenario() -> dict[str, list[tuple[str, Any]]]:
    """A major incident still open, two resolved ones, and a drill that the metrics leave out."""
    return {
        "intake": [
            opened("inc-a", ago(hours=3), "db", "Primary database down", detected_at=ago(hours=3, minutes=4)),
            ev(
                "AlertAttached",
                "inc-a",
                ago(hours=3),
                alert_key="am:db",
                dedup_key="db",
                title="db down",
                severity="critical",
                source="alertmanager",
                reason="new key: no open incident for it",
            ),
            ev("IncidentAcknowledged", "inc-a", ago(hours=2, minutes=55), by="ann"),
            opened("inc-b", ago(days=1), "api", "API latency"),
            ev("IncidentAcknowledged", "inc-b", ago(days=1, minutes=-10), by="bob"),
            ev("IncidentResolved", "inc-b", ago(days=1, minutes=-90), by="bob", reason="rolled back"),
            opened("inc-c", ago(days=2), "web", "Checkout errors"),
            ev("IncidentAcknowledged", "inc-c", ago(days=2, minutes=-20), by="cy"),
            ev("IncidentResolved", "inc-c", ago(days=2, minutes=-300), by="cy", reason="config fixed"),
            opened("inc-d", ago(hours=1), "sandbox", "Fire drill"),
        ],
        "triage": [
            prio("inc-a", ago(hours=3), "P1", "db", "Primary database down"),
            ev("IncidentRouted", "inc-a", ago(hours=3), team="dba", rule="db", reason="service db"),
            ev(
                "MajorIncidentProposed",
                "inc-a",
                ago(hours=2, minutes=50),
                reason="all customers",
                by="ann",
                automatic=False,
            ),
            ev(
                "MajorIncidentAccepted",
                "inc-a",
                ago(hours=2, minutes=45),
                by="mia",
                business_impact="no orders can be taken",
                notes="bridge open",
            ),
            ev(
                "RoleAssigned",
                "inc-a",
                ago(hours=2, minutes=45),
                role="incident_manager",
                person="mia",
                by="mia",
            ),
            prio("inc-b", ago(days=1), "P2", "api", "API latency"),
            ev("IncidentRouted", "inc-b", ago(days=1), team="platform", rule="api", reason="service api"),
            prio("inc-c", ago(days=2), "P3", "web", "Checkout errors"),
            prio("inc-d", ago(hours=1), "P1", "sandbox", "Fire drill"),
        ],
        "comms": [
            ev(
                "UpdateCadenceStarted",
                "inc-a",
                ago(hours=2, minutes=45),
                every_seconds=1800,
                next_due_at=ago(hours=2, minutes=15),
                reason="major",
            ),
            ev(
                "StatusUpdatePublished",
                "inc-a",
                ago(minutes=20),
                update_id="u1",
                audience="executive",
                template="exec",
                subject="Database: failover under way",
                text="...",
                by="carol",
                due_at=ago(minutes=25),
                latency_seconds=300.0,
                next_due_at=(NOW + timedelta(minutes=10)).isoformat(),
            ),
            ev(
                "NotificationPlanned",
                "inc-a",
                ago(hours=3),
                notification_id="n1",
                cause_event_id="x",
                cause_type="IncidentOpened",
                recipient="responders",
                channel="email",
                audience="responders",
                subject="[P1] Primary database down",
                body="...",
            ),
            ev(
                "NotificationSent",
                "inc-a",
                ago(hours=3),
                notification_id="n1",
                channel="email",
                recipient="responders",
                attempt=1,
            ),
        ],
    }


async def seed(stores: dict[str, EventStore]) -> None:
    for source, items in scenario().items():
        await stores[source].commit([Write(f"{source}-{i}", [e], None) for i, e in items])


@asynccontextmanager
async def analytics(tmp: Any = None) -> AsyncIterator[tuple[FastAPI, dict[str, EventStore], FakeClock]]:
    """The analytics app on memory stores, fed the scenario, caught up."""
    stores: dict[str, EventStore] = {s: MemoryStore(source=s) for s in (*SOURCES, "analytics")}
    await seed(stores)
    clock = FakeClock(NOW)
    app = create_app(
        Settings(admin_token=ADMIN, secret="s" * 32),
        reads=ReadStore(":memory:"),
        bus=EmbeddedBus({s: stores[s] for s in SOURCES}, poll=0.05),
        events=stores["analytics"],
        clock=clock,
        policy=POLICY,
    )
    yield app, stores, clock


async def caught_up(app: FastAPI, stores: dict[str, EventStore]) -> None:
    reads: ReadStore = app.state.store

    async def done() -> bool:
        for source in SOURCES:
            end = (await stores[source].read_all(limit=10_000))[-1].checkpoint
            if await reads.checkpoint(tracking_name("analytics", source)) != end:
                return False
        return True

    await eventually(done)


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    async with analytics() as (app, stores, _), running({"analytics": app}, ADMIN) as clients:
        await caught_up(app, stores)
        yield clients["analytics"]


async def ids(c: httpx.AsyncClient, **params: Any) -> list[str]:
    r = await c.get("/v1/incidents", params=params)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()["items"]]


async def test_incidents_filter_by_status_priority_service_team_major_time_and_text(
    api: httpx.AsyncClient,
) -> None:
    assert await ids(api) == ["inc-d", "inc-a", "inc-b", "inc-c"]
    assert await ids(api, status="resolved") == ["inc-b", "inc-c"]
    assert await ids(api, status="open,acknowledged") == ["inc-d", "inc-a"]
    assert await ids(api, priority="P1") == ["inc-d", "inc-a"]
    assert await ids(api, service="web,sandbox") == ["inc-d", "inc-c"]
    assert await ids(api, team="dba") == ["inc-a"]
    assert await ids(api, major="accepted") == ["inc-a"]
    assert await ids(api, **{"from": ago(days=1, hours=1), "to": ago(hours=2)}) == ["inc-a", "inc-b"]
    assert await ids(api, q="checkout") == ["inc-c"]
    assert await ids(api, q="100%") == []


async def test_pages_follow_the_cursor_to_the_end(api: httpx.AsyncClient) -> None:
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/v1/incidents", params=params)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["inc-d", "inc-a", "inc-b", "inc-c"]


async def test_an_incident_not_yet_opened_here_comes_last_and_the_pages_reach_it() -> None:
    """Triage's first event about an incident can be projected before intake's IncidentOpened: the
    incident has no opening time yet, and the list shows it after every opened one, page by page too."""
    async with analytics() as (app, stores, _):
        early = prio("inc-e", ago(minutes=5), "P2", "api", "Seen by triage first")[1]
        await stores["triage"].commit([Write("triage-inc-e", [early], None)])
        async with running({"analytics": app}, ADMIN) as clients:
            await caught_up(app, stores)
            api = clients["analytics"]
            seen, cursor = [], None
            while True:
                params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
                page = (await api.get("/v1/incidents", params=params)).json()
                seen += [i["id"] for i in page["items"]]
                cursor = page["next"]
                if cursor is None:
                    break
            assert await ids(api) == seen == ["inc-d", "inc-a", "inc-b", "inc-c", "inc-e"]


@pytest.mark.parametrize(
    "params",
    [{"cursor": "not-a-cursor"}, {"major": "maybe"}, {"from": "2026-11-23T10:00:00"}, {"limit": 0}],
)
async def test_bad_queries_are_problems_not_errors(api: httpx.AsyncClient, params: dict[str, Any]) -> None:
    r = await api.get("/v1/incidents", params=params)
    assert r.status_code in (400, 422)
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_detail_has_the_whole_timeline_in_order_with_who_and_why(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/v1/incidents/inc-a")).json()
    assert (doc["priority"], doc["team"], doc["major"], doc["status"]) == (
        "P1",
        "dba",
        "accepted",
        "acknowledged",
    )
    assert doc["roles"][0]["who"] == "mia"
    timeline = doc["timeline"]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    first = [e["type"] for e in timeline[:4]]
    assert first == ["IncidentOpened", "AlertAttached", "PriorityAssigned", "IncidentRouted"]
    attached = next(e for e in timeline if e["type"] == "AlertAttached")
    assert attached["why"] == "new key: no open incident for it"
    accepted = next(e for e in timeline if e["type"] == "MajorIncidentAccepted")
    assert (accepted["by"], accepted["why"], accepted["source"]) == (
        "mia",
        "no orders can be taken",
        "triage",
    )
    assert (await api.get("/v1/incidents/nope")).status_code == 404


async def test_metrics_leave_out_drills_and_honour_the_window(api: httpx.AsyncClient) -> None:
    m = (await api.get("/v1/metrics")).json()
    assert m["incidents"] == 3  # the drill is excluded by policy
    assert m["mtta_seconds"]["mean"] == pytest.approx((5 + 10 + 20) / 3 * 60)
    assert m["mttr_seconds"]["median"] == pytest.approx(195 * 60)  # 90 and 300 minutes
    assert m["mttd_seconds"] == {"count": 1, "mean": 240.0, "median": 240.0, "p90": 240.0}
    assert m["major_incidents"] == 1
    assert m["volume"]["by_priority"] == {"P1": 1, "P2": 1, "P3": 1}
    assert m["status_update_latency_seconds"]["mean"] == 300.0
    recent = (await api.get("/v1/metrics", params={"from": ago(days=1, hours=1)})).json()
    assert recent["incidents"] == 2
    assert (await api.get("/v1/metrics", params={"service": "api"})).json()["incidents"] == 1
    bad = await api.get("/v1/metrics", params={"from": ago(hours=1), "to": ago(hours=2)})
    assert bad.status_code == 400


async def test_feedback_is_recorded_once_per_key_and_counts_in_satisfaction(api: httpx.AsyncClient) -> None:
    r = await api.post(
        "/v1/incidents/inc-b/feedback",
        json={"score": 4, "comment": "quick"},
        headers={"Idempotency-Key": "k1"},
    )
    assert r.status_code == 201, r.text
    again = await api.post(
        "/v1/incidents/inc-b/feedback",
        json={"score": 4, "comment": "quick"},
        headers={"Idempotency-Key": "k1"},
    )
    assert again.status_code == 200 and again.json()["feedback_id"] == r.json()["feedback_id"]
    assert (await api.post("/v1/incidents/inc-c/feedback", json={"score": 2})).status_code == 201
    assert (await api.post("/v1/incidents/inc-b/feedback", json={"score": 6})).status_code == 422
    assert (await api.post("/v1/incidents/nope/feedback", json={"score": 3})).status_code == 404
    csat = (await api.get("/v1/metrics")).json()["csat"]
    assert (csat["responses"], csat["mean"], csat["satisfied_percent"]) == (2, 3.0, 50.0)
    timeline = (await api.get("/v1/incidents/inc-b")).json()["timeline"]
    assert timeline[-1]["summary"] == "Customer satisfaction 4/5" and timeline[-1]["why"] == "quick"


async def test_reports_in_markdown_and_html(api: httpx.AsyncClient) -> None:
    md = await api.get("/v1/reports/status")
    assert md.headers["content-type"].startswith("text/markdown")
    assert "2 open incidents" in md.text and "| inc-a | P1 | MAJOR Primary database down |" in md.text
    html = await api.get("/v1/reports/status", headers={"Accept": "text/html"})
    assert html.headers["content-type"].startswith("text/html") and "<table>" in html.text
    review = await api.get("/v1/reports/incidents/inc-a/review", params={"format": "html"})
    assert "<h2>Roles and tenure</h2>" in review.text and "mia" in review.text
    review_md = (await api.get("/v1/reports/incidents/inc-a/review", params={"format": "md"})).text
    assert "## SLA outcome" in review_md and "Business impact: no orders can be taken" in review_md
    assert (await api.get("/v1/reports/status", params={"format": "pdf"})).status_code == 400
    assert (await api.get("/v1/reports/incidents/nope/review")).status_code == 404


async def test_exports_of_incidents_and_metrics(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/export/incidents", params={"format": "csv", "status": "resolved"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["id"] for row in rows] == ["inc-b", "inc-c"]
    assert rows[0]["team"] == "platform" and rows[0]["priority"] == "P2"
    assert "attachment" in r.headers["content-disposition"]
    assert len((await api.get("/v1/export/incidents", params={"format": "json"})).json()) == 4
    m = await api.get("/v1/export/metrics")
    table = dict(csv.reader(io.StringIO(m.text)))
    assert table["incidents"] == "3" and table["volume.by_service.db"] == "1"
    assert (await api.get("/v1/export/metrics", params={"format": "json"})).json()["incidents"] == 3


async def test_status_and_prometheus_show_lag_per_source(api: httpx.AsyncClient) -> None:
    status = (await api.get("/v1/status")).json()
    assert status["lag"] == {"intake": 0, "triage": 0, "comms": 0}
    assert set(status["sources"]) == {"intake", "triage", "comms"}
    assert status["incidents"] == 4
    text = (await api.get("/metrics")).text
    assert 'lynchpin_analytics_lag_events{source="intake"} 0.0' in text
    assert 'lynchpin_analytics_last_event_timestamp_seconds{source="comms"}' in text


async def test_dashboard_pages_render_charts_without_javascript(api: httpx.AsyncClient) -> None:
    r = await api.get("/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert '<meta http-equiv="refresh" content="30">' in page
    assert page.count('<svg class="chart"') == 4 and "<script" not in page
    assert "Primary database down" in page and "(overdue)" not in page
    assert "2026-11-23 12:10 UTC" in page  # the major incident's next update
    one = await api.get("/dashboard/incidents/inc-a")
    assert one.status_code == 200 and "MajorIncidentAccepted" not in one.text
    assert "Accepted as a major incident" in one.text and ADMIN not in one.text
    assert (await api.get("/dashboard/static/dashboard.css")).status_code == 200
    async with httpx.AsyncClient(transport=api._transport, base_url="http://a") as browser:
        assert (await browser.get("/dashboard")).status_code == 401
        assert (await browser.get("/dashboard", params={"key": "made-up"})).status_code == 401
        # A link with the key: the key moves into a cookie, and the page is served without it in its address.
        moved = await browser.get("/dashboard/incidents/inc-a", params={"key": ADMIN, "x": "1"})
        assert moved.status_code == 303 and moved.headers["location"] == "/dashboard/incidents/inc-a?x=1"
        cookie = moved.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        page = await browser.get(moved.headers["location"])
        assert page.status_code == 200 and "Accepted as a major incident" in page.text
        assert ADMIN not in page.text
        # The cookie is a credential for reading only: it never authorises a change.
        posted = await browser.post("/v1/incidents/inc-a/feedback", json={"rating": 5})
        assert posted.status_code == 401

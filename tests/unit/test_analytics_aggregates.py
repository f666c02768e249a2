"""Metrics from the read store's figures and per-day parts equal `metrics.compute` over the views.

`metrics.compute` is the definition (plain Python over incident views); `aggregates.Metrics` is
what the service answers with. Generated incidents (clock skews, holds, running SLA clocks, business
hours, triage's targets and calendars, exclusions) and generated questions (windows on and off
midnight, filters, instants before and after clocks fall due) must give the same answer: every
figure equal, means within a rounding of the last bit (exact sums of microseconds, divided).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.analytics.aggregates import Metrics
from services.analytics.metrics import compute, due_after, elapsed, micros, sla_outcome, sla_standing
from services.analytics.projections import IncidentView
from services.analytics.readstore import SCHEMA, UPSERT_INCIDENT, incident_row
from shared.policy.analytics import AnalyticsPolicy, BusinessHours

T0 = datetime(2026, 11, 20, 6, tzinfo=UTC)  # a Friday
SPAN_MINUTES = 16 * 24 * 60
POLICIES = {
    "default": AnalyticsPolicy(),
    "strict": AnalyticsPolicy(
        excluded_services=("sandbox",),
        excluded_categories=("drill",),
        response_targets={"P1": 60, "P2": 600, "P3": 3600},
        business_hours_priorities=("P2", "P3"),
        business_hours=BusinessHours(timezone="Europe/Berlin", start=time(8), end=time(0)),
        calendars={"night": BusinessHours(days=(0, 1, 2, 3, 4, 5, 6), start=time(20), end=time(23))},
    ),
}


def instant(minutes: float, micro: int = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, microseconds=micro)


@st.composite
def views(draw: st.DrawFn, n: int) -> IncidentView:
    opened_min = draw(st.integers(0, SPAN_MINUTES))
    opened = instant(opened_min, draw(st.sampled_from([0, 0, 250_000, 999_999])))

    def later(most: int) -> datetime | None:
        if draw(st.booleans()):
            return None
        return opened + timedelta(minutes=draw(st.integers(-30, most)), seconds=draw(st.integers(0, 59)))

    acknowledged = later(600)
    resolved = later(6000)
    detected = later(20) if draw(st.booleans()) else None
    holds: tuple[tuple[str, str], ...] = ()
    on_hold: datetime | None = None
    if draw(st.integers(0, 4)) == 0:
        a = opened + timedelta(minutes=draw(st.integers(0, 300)))
        holds = ((a.isoformat(), (a + timedelta(minutes=draw(st.integers(1, 900)))).isoformat()),)
    if draw(st.integers(0, 6)) == 0:
        on_hold = opened + timedelta(minutes=draw(st.integers(0, 2000)))
    triage = draw(st.integers(0, 3))
    status = "resolved" if resolved else draw(st.sampled_from(["open", "acknowledged", "on_hold", "closed"]))
    return IncidentView(
        id=f"i{n:04d}",
        service=draw(st.sampled_from(["db", "api", "web", "sandbox"])),
        category=draw(st.sampled_from([None, None, "drill", "network"])),
        status=status,
        priority=draw(st.sampled_from([None, "P1", "P2", "P3", "P4", "P5"])),
        major=draw(st.sampled_from([None, "proposed", "accepted"])),
        opened_at=opened if draw(st.integers(0, 30)) else None,
        detected_at=detected,
        acknowledged_at=acknowledged,
        resolved_at=resolved,
        on_hold_since=on_hold,
        holds=holds,
        response_breached=draw(st.integers(0, 9)) == 0,
        resolution_met=draw(st.integers(0, 9)) == 0,
        response_target=float(draw(st.integers(-5, 20_000))) if triage == 1 else None,
        resolution_target=draw(st.floats(0, 90_000)) if triage >= 2 else None,
        sla_calendar=draw(st.sampled_from([None, "night", "unknown"])) if triage else None,
        feedback=tuple({"score": s} for s in draw(st.lists(st.integers(1, 5), max_size=2))),
        updates=tuple(
            {"latency_seconds": x}
            for x in draw(st.lists(st.one_of(st.none(), st.floats(-600, 6000)), max_size=3))
        ),
    )


@st.composite
def questions(draw: st.DrawFn) -> dict[str, Any]:
    def moment() -> datetime:
        day = draw(st.integers(-2, 18))
        if draw(st.booleans()):
            return T0.replace(hour=0) + timedelta(days=day)  # midnight: whole days only
        return instant(day * 1440, draw(st.integers(0, 86_400_000_000)))

    start = moment() if draw(st.booleans()) else None
    end = moment() if draw(st.booleans()) else None
    if start is not None and end is not None and end <= start:
        end = start + timedelta(hours=draw(st.integers(1, 400)))
    return {
        "start": start,
        "end": end,
        "service": draw(st.sampled_from([None, None, "db"])),
        "priority": draw(st.sampled_from([None, None, "P3"])),
    }


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal, but for means: within a relative 1e-12."""
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif path.endswith(".mean") and a is not None and b is not None:
        assert a == pytest.approx(b, rel=1e-12, abs=1e-9), path
    else:
        assert a == b, path


def stored(rows: list[IncidentView], policy: AnalyticsPolicy) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    conn.executemany(UPSERT_INCIDENT, [incident_row(v, policy) for v in rows])
    return conn


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 40).flatmap(lambda n: st.tuples(*(views(i) for i in range(n)))),
    st.lists(questions(), min_size=1, max_size=4),
    st.sampled_from(sorted(POLICIES)),
    st.integers(-2 * 1440, 20 * 1440),
)
def test_the_answer_is_computes_answer(
    incidents: tuple[IncidentView, ...], asked: list[dict[str, Any]], which: str, now_minutes: int
) -> None:
    policy = POLICIES[which]
    now = instant(now_minutes, 123)
    conn = stored(list(incidents), policy)
    metrics = Metrics(SimpleNamespace(epoch=0, day_versions={}), policy)  # type: ignore[arg-type]
    for q in asked:
        chosen = [
            v
            for v in incidents
            if (q["service"] is None or v.service == q["service"])
            and (q["priority"] is None or v.priority == q["priority"])
        ]
        expected = compute(sorted(chosen, key=_order), policy=policy, now=now, start=q["start"], end=q["end"])
        close(metrics.compute(conn, now=now, **q), expected)


def _order(v: IncidentView) -> tuple[str, str]:
    return (v.opened_at.astimezone(UTC).isoformat() if v.opened_at else "", v.id)


def test_parts_of_days_are_made_again_when_an_incident_opened_that_day_changes() -> None:
    policy = AnalyticsPolicy()
    day = T0.replace(hour=0)
    a = IncidentView(id="a", service="db", priority="P2", opened_at=day + timedelta(hours=3))
    b = IncidentView(id="b", service="db", priority="P2", opened_at=day + timedelta(days=1, hours=3))
    conn = stored([a, b], policy)
    versions: dict[str, int] = {}
    metrics = Metrics(SimpleNamespace(epoch=0, day_versions=versions), policy)  # type: ignore[arg-type]
    now = day + timedelta(days=3)
    assert metrics.compute(conn, now=now)["open"] == 2
    resolved = dataclasses.replace(a, status="resolved", resolved_at=now)
    conn.execute(UPSERT_INCIDENT, incident_row(resolved, policy))
    assert metrics.compute(conn, now=now)["open"] == 2  # the day's part is kept: nothing said it changed
    versions[day.date().isoformat()] = 1
    m = metrics.compute(conn, now=now)
    assert (m["open"], m["mttr_seconds"]["count"]) == (1, 1)


@pytest.mark.parametrize(
    "last", [datetime(2026, 11, 21, 9, tzinfo=UTC), datetime(9999, 12, 31, 22, tzinfo=UTC)]
)
def test_a_window_of_centuries_with_few_incidents_asks_the_store_a_few_questions(last: datetime) -> None:
    policy = AnalyticsPolicy()
    opened = [datetime(2, 3, 4, 5, tzinfo=UTC), T0, T0 + timedelta(days=9), last]
    incidents = [
        IncidentView(
            id=f"i{n}", service="db", priority="P2", opened_at=at, resolved_at=at + timedelta(hours=1)
        )
        for n, at in enumerate(opened)
    ]
    conn = stored(incidents, policy)
    statements: list[str] = []

    def count(sql: str) -> None:
        statements.append(sql)
        if len(statements) > 100:
            raise AssertionError("a query per day of the window")

    conn.set_trace_callback(count)
    metrics = Metrics(SimpleNamespace(epoch=0, day_versions={}), policy)  # type: ignore[arg-type]
    now = T0 + timedelta(days=20)
    ordered = sorted(incidents, key=_order)
    for start, end in [
        (None, None),
        (datetime(1, 1, 1, tzinfo=UTC), None),
        (None, datetime(9999, 12, 31, tzinfo=UTC)),
        (datetime(1, 6, 1, 12, tzinfo=UTC), T0 + timedelta(days=10)),
    ]:
        answer = metrics.compute(conn, now=now, start=start, end=end)
        close(answer, compute(ordered, policy=policy, now=now, start=start, end=end))
    assert 0 < len(statements) < 100


@settings(max_examples=300, deadline=None)
@given(
    views(0),
    st.sampled_from(sorted(POLICIES)),
    st.lists(st.integers(-1440, 30 * 1440), min_size=1, max_size=5),
)
def test_a_running_clock_is_pending_until_its_due_instant_and_breached_after(
    view: IncidentView, which: str, nows: list[int]
) -> None:
    policy = POLICIES[which]
    standing = dict(zip(("response", "resolution"), sla_standing(view, policy), strict=True))
    moments = [instant(m) for m in nows]
    for state, due in standing.values():
        if state == "due" and due is not None:  # the instants either side of it too
            at = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=due)
            moments += [at - timedelta(microseconds=1), at, at + timedelta(microseconds=1)]
    for now in moments:
        outcome = sla_outcome(view, policy, now=now)
        for clock, (state, due) in standing.items():
            judged = getattr(outcome, clock)
            if state == "due":
                assert judged == ("breached" if due is not None and micros(now) > due else "pending")
            elif state != "live":
                assert judged == state


def test_a_business_hours_deadline_is_where_the_working_time_passes_the_target() -> None:
    hours = BusinessHours()
    friday_four = datetime(2026, 11, 20, 16, tzinfo=UTC)
    due = due_after(friday_four, 2.5 * 3600, hours)
    assert due is not None
    at = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=due)
    assert at == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)  # 1 h on Friday, 1.5 h on Monday
    assert elapsed(friday_four, at, hours=hours) == 2.5 * 3600
    assert elapsed(friday_four, at + timedelta(microseconds=1), hours=hours) > 2.5 * 3600

"""Metrics with hand-computed expectations: means, medians and p90s, business-hours SLA, MTBF with gaps."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from services.analytics.metrics import business_seconds, compute, mtbf, percentile, sla_outcome
from services.analytics.projections import IncidentView
from shared.policy.analytics import AnalyticsPolicy, BusinessHours

MIN, HOUR = 60.0, 3600.0
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
FRIDAY = MONDAY - timedelta(days=3)
POLICY = AnalyticsPolicy()
NOW = MONDAY + timedelta(days=7)


def at(hours: float, day: datetime = MONDAY) -> datetime:
    return day + timedelta(hours=hours)


def incident(n: int, **kw: object) -> IncidentView:
    fields: dict[str, object] = {"id": f"i{n}", "title": f"incident {n}", "service": "api", "priority": "P2"}
    fields.update(kw)
    return IncidentView(**fields)  # type: ignore[arg-type]


def test_percentiles_interpolate_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 100.0]
    assert percentile(values, 50) == 30.0
    # rank (5 - 1) * 0.9 = 3.6: 40 + 0.6 * (100 - 40)
    assert percentile(values, 90) == pytest.approx(76.0)
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([7.0], 90) == 7.0
    assert percentile([], 50) is None


def test_mttr_mean_median_and_p90_from_the_senders_times() -> None:
    minutes = [10, 20, 30, 40, 100]
    views = [
        incident(i, opened_at=at(i), resolved_at=at(i) + timedelta(minutes=m), status="resolved")
        for i, m in enumerate(minutes)
    ]
    views.append(incident(9, opened_at=at(9)))  # still open: no resolution time
    m = compute(views, policy=POLICY, now=NOW)
    assert m["mttr_seconds"] == {
        "count": 5,
        "mean": 40 * MIN,
        "median": 30 * MIN,
        "p90": pytest.approx(76 * MIN),
    }
    assert m["incidents"] == 6
    assert m["open"] == 1


def test_mtta_and_mttd_where_the_detection_time_is_known() -> None:
    views = [
        incident(
            1,
            opened_at=at(1),
            acknowledged_at=at(1) + timedelta(minutes=2),
            detected_at=at(1) - timedelta(minutes=3),
        ),
        incident(
            2,
            opened_at=at(2),
            acknowledged_at=at(2) + timedelta(minutes=4),
            detected_at=at(2) - timedelta(minutes=1),
        ),
        incident(3, opened_at=at(3), acknowledged_at=at(3) + timedelta(minutes=9)),
    ]
    m = compute(views, policy=POLICY, now=NOW)
    # 2, 4, 9 minutes: mean 5, median 4, p90 at rank 1.8: 4 + 0.8 * 5 = 8
    assert m["mtta_seconds"] == {
        "count": 3,
        "mean": 5 * MIN,
        "median": 4 * MIN,
        "p90": pytest.approx(8 * MIN),
    }
    # only two senders said when the problem started: 3 and 1 minutes before opening
    assert m["mttd_seconds"]["count"] == 2
    assert m["mttd_seconds"]["mean"] == 2 * MIN


def test_business_seconds_skip_nights_and_weekends() -> None:
    hours = BusinessHours()
    # Friday 16:00 -> Monday 10:30: one hour on Friday, an hour and a half on Monday
    assert business_seconds(at(16, FRIDAY), at(10.5), hours) == 2.5 * HOUR
    assert business_seconds(at(18, FRIDAY), at(8.5), hours) == 0
    # Berlin is UTC+1 in November: the working day is 08:00-16:00 UTC
    berlin = BusinessHours(timezone="Europe/Berlin")
    assert business_seconds(at(7), at(9), berlin) == 1 * HOUR


def test_business_hours_sla_for_p3_counts_only_working_time() -> None:
    met = incident(1, priority="P3", opened_at=at(16, FRIDAY), acknowledged_at=at(10.5))  # 2.5 h of 4 h
    late = incident(2, priority="P3", opened_at=at(15, FRIDAY), acknowledged_at=at(12))  # 2 h + 3 h = 5 h
    assert sla_outcome(met, POLICY, now=NOW).response == "met"
    assert sla_outcome(met, POLICY, now=NOW).response_seconds == 2.5 * HOUR
    assert sla_outcome(late, POLICY, now=NOW).response == "breached"
    m = compute([met, late], policy=POLICY, now=NOW)
    assert m["sla"]["response"] == {"met": 1, "breached": 1, "pending": 0, "percent": 50.0}


def test_p1_runs_around_the_clock_and_time_on_hold_does_not_count_towards_resolution() -> None:
    held = incident(
        1,
        priority="P1",
        opened_at=at(10),
        acknowledged_at=at(10) + timedelta(minutes=10),
        resolved_at=at(15),
        holds=((at(11).isoformat(), at(14).isoformat()),),
    )
    outcome = sla_outcome(held, POLICY, now=NOW)
    assert (outcome.response, outcome.resolution) == ("met", "met")
    assert outcome.resolution_seconds == 2 * HOUR  # 5 h less 3 h on hold, within 4 h
    weekend = incident(2, priority="P1", opened_at=at(20, FRIDAY), acknowledged_at=at(20.5, FRIDAY))
    assert sla_outcome(weekend, POLICY, now=NOW).response == "breached"  # 30 min > 15 min, nights count


def test_a_breach_recorded_by_triage_counts_and_open_incidents_inside_their_target_are_pending() -> None:
    flagged = incident(
        1,
        opened_at=at(10),
        acknowledged_at=at(10) + timedelta(minutes=1),
        response_breached=True,
        resolved_at=at(11),
    )
    young = incident(2, opened_at=NOW - timedelta(minutes=5))
    old = incident(3, opened_at=NOW - timedelta(hours=10))
    outcomes = [sla_outcome(v, POLICY, now=NOW) for v in (flagged, young, old)]
    assert [o.response for o in outcomes] == ["breached", "pending", "breached"]
    assert [o.resolution for o in outcomes] == ["met", "pending", "breached"]


def test_triage_targets_and_outcomes_win_over_the_analytics_policy() -> None:
    v = incident(
        1,
        priority="P3",
        opened_at=at(10),
        acknowledged_at=at(12),
        response_target=3 * HOUR,
        resolution_target=10 * HOUR,
        resolution_met=True,
        resolved_at=at(23),
    )
    outcome = sla_outcome(v, POLICY, now=NOW)
    assert outcome.response == "met"  # 2 h of triage's 3 h, 24x7 (no calendar named)
    assert outcome.resolution == "met"  # triage recorded SlaMet: its word wins


def test_mtbf_merges_overlapping_outages_and_averages_the_gaps() -> None:
    views = [
        incident(1, service="db", opened_at=at(0), resolved_at=at(1)),
        incident(2, service="db", opened_at=at(0.5), resolved_at=at(2)),  # overlaps: one outage 00:00-02:00
        incident(3, service="db", opened_at=at(5), resolved_at=at(6)),  # gap 3 h
        incident(4, service="db", opened_at=at(10)),  # still open; gap 4 h
        incident(5, service="web", opened_at=at(3), resolved_at=at(4)),  # one failure: no MTBF
    ]
    out = mtbf(views, until=at(12))
    assert out["db"] == {
        "failures": 4,
        "outages": 3,
        "gaps_seconds": [3 * HOUR, 4 * HOUR],
        "mtbf_seconds": 3.5 * HOUR,
    }
    assert out["web"]["mtbf_seconds"] is None


def test_volumes_majors_update_latency_satisfaction_and_exclusions() -> None:
    views = [
        incident(
            1,
            priority="P1",
            service="db",
            opened_at=at(1),
            major="accepted",
            feedback=({"score": 2}, {"score": 5}),
        ),
        incident(2, priority="P2", service="db", opened_at=at(2), major="rejected", feedback=({"score": 3},)),
        incident(
            3,
            priority="P2",
            service="web",
            opened_at=at(25),
            updates=({"latency_seconds": 60.0}, {"latency_seconds": -30.0}, {"latency_seconds": 300.0}),
        ),
        incident(4, priority="P1", service="web", opened_at=at(26), category="test"),  # excluded by policy
        incident(5, priority="P3", service="web", opened_at=at(-30)),  # before the window
    ]
    m = compute(views, policy=POLICY, now=NOW, start=MONDAY, end=MONDAY + timedelta(days=2))
    assert m["incidents"] == 3
    assert m["volume"] == {
        "by_priority": {"P1": 1, "P2": 2},
        "by_service": {"db": 2, "web": 1},
        "by_day": {"2026-11-23": 2, "2026-11-24": 1},
    }
    assert m["major_incidents"] == 1
    assert m["status_update_latency_seconds"] == {
        "count": 3,
        "mean": 110.0,
        "median": 60.0,
        "p90": pytest.approx(252.0),
    }
    # the latest score of each incident: 5 and 3
    assert m["csat"]["responses"] == 2
    assert m["csat"]["mean"] == 4.0
    assert m["csat"]["satisfied_percent"] == 50.0


def test_excluded_services_come_from_policy() -> None:
    policy = AnalyticsPolicy(excluded_services=("sandbox",), excluded_categories=())
    views = [incident(1, service="sandbox", opened_at=at(1)), incident(2, category="test", opened_at=at(2))]
    assert compute(views, policy=policy, now=NOW)["incidents"] == 1


def test_holidays_are_not_working_time_and_an_end_of_00_00_is_midnight() -> None:
    hours = BusinessHours(holidays=(MONDAY.date(),))
    assert business_seconds(at(16, FRIDAY), at(10.5, MONDAY + timedelta(days=1)), hours) == 2.5 * HOUR
    late = BusinessHours(start=time(18, 0), end=time(0, 0))
    assert business_seconds(at(17), at(23.5), late) == 5.5 * HOUR


def test_a_clock_triage_ran_in_a_named_calendar_is_measured_in_that_calendar() -> None:
    policy = AnalyticsPolicy(calendars={"night": BusinessHours(start=time(22, 0), end=time(0, 0))})
    v = incident(
        1, priority="P1", opened_at=at(21), acknowledged_at=at(23), response_target=HOUR, sla_calendar="night"
    )
    outcome = sla_outcome(v, policy, now=NOW)
    assert (outcome.response, outcome.response_seconds) == ("met", HOUR)


def test_analytics_takes_triages_calendars_from_the_policy_file() -> None:
    from services.analytics.policy import policy_from
    from shared.policy import parse_policy

    whole = parse_policy(
        {"triage": {"calendars": {"office": {"timezone": "Europe/Berlin", "days": ["mon"]}}}}
    )
    office = policy_from(whole).calendars["office"]
    assert (office.timezone, office.days, office.start) == ("Europe/Berlin", (0,), time(9, 0))

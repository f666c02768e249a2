"""Business-hours arithmetic (weekends, holidays, time zones, DST) and SLA clock state."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.triage.domain import next_sla_due, sla_due
from services.triage.sla import SlaClock, add_business_time, business_time_between, elapsed, point_at
from services.triage.state import Triage
from shared.policy.triage import BusinessHours, Priority, TriagePolicy, Weekday

UTC_OFFICE = BusinessHours(timezone="UTC")
LONDON = BusinessHours(timezone="Europe/London")
NEW_YORK = BusinessHours(timezone="America/New_York")
ALL_DAY_LONDON = BusinessHours(timezone="Europe/London", days=list(Weekday), start=time(0), end=time(0))
MONDAY_OFF = BusinessHours(timezone="UTC", holidays=[date(2026, 3, 2)])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


H = timedelta(hours=1)
MIN = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("case", "hours", "start", "amount", "due"),
    [
        ("24x7 is plain addition", None, utc(2026, 2, 27, 16, 30), 4 * H, utc(2026, 2, 27, 20, 30)),
        ("within one day", UTC_OFFICE, utc(2026, 3, 2, 10), 2 * H, utc(2026, 3, 2, 12)),
        ("ends exactly at closing", UTC_OFFICE, utc(2026, 3, 2, 16), H, utc(2026, 3, 2, 17)),
        ("overnight", UTC_OFFICE, utc(2026, 3, 2, 16), 2 * H, utc(2026, 3, 3, 10)),
        ("over the weekend", UTC_OFFICE, utc(2026, 2, 27, 16, 30), H, utc(2026, 3, 2, 9, 30)),
        ("starts on a Saturday", UTC_OFFICE, utc(2026, 2, 28, 10), 30 * MIN, utc(2026, 3, 2, 9, 30)),
        ("starts before opening", UTC_OFFICE, utc(2026, 3, 2, 6), 30 * MIN, utc(2026, 3, 2, 9, 30)),
        ("a holiday is skipped", MONDAY_OFF, utc(2026, 2, 27, 16, 30), H, utc(2026, 3, 3, 9, 30)),
        ("a whole working week", UTC_OFFICE, utc(2026, 3, 2, 9), 40 * H, utc(2026, 3, 6, 17)),
        # New York is UTC-5 in winter: 08:00 EST is 13:00 UTC; the office opens at 14:00 UTC.
        ("another time zone", NEW_YORK, utc(2026, 3, 2, 13), H, utc(2026, 3, 2, 15)),
        # London springs forward on Sunday 29 March 2026: Friday 16:00 GMT, Monday opens 08:00 UTC.
        ("across spring-forward", LONDON, utc(2026, 3, 27, 16), 2 * H, utc(2026, 3, 30, 9)),
        # New York falls back on Sunday 1 November 2026: Friday 16:00 EDT is 20:00 UTC.
        ("across fall-back", NEW_YORK, utc(2026, 10, 30, 20), 2 * H, utc(2026, 11, 2, 15)),
        # A calendar open all day every day is 24x7, even on the 23-hour day.
        ("all-day calendar over DST", ALL_DAY_LONDON, utc(2026, 3, 28, 12), 24 * H, utc(2026, 3, 29, 12)),
    ],
)
def test_adding_business_time(
    case: str, hours: BusinessHours | None, start: datetime, amount: timedelta, due: datetime
) -> None:
    assert add_business_time(start, amount, hours) == due, case
    assert business_time_between(start, due, hours) == amount, case


@pytest.mark.parametrize(
    ("hours", "start", "end", "counted"),
    [
        (UTC_OFFICE, utc(2026, 2, 27, 16), utc(2026, 3, 2, 10), 2 * H),
        (UTC_OFFICE, utc(2026, 2, 28, 0), utc(2026, 3, 1, 23), timedelta(0)),
        (UTC_OFFICE, utc(2026, 3, 2, 12), utc(2026, 3, 2, 11), timedelta(0)),
        (LONDON, utc(2026, 3, 27, 0), utc(2026, 3, 31, 0), 16 * H),
        (None, utc(2026, 3, 27, 0), utc(2026, 3, 31, 0), 96 * H),
    ],
)
def test_counting_business_time(
    hours: BusinessHours | None, start: datetime, end: datetime, counted: timedelta
) -> None:
    assert business_time_between(start, end, hours) == counted


def clock(*intervals: tuple[datetime, datetime | None], target: timedelta = H) -> SlaClock:
    return SlaClock("response", "P2", target, None, intervals[0][0], tuple(intervals))


def test_a_pause_moves_the_due_time_by_its_length() -> None:
    paused = clock((utc(2026, 3, 2, 10), utc(2026, 3, 2, 10, 30)), (utc(2026, 3, 2, 12), None))
    assert point_at(paused, 1.0, None) == utc(2026, 3, 2, 12, 30)
    assert point_at(paused, 0.8, None) == utc(2026, 3, 2, 12, 18)
    assert elapsed(paused, utc(2026, 3, 2, 12, 10), None) == 40 * MIN


def test_a_clock_on_hold_short_of_its_target_has_no_due_time() -> None:
    on_hold = clock((utc(2026, 3, 2, 10), utc(2026, 3, 2, 10, 30)))
    assert on_hold.paused
    assert point_at(on_hold, 1.0, None) is None


def test_a_point_passed_before_the_pause_is_still_exact() -> None:
    late = clock((utc(2026, 3, 2, 10), utc(2026, 3, 2, 11, 30)))
    assert point_at(late, 1.0, None) == utc(2026, 3, 2, 11)


def test_business_hours_and_pauses_combine() -> None:
    c = clock((utc(2026, 2, 27, 16), utc(2026, 2, 27, 16, 30)), (utc(2026, 3, 2, 9), None))
    assert point_at(c, 1.0, UTC_OFFICE) == utc(2026, 3, 2, 9, 30)


def running(target: timedelta) -> Triage:
    c = SlaClock("response", "P1", target, None, utc(2026, 3, 2, 10), ((utc(2026, 3, 2, 10), None),))
    return Triage(priority=Priority.P1, incident_id="i", clocks={"response": c})


def test_warning_and_breach_fall_due_once() -> None:
    policy = TriagePolicy()
    state = running(timedelta(seconds=10))
    assert sla_due(state, utc(2026, 3, 2, 10, 0, 7), policy) == []
    assert next_sla_due(state, policy) == utc(2026, 3, 2, 10, 0, 8)
    [warning] = sla_due(state, utc(2026, 3, 2, 10, 0, 8), policy)
    assert (warning.type, getattr(warning, "due_at")) == ("SlaWarningRaised", utc(2026, 3, 2, 10, 0, 10))
    from services.triage.state import evolve

    state = evolve(state, warning)
    assert sla_due(state, utc(2026, 3, 2, 10, 0, 9), policy) == []
    [breach] = sla_due(state, utc(2026, 3, 2, 10, 0, 10), policy)
    state = evolve(state, breach)
    assert breach.type == "SlaBreached"
    assert sla_due(state, utc(2026, 3, 2, 11), policy) == []
    assert next_sla_due(state, policy) is None


def test_a_late_timer_raises_both_at_once_with_their_own_times() -> None:
    events = sla_due(running(timedelta(seconds=10)), utc(2026, 3, 2, 12), TriagePolicy())
    assert [(e.type, e.occurred_at) for e in events] == [
        ("SlaWarningRaised", utc(2026, 3, 2, 10, 0, 8)),
        ("SlaBreached", utc(2026, 3, 2, 10, 0, 10)),
    ]


ZONES = [None, UTC_OFFICE, LONDON, NEW_YORK, ALL_DAY_LONDON, BusinessHours(timezone="Australia/Lord_Howe")]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    start=st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
    ),
    seconds=st.integers(min_value=0, max_value=30 * 24 * 3600),
)
def test_counting_undoes_adding(zone: BusinessHours | None, start: datetime, seconds: int) -> None:
    """Whatever the zone and its DST (Lord Howe shifts by half an hour), the due time of an amount
    of business time holds exactly that amount, and lies inside business hours."""
    amount = timedelta(seconds=seconds)
    due = add_business_time(start, amount, zone)
    assert due >= start
    assert business_time_between(start, due, zone) == amount
    if zone is not None and seconds > 0:
        assert business_time_between(due - timedelta(seconds=1), due, zone) == timedelta(seconds=1)

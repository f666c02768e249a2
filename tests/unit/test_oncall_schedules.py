"""Who is on call: rotations (daily, weekly, custom), layers with restrictions, overrides, and
the shift list, across DST changes in Europe/Berlin and America/New_York and in a zone without
DST (Asia/Kolkata)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from services.triage.oncall import RangeInvalid, shift_index, shift_start, shifts, who
from shared.policy.oncall import Layer, Override, Schedule


def z(text: str) -> datetime:
    """An instant written in UTC: '2026-03-30 07:30'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def layer(**kw: Any) -> Layer:
    return Layer.model_validate(kw)


# Weekly, Monday 09:00 Berlin. EU DST starts Sunday 2026-03-29 (CET UTC+1 -> CEST UTC+2).
BERLIN_WEEKLY = layer(
    rotation="weekly",
    handoff=time(9),
    timezone="Europe/Berlin",
    start=date(2026, 3, 16),
    people=["ann", "bob", "cat"],
)
# Daily, 08:00 New York. US DST starts Sunday 2026-03-08 (EST UTC-5 -> EDT UTC-4), ends 2026-11-01.
NY_DAILY = layer(
    rotation="daily",
    handoff=time(8),
    timezone="America/New_York",
    start=date(2026, 3, 6),
    people=["xav", "yan"],
)
# Twelve-hour shifts, 09:00 and 21:00 in Kolkata (UTC+5:30, no DST).
KOLKATA_12H = layer(
    rotation="custom",
    length=timedelta(hours=12),
    handoff=time(9),
    timezone="Asia/Kolkata",
    start=date(2026, 3, 1),
    people=["raj", "sita"],
)
# Daily at 02:30 Berlin: on 2026-10-25 02:00-03:00 local happens twice (CEST, then CET).
BERLIN_NIGHT = layer(
    rotation="daily",
    handoff=time(2, 30),
    timezone="Europe/Berlin",
    start=date(2026, 10, 20),
    people=["ann", "bob"],
)
# Daily at 02:30 Berlin: on 2026-03-29 02:00-03:00 local does not happen.
BERLIN_SPRING = layer(
    rotation="daily",
    handoff=time(2, 30),
    timezone="Europe/Berlin",
    start=date(2026, 3, 27),
    people=["ann", "bob"],
)
# Business-hours layer on top: Monday to Friday 09:00-17:00 Berlin.
BERLIN_OFFICE = layer(
    name="office",
    rotation="weekly",
    timezone="Europe/Berlin",
    start=date(2026, 3, 16),
    people=["dan"],
    restrictions=[{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}],
)
# Overnight layer: 22:00-06:00 New York, every day.
NY_NIGHTS = layer(
    name="nights",
    rotation="weekly",
    timezone="America/New_York",
    start=date(2026, 3, 2),
    people=["nia"],
    restrictions=[{"start": "22:00", "end": "06:00"}],
)


def schedule(*layers: Layer, overrides: list[dict[str, Any]] | None = None) -> Schedule:
    return Schedule(
        id="s",
        layers=list(layers),
        overrides=[Override.model_validate(o) for o in overrides or []],
    )


@pytest.mark.parametrize(
    ("name", "sched", "at", "expected"),
    [
        # Berlin weekly: hand-off 09:00 CET = 08:00Z before DST, 09:00 CEST = 07:00Z after it
        ("first shift", schedule(BERLIN_WEEKLY), "2026-03-16 08:00", "ann"),
        ("before the rotation starts", schedule(BERLIN_WEEKLY), "2026-03-16 07:59", None),
        ("second week", schedule(BERLIN_WEEKLY), "2026-03-23 08:00", "bob"),
        ("one minute before the CET hand-off", schedule(BERLIN_WEEKLY), "2026-03-23 07:59", "ann"),
        ("after DST: hand-off at 07:00Z", schedule(BERLIN_WEEKLY), "2026-03-30 07:00", "cat"),
        ("after DST: 07:59Z is already the new shift", schedule(BERLIN_WEEKLY), "2026-03-30 07:59", "cat"),
        ("after DST: 06:59Z is still the old shift", schedule(BERLIN_WEEKLY), "2026-03-30 06:59", "bob"),
        ("wraps round to the first person", schedule(BERLIN_WEEKLY), "2026-04-06 07:00", "ann"),
        # New York daily: 08:00 EST = 13:00Z, 08:00 EDT = 12:00Z
        ("NY first day", schedule(NY_DAILY), "2026-03-06 13:00", "xav"),
        ("NY second day", schedule(NY_DAILY), "2026-03-07 13:00", "yan"),
        ("NY DST day: hand-off at 12:00Z", schedule(NY_DAILY), "2026-03-08 12:00", "xav"),
        ("NY DST day: 11:59Z still yesterday's", schedule(NY_DAILY), "2026-03-08 11:59", "yan"),
        ("NY after DST ends: 13:00Z again", schedule(NY_DAILY), "2026-11-02 12:59", "xav"),
        ("NY after DST ends: hand-off", schedule(NY_DAILY), "2026-11-02 13:00", "yan"),
        # Kolkata 12 h: 09:00 IST = 03:30Z, 21:00 IST = 15:30Z
        ("Kolkata day shift", schedule(KOLKATA_12H), "2026-03-01 03:30", "raj"),
        ("Kolkata night shift", schedule(KOLKATA_12H), "2026-03-01 15:30", "sita"),
        ("Kolkata next morning", schedule(KOLKATA_12H), "2026-03-02 03:29", "sita"),
        ("Kolkata a month on", schedule(KOLKATA_12H), "2026-03-31 04:00", "raj"),
        # Berlin 02:30 daily across the repeated hour of 2026-10-25: the hand-off is the first
        # 02:30 (CEST, 00:30Z); the second 02:15 (CET, 01:15Z) comes after it
        ("repeated hour: before the first 02:30", schedule(BERLIN_NIGHT), "2026-10-25 00:29", "ann"),
        ("repeated hour: the first 02:30", schedule(BERLIN_NIGHT), "2026-10-25 00:30", "bob"),
        ("repeated hour: the second 02:15", schedule(BERLIN_NIGHT), "2026-10-25 01:15", "bob"),
        ("the next hand-off, 02:30 CET", schedule(BERLIN_NIGHT), "2026-10-26 01:30", "ann"),
        # Berlin 02:30 daily on the night 02:00-03:00 is skipped: read as CET, 01:30Z (03:30 CEST)
        ("skipped hour: before the hand-off", schedule(BERLIN_SPRING), "2026-03-29 01:29", "bob"),
        ("skipped hour: the hand-off", schedule(BERLIN_SPRING), "2026-03-29 01:30", "ann"),
        ("the day after: 02:30 CEST", schedule(BERLIN_SPRING), "2026-03-30 00:30", "bob"),
        # layers: the office layer answers in business hours, the rotation beneath outside them
        ("office hours: top layer", schedule(BERLIN_WEEKLY, BERLIN_OFFICE), "2026-03-18 09:00", "dan"),
        ("evening: layer beneath", schedule(BERLIN_WEEKLY, BERLIN_OFFICE), "2026-03-18 16:00", "ann"),
        ("office hours after DST", schedule(BERLIN_WEEKLY, BERLIN_OFFICE), "2026-03-30 07:00", "dan"),
        ("before office hours after DST", schedule(BERLIN_WEEKLY, BERLIN_OFFICE), "2026-03-30 06:59", "bob"),
        ("weekend: layer beneath", schedule(BERLIN_WEEKLY, BERLIN_OFFICE), "2026-03-21 10:00", "ann"),
        # an overnight restriction in another zone
        ("NY night layer at 23:00 EDT", schedule(NY_DAILY, NY_NIGHTS), "2026-03-10 03:00", "nia"),
        ("NY night layer ends 06:00 EDT", schedule(NY_DAILY, NY_NIGHTS), "2026-03-10 10:00", "yan"),
        ("NY night layer before 22:00 EDT", schedule(NY_DAILY, NY_NIGHTS), "2026-03-10 01:59", "yan"),
        # overrides sit on top of every layer
        (
            "override covers",
            schedule(
                BERLIN_WEEKLY,
                BERLIN_OFFICE,
                overrides=[{"start": "2026-03-18T08:00Z", "end": "2026-03-18T12:00Z", "person": "eve"}],
            ),
            "2026-03-18 09:00",
            "eve",
        ),
        (
            "override ends",
            schedule(
                BERLIN_WEEKLY,
                BERLIN_OFFICE,
                overrides=[{"start": "2026-03-18T08:00Z", "end": "2026-03-18T12:00Z", "person": "eve"}],
            ),
            "2026-03-18 12:00",
            "dan",
        ),
        (
            "the later override wins",
            schedule(
                BERLIN_WEEKLY,
                overrides=[
                    {"start": "2026-03-18T00:00Z", "end": "2026-03-19T00:00Z", "person": "eve"},
                    {"start": "2026-03-18T10:00Z", "end": "2026-03-18T11:00Z", "person": "fay"},
                ],
            ),
            "2026-03-18 10:30",
            "fay",
        ),
    ],
)
def test_who_is_on_call(name: str, sched: Schedule, at: str, expected: str | None) -> None:
    assert who(sched, z(at)).person == expected, name


def test_who_names_its_source() -> None:
    sched = schedule(
        BERLIN_WEEKLY,
        BERLIN_OFFICE,
        overrides=[{"start": "2026-03-18T08:00Z", "end": "2026-03-18T12:00Z", "person": "eve"}],
    )
    assert who(sched, z("2026-03-18 09:00")).source == "override"
    assert who(sched, z("2026-03-18 12:00")).source == "layer office"
    assert who(sched, z("2026-03-16 07:00")).source == "nobody"


def test_the_same_instant_in_any_zone_has_the_same_answer() -> None:
    from zoneinfo import ZoneInfo

    at = z("2026-03-30 07:30")
    for zone in ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"):
        assert who(schedule(BERLIN_WEEKLY), at.astimezone(ZoneInfo(zone))).person == "cat"


def test_shift_boundaries_keep_the_local_hand_off_across_dst() -> None:
    starts = [shift_start(NY_DAILY, k) for k in range(4)]
    assert starts == [
        z("2026-03-06 13:00"),
        z("2026-03-07 13:00"),
        z("2026-03-08 12:00"),
        z("2026-03-09 12:00"),
    ]
    assert starts[2] - starts[1] == timedelta(hours=23)  # the short day
    assert shift_index(NY_DAILY, z("2026-03-08 11:59")) == 1


def test_shift_list_across_dst_with_an_override() -> None:
    sched = schedule(
        BERLIN_WEEKLY, overrides=[{"start": "2026-03-25T12:00Z", "end": "2026-03-25T18:00Z", "person": "eve"}]
    )
    got = [
        (s.person, s.start, s.end, s.source)
        for s in shifts(sched, z("2026-03-23 00:00"), z("2026-04-06 00:00"))
    ]
    assert got == [
        ("ann", z("2026-03-23 00:00"), z("2026-03-23 08:00"), "layer layer"),
        ("bob", z("2026-03-23 08:00"), z("2026-03-25 12:00"), "layer layer"),
        ("eve", z("2026-03-25 12:00"), z("2026-03-25 18:00"), "override"),
        ("bob", z("2026-03-25 18:00"), z("2026-03-30 07:00"), "layer layer"),  # 9:00 CEST
        ("cat", z("2026-03-30 07:00"), z("2026-04-06 00:00"), "layer layer"),
    ]


def test_shift_list_shows_gaps_and_layers() -> None:
    sched = schedule(NY_NIGHTS)
    got = [(s.person, s.start, s.end) for s in shifts(sched, z("2026-03-10 00:00"), z("2026-03-11 00:00"))]
    assert got == [
        (None, z("2026-03-10 00:00"), z("2026-03-10 02:00")),  # 20:00 EDT: not yet
        ("nia", z("2026-03-10 02:00"), z("2026-03-10 10:00")),  # 22:00 to 06:00 EDT
        (None, z("2026-03-10 10:00"), z("2026-03-11 00:00")),  # nobody until 22:00 EDT (02:00Z)
    ]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (z("2026-03-10 00:00"), z("2026-03-10 00:00"), "to must be after from"),
        (z("2026-01-01 00:00"), z("2027-06-01 00:00"), "longer than 366 days"),
        (datetime(2026, 1, 1), z("2026-01-02 00:00"), "UTC offset"),
    ],
)
def test_bad_ranges_are_refused(start: datetime, end: datetime, message: str) -> None:
    with pytest.raises(RangeInvalid, match=message):
        shifts(schedule(NY_DAILY), start, end)

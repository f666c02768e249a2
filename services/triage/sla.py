"""SLA clocks, pure: business-hours arithmetic and the state of one clock.

A clock runs in intervals (paused while an incident is on hold). Its time is counted in a
business-hours calendar (working days, a daily window in a time zone, holidays) or 24x7 when it
has none. Windows are built from local wall-clock times in the calendar's zone and compared as
aware datetimes in UTC, so DST changes are the zone's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from services.triage.frozen import copier
from shared.policy.triage import BusinessHours

MAX_DAYS = 3700  # ten years of calendar days: a target longer than that is a policy mistake
ZERO = timedelta(0)


class CalendarExhausted(ValueError):
    """The calendar has no working time within reach (e.g. every day a holiday)."""


def _windows(after: datetime, hours: BusinessHours) -> Iterator[tuple[datetime, datetime]]:
    """Business windows, in order, from the local day of `after` on (the first may end before it)."""
    zone = hours.zone
    day = after.astimezone(zone).date() - timedelta(days=1)  # the day before: an overnight edge case
    working = {d.number for d in hours.days}
    holidays = set(hours.holidays)
    for _ in range(MAX_DAYS):
        if day.weekday() in working and day not in holidays:
            start = datetime.combine(day, hours.start, tzinfo=zone)
            end_day = day + timedelta(days=1) if hours.end == time(0) else day
            end = datetime.combine(end_day, hours.end, tzinfo=zone)
            # to UTC at once: arithmetic between datetimes of one ZoneInfo is wall-clock arithmetic
            yield start.astimezone(UTC), end.astimezone(UTC)
        day += timedelta(days=1)
    raise CalendarExhausted(f"no business time within {MAX_DAYS} days of {after.isoformat()}")


def add_business_time(start: datetime, amount: timedelta, hours: BusinessHours | None) -> datetime:
    """The instant when `amount` of business time has passed since `start`."""
    if hours is None:
        return start + amount
    remaining = amount
    for window_start, window_end in _windows(start, hours):
        begin = max(window_start, start)
        if begin >= window_end:
            continue
        available = window_end - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise CalendarExhausted("unreachable")  # pragma: no cover


def business_time_between(start: datetime, end: datetime, hours: BusinessHours | None) -> timedelta:
    """Business time in [start, end)."""
    if end <= start:
        return ZERO
    if hours is None:
        return end - start
    total = ZERO
    for window_start, window_end in _windows(start, hours):
        if window_start >= end:
            break
        begin, finish = max(window_start, start), min(window_end, end)
        if finish > begin:
            total += finish - begin
    return total


@dataclass(frozen=True, slots=True)
class SlaClock:
    """One clock of an incident (response or resolution), folded from triage's events."""

    kind: str
    priority: str
    target: timedelta
    calendar: str | None
    started_at: datetime
    intervals: tuple[tuple[datetime, datetime | None], ...]
    stopped_at: datetime | None = None
    warned: bool = False
    breached: bool = False

    @property
    def running(self) -> bool:
        return self.stopped_at is None and bool(self.intervals) and self.intervals[-1][1] is None

    @property
    def paused(self) -> bool:
        return self.stopped_at is None and not self.running

    def pause(self, at: datetime) -> SlaClock:
        if not self.running:
            return self
        last_start, _ = self.intervals[-1]
        return _copy(self, intervals=(*self.intervals[:-1], (last_start, max(at, last_start))))

    def resume(self, at: datetime) -> SlaClock:
        if self.running:
            return self
        return _copy(self, intervals=(*self.intervals, (at, None)), stopped_at=None)

    def stop(self, at: datetime) -> SlaClock:
        return _copy(self.pause(at), stopped_at=at)


_copy = copier(SlaClock)


def point_at(clock: SlaClock, fraction: float, hours: BusinessHours | None) -> datetime | None:
    """When the clock reaches `fraction` of its target; None while it is paused short of it.

    Walks the running intervals, so the answer is exact even when the point fell inside an
    interval that has since been closed by a pause or a stop."""
    remaining = clock.target * fraction
    for start, end in clock.intervals:
        if end is None:
            return add_business_time(start, remaining, hours)
        spent = business_time_between(start, end, hours)
        if spent >= remaining:
            return add_business_time(start, remaining, hours)
        remaining -= spent
    return None


def elapsed(clock: SlaClock, now: datetime, hours: BusinessHours | None) -> timedelta:
    """Business time the clock has counted up to `now`."""
    return sum(
        (business_time_between(s, e if e is not None else now, hours) for s, e in clock.intervals), ZERO
    )


def state_of(clock: SlaClock, now: datetime, hours: BusinessHours | None) -> str:
    """met | breached | running | paused | warning (running, past the warning point)."""
    if clock.stopped_at is not None:
        return "breached" if clock.breached else "met"
    if clock.breached:
        return "breached"
    if clock.paused:
        return "paused"
    return "warning" if clock.warned else "running"

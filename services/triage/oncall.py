"""Who is on call, pure: rotations, layers, restrictions and overrides over aware datetimes.

A rotation's shift boundaries are wall-clock times in the rotation's own zone (the hand-off is at
09:00 local before and after a DST change; the shift that spans the change is an hour shorter or
longer). Every boundary is converted to UTC before it is compared, so instants in a repeated or
skipped local hour are answered by the real order of events, never by their local reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.errors import DomainError
from shared.policy.oncall import Layer, Override, Restriction, Schedule

MAX_RANGE = timedelta(days=366)
MAX_SHIFTS = 20_000


class RangeInvalid(DomainError):
    status = 422
    title = "Invalid time range"


def aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None:
        raise RangeInvalid(f"{what}: give a UTC offset or Z ({at.isoformat()} has none)")
    return at.astimezone(UTC)


def _local(layer: Layer, day: date, at: time) -> datetime:
    """A wall-clock time in the layer's zone, as a UTC instant (a skipped local time maps past the gap)."""
    return datetime.combine(day, at, tzinfo=layer.zone).astimezone(UTC)


def shift_start(layer: Layer, k: int) -> datetime:
    """When shift `k` of the rotation starts (shift 0 starts on `layer.start` at the hand-off)."""
    naive = datetime.combine(layer.start, layer.handoff) + layer.shift * k
    return naive.replace(tzinfo=layer.zone).astimezone(UTC)


def shift_index(layer: Layer, at: datetime) -> int:
    """The shift running at `at` (negative before the rotation starts)."""
    at = aware(at, "at")
    local = at.astimezone(layer.zone).replace(tzinfo=None)
    k = (local - datetime.combine(layer.start, layer.handoff)) // layer.shift
    while shift_start(layer, k + 1) <= at:
        k += 1
    while shift_start(layer, k) > at:
        k -= 1
    return int(k)


def _windows(layer: Layer, r: Restriction, day: date) -> tuple[datetime, datetime] | None:
    if day.weekday() not in {d.number for d in r.days}:
        return None
    end_day = day + timedelta(days=1) if r.end == time(0) or r.end <= r.start else day
    return _local(layer, day, r.start), _local(layer, end_day, r.end)


def active(layer: Layer, at: datetime) -> bool:
    """Whether the layer's restrictions (if any) let it answer at `at`."""
    if not layer.restrictions:
        return True
    today = at.astimezone(layer.zone).date()
    for r in layer.restrictions:
        for day in (today - timedelta(days=1), today):
            window = _windows(layer, r, day)
            if window is not None and window[0] <= at < window[1]:
                return True
    return False


def layer_person(layer: Layer, at: datetime) -> str | None:
    """Who this layer puts on call at `at`: nobody before it starts or outside its restrictions."""
    at = aware(at, "at")
    k = shift_index(layer, at)
    if k < 0 or not active(layer, at):
        return None
    return layer.people[k % len(layer.people)]


@dataclass(frozen=True, slots=True)
class OnCall:
    """Who is on call at an instant, and why: an override, or a layer (its index and name)."""

    person: str | None
    layer: int | None = None
    layer_name: str = ""
    override: Override | None = None

    @property
    def source(self) -> str:
        if self.override is not None:
            return "override"
        return f"layer {self.layer_name}" if self.layer is not None else "nobody"


def who(schedule: Schedule, at: datetime) -> OnCall:
    """Overrides first (the latest listed wins), then the top-most layer with someone on call."""
    at = aware(at, "at")
    for o in reversed(schedule.overrides):
        if o.start <= at < o.end:
            return OnCall(o.person, override=o)
    for i in range(len(schedule.layers) - 1, -1, -1):
        layer = schedule.layers[i]
        person = layer_person(layer, at)
        if person is not None:
            return OnCall(person, layer=i, layer_name=layer.name)
    return OnCall(None)


@dataclass(frozen=True, slots=True)
class Shift:
    person: str | None
    start: datetime
    end: datetime
    source: str


def _breakpoints(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    points = {start}
    for layer in schedule.layers:
        first, last = shift_index(layer, start), shift_index(layer, end)
        if last - first > MAX_SHIFTS:
            raise RangeInvalid(f"the range holds more than {MAX_SHIFTS} shifts; ask for a shorter one")
        points.update(shift_start(layer, k) for k in range(max(first, 0), last + 1))
        day = start.astimezone(layer.zone).date() - timedelta(days=1)
        last_day = end.astimezone(layer.zone).date() + timedelta(days=1)
        while layer.restrictions and day <= last_day:
            for r in layer.restrictions:
                window = _windows(layer, r, day)
                if window is not None:
                    points.update(window)
            day += timedelta(days=1)
    for o in schedule.overrides:
        points.update((o.start, o.end))
    return sorted(p for p in points if start <= p < end)


def shifts(schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """Who is on call from `start` to `end`, as consecutive shifts (gaps have person None)."""
    start, end = aware(start, "from"), aware(end, "to")
    if end <= start:
        raise RangeInvalid("to must be after from")
    if end - start > MAX_RANGE:
        raise RangeInvalid(f"the range is longer than {MAX_RANGE.days} days; ask for a shorter one")
    out: list[Shift] = []
    points = _breakpoints(schedule, start, end)
    for begin, finish in zip(points, [*points[1:], end], strict=True):
        now = who(schedule, begin)
        if out and out[-1].person == now.person and out[-1].source == now.source:
            out[-1] = Shift(now.person, out[-1].start, finish, now.source)
        else:
            out.append(Shift(now.person, begin, finish, now.source))
    return out

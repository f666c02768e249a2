"""The numbers an incident manager trusts, as pure functions over incident views.

Every duration is measured between domain times (the sender's, where it gave one), never receive
times. Definitions:

- MTTA: opened -> first acknowledgement. MTTR: opened -> resolved. MTTD: the sender's start of the
  problem (`detected_at`) -> opened, only where the sender told us when it started.
- Means, medians and 90th percentiles; percentiles interpolate linearly between the closest ranks
  (the "type 7" definition used by NumPy and spreadsheets).
- MTBF per service: the incidents' outage intervals (opened -> resolved, or the end of the window
  when still open) are merged where they overlap; MTBF is the mean gap between the end of one outage
  and the start of the next. It needs two failures.
- SLA: per priority, a response target (opened -> acknowledged) and a resolution target (opened ->
  resolved, minus time on hold), measured 24x7 or in business hours by policy. A breach recorded by
  triage (`SlaBreached`) counts as a breach whatever the clocks say. Incidents still inside their
  target are pending and not counted either way.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson

from services.analytics.projections import IncidentView
from shared.policy.analytics import AnalyticsPolicy, BusinessHours


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), interpolating linearly between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "mean": sum(values) / len(values) if values else None,
        "median": percentile(values, 50),
        "p90": percentile(values, 90),
    }


def business_seconds(start: datetime, end: datetime, hours: BusinessHours) -> float:
    """Working seconds between two instants in the policy's working week and time zone."""
    if end <= start:
        return 0.0
    tz = ZoneInfo(hours.timezone)
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    total = 0.0
    while day <= last:
        if (period := _period(day, hours, tz)) is not None:
            lo, hi = max(period[0], start), min(period[1], end)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total


def _period(day: date, hours: BusinessHours, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """A day's working period (closing at midnight ends it at the next day's start); None on a day off."""
    if day.weekday() not in hours.days or day in hours.holidays:
        return None
    closes_on = day + timedelta(days=1) if hours.end == time(0) else day
    return datetime.combine(day, hours.start, tz), datetime.combine(closes_on, hours.end, tz)


def elapsed(
    start: datetime,
    end: datetime,
    *,
    holds: Iterable[tuple[datetime, datetime]] = (),
    hours: BusinessHours | None,
) -> float:
    """Clock seconds from start to end, minus time on hold; working seconds when `hours` is given."""

    def span(a: datetime, b: datetime) -> float:
        if hours is None:
            return max(0.0, (b - a).total_seconds())
        return business_seconds(a, b, hours)

    total = span(start, end)
    for a, b in holds:
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total -= span(lo, hi)
    return max(0.0, total)


@dataclass(frozen=True, slots=True)
class SlaOutcome:
    response: str | None  # "met", "breached", "pending", or None when no target applies
    resolution: str | None
    response_seconds: float | None = None
    resolution_seconds: float | None = None


def _clock_terms(
    view: IncidentView, policy: AnalyticsPolicy
) -> tuple[bool, BusinessHours | None, list[tuple[datetime, datetime]]]:
    """Whether triage set the clocks (its targets and calendar win), the business hours they run in
    (None: around the clock), and the incident's finished holds."""
    from_triage = view.response_target is not None or view.resolution_target is not None
    if from_triage:
        named = view.sla_calendar
        hours = None if named is None else policy.calendars.get(named, policy.business_hours)
    else:
        hours = policy.business_hours if view.priority in policy.business_hours_priorities else None
    holds = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in view.holds]
    return from_triage, hours, holds


def sla_outcome(view: IncidentView, policy: AnalyticsPolicy, *, now: datetime) -> SlaOutcome:
    """Met, breached or pending, per clock. Triage's record wins where it made one (its target,
    calendar, `SlaMet` and `SlaBreached`); otherwise the analytics policy's targets apply."""
    if view.priority is None or view.opened_at is None:
        return SlaOutcome(None, None)
    opened = view.opened_at
    from_triage, hours, holds = _clock_terms(view, policy)
    if view.on_hold_since is not None:
        holds.append((view.on_hold_since, max(now, view.on_hold_since)))

    def judge(
        target: float | None, done: datetime | None, breached: bool, met: bool, *, paused: bool
    ) -> tuple[str | None, float | None]:
        taken = elapsed(opened, done or now, holds=holds if paused else (), hours=hours)
        if breached:
            return "breached", taken
        if met:
            return "met", taken
        if target is None:
            return None, None
        if taken > target:
            return "breached", taken
        return ("met" if done is not None else "pending"), taken

    response, r_secs = judge(
        view.response_target if from_triage else policy.response_targets.get(view.priority),
        view.acknowledged_at,
        view.response_breached,
        view.response_met,
        paused=False,
    )
    resolution, s_secs = judge(
        view.resolution_target if from_triage else policy.resolution_targets.get(view.priority),
        view.resolved_at,
        view.resolution_breached,
        view.resolution_met,
        paused=True,
    )
    return SlaOutcome(response, resolution, r_secs, s_secs)


# --- per-incident figures, for the read store's columns (`services.analytics.aggregates`) ---------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
HORIZON_DAYS = 3660
"""How far ahead a business-hours deadline is looked for; a clock not due by then is judged live."""

Standing = tuple[Literal["met", "breached", "due", "live"] | None, int | None]
"""One SLA clock as the read store keeps it: its outcome where no later instant can change it
("met", "breached"); "due" with the instant (Unix microseconds, None: never) after which it is
breached and until which it is pending; "live" where only `sla_outcome` at the instant asked can
tell (a clock with time on hold, rare); None where no target applies."""


def micros(at: datetime) -> int:
    """Unix time in whole microseconds (naive means UTC): differences of two are exact."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (aware - EPOCH) // MICROSECOND


@lru_cache(maxsize=1024)
def _over_after(offset: float, target: float) -> int:
    """The largest whole number of microseconds d with `offset + d / 1e6 <= target` as floats add.

    `elapsed` sums float seconds, so the instant a clock passes its target is found the way it sums
    (binary search: float addition is monotonic) rather than by subtracting, which could round the
    other way at the boundary."""
    lo, hi = -1, 1
    while offset + hi / 1_000_000 <= target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offset + mid / 1_000_000 <= target:
            lo = mid
        else:
            hi = mid
    return lo


def _windows(start: datetime, hours: BusinessHours) -> Iterator[tuple[datetime, datetime]]:
    """The working periods from the day `start` falls on, as `business_seconds` forms them."""
    tz = ZoneInfo(hours.timezone)
    day = start.astimezone(tz).date()
    for _ in range(HORIZON_DAYS):
        if (period := _period(day, hours, tz)) is not None:
            yield period
        day += timedelta(days=1)


@lru_cache(maxsize=4096)
def due_after(start: datetime, target: float, hours: BusinessHours | None) -> int | None:
    """The last instant (Unix microseconds) at which a clock started at `start`, running without a
    pause, is still within `target`: `elapsed(start, now, hours=hours) > target` exactly when `now`
    is later. None when no instant within `HORIZON_DAYS` passes it.

    Remembered for the latest few thousand clocks: every event of an incident asks again, with
    the same terms, while its view is written (`figures`)."""
    if hours is None:
        return micros(start) + _over_after(0.0, target)
    total = 0.0
    for opens, closes in _windows(start, hours):
        lo = max(opens, start)
        if closes <= lo:
            continue
        period = closes - lo  # as `business_seconds` takes a whole period (wall clock, same zone)
        if period != closes.astimezone(UTC) - lo.astimezone(UTC):
            return None  # a period across a change of UTC offset: its wall and true lengths differ
        whole = total + period.total_seconds()
        if whole > target:  # passed inside this period: `now - lo` is a true difference (UTC `now`)
            return micros(lo) + _over_after(total, target)
        total = whole
    return None


def sla_standing(view: IncidentView, policy: AnalyticsPolicy) -> tuple[Standing, Standing]:
    """Each clock's outcome as far as it does not depend on the instant asked (see `Standing`):
    `sla_outcome(view, policy, now=t)` gives, for every t, "met" or "breached" where this says so,
    "breached" after and "pending" until the instant of a "due", the same for "live" as for a
    document read at t. Mirrors `sla_outcome` case by case."""
    if view.priority is None or view.opened_at is None:
        return (None, None), (None, None)
    opened = view.opened_at
    from_triage, hours, holds = _clock_terms(view, policy)

    def stand(
        target: float | None, done: datetime | None, breached: bool, met: bool, *, paused: bool
    ) -> Standing:
        if breached:
            return "breached", None
        if met:
            return "met", None
        if target is None:
            return None, None
        if paused and view.on_hold_since is not None:
            return "live", None  # the hold runs until the instant asked
        if done is not None:
            taken = elapsed(opened, done, holds=holds if paused else (), hours=hours)
            return ("breached" if taken > target else "met"), None
        if paused and holds:
            return "live", None
        if target < 0:
            return "breached", None  # no elapsed time is below it
        due = due_after(opened, target, hours)
        return ("due", due) if due is not None else ("live", None)

    response = stand(
        view.response_target if from_triage else policy.response_targets.get(view.priority),
        view.acknowledged_at,
        view.response_breached,
        view.response_met,
        paused=False,
    )
    resolution = stand(
        view.resolution_target if from_triage else policy.resolution_targets.get(view.priority),
        view.resolved_at,
        view.resolution_breached,
        view.resolution_met,
        paused=True,
    )
    return response, resolution


FIGURES = (
    "category",
    "opened_us",
    "resolved_us",
    "opened_day",
    "resolved_day",
    "tta_us",
    "ttr_us",
    "ttd_us",
    "csat",
    "latencies",
    "response_sla",
    "response_due",
    "resolution_sla",
    "resolution_due",
)
"""The read store's columns per incident that `services.analytics.aggregates` computes metrics from."""


def figures(view: IncidentView, policy: AnalyticsPolicy) -> tuple[Any, ...]:
    """An incident's `FIGURES`: what `compute` takes from its view, as numbers SQL can sum, order
    and compare (durations in whole microseconds; the float seconds are those divided by 10^6)."""
    opened, resolved = view.opened_at, view.resolved_at
    opened_us = micros(opened) if opened is not None else None
    resolved_us = micros(resolved) if resolved is not None else None
    acked_us = micros(view.acknowledged_at) if view.acknowledged_at is not None else None
    detected_us = micros(view.detected_at) if view.detected_at is not None else None
    latencies = [float(u["latency_seconds"]) for u in view.updates if u.get("latency_seconds") is not None]
    response, resolution = sla_standing(view, policy)
    return (
        view.category,
        opened_us,
        resolved_us,
        _day(opened).isoformat() if opened is not None else None,
        _day(resolved).isoformat() if resolved is not None else None,
        acked_us - opened_us if acked_us is not None and opened_us is not None else None,
        resolved_us - opened_us if resolved_us is not None and opened_us is not None else None,
        opened_us - detected_us
        if detected_us is not None and opened_us is not None and detected_us <= opened_us
        else None,
        int(view.feedback[-1]["score"]) if view.feedback else None,
        orjson.dumps(latencies) if latencies else None,
        *response,
        *resolution,
    )


def mtbf(views: Iterable[IncidentView], *, until: datetime) -> dict[str, dict[str, Any]]:
    """Per service: failures, merged outages, the gaps between them and their mean (MTBF)."""
    outages: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for v in views:
        if v.opened_at is not None:
            outages[v.service].append((v.opened_at, v.resolved_at or max(until, v.opened_at)))
    out: dict[str, dict[str, Any]] = {}
    for service, spans in sorted(outages.items()):
        merged: list[tuple[datetime, datetime]] = []
        for a, b in sorted(spans):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        gaps = [(nxt[0] - cur[1]).total_seconds() for cur, nxt in pairwise(merged)]
        out[service] = {
            "failures": len(spans),
            "outages": len(merged),
            "gaps_seconds": gaps,
            "mtbf_seconds": sum(gaps) / len(gaps) if gaps else None,
        }
    return out


def counted(view: IncidentView, policy: AnalyticsPolicy) -> bool:
    """Whether an incident counts in the metrics (policy may exclude categories and services)."""
    if view.category is not None and view.category in policy.excluded_categories:
        return False
    return view.service not in policy.excluded_services


def in_window(view: IncidentView, start: datetime | None, end: datetime | None) -> bool:
    if view.opened_at is None:
        return False
    return (start is None or view.opened_at >= start) and (end is None or view.opened_at < end)


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def compute(
    views: Iterable[IncidentView],
    *,
    policy: AnalyticsPolicy,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Every metric over the incidents opened in [start, end) that policy counts."""
    chosen = [v for v in views if in_window(v, start, end) and counted(v, policy)]
    tta = [
        (v.acknowledged_at - v.opened_at).total_seconds() for v in chosen if v.acknowledged_at and v.opened_at
    ]
    ttr = [(v.resolved_at - v.opened_at).total_seconds() for v in chosen if v.resolved_at and v.opened_at]
    ttd = [
        (v.opened_at - v.detected_at).total_seconds()
        for v in chosen
        if v.detected_at and v.opened_at and v.detected_at <= v.opened_at
    ]
    outcomes = [sla_outcome(v, policy, now=now) for v in chosen]

    def compliance(kind: str) -> dict[str, Any]:
        results = [getattr(o, kind) for o in outcomes]
        met, breached = results.count("met"), results.count("breached")
        return {
            "met": met,
            "breached": breached,
            "pending": results.count("pending"),
            "percent": round(100 * met / (met + breached), 2) if met + breached else None,
        }

    latencies = [
        float(u["latency_seconds"]) for v in chosen for u in v.updates if u.get("latency_seconds") is not None
    ]
    scores = [v.feedback[-1]["score"] for v in chosen if v.feedback]
    by_day: dict[date, list[float]] = defaultdict(list)
    for v in chosen:
        if v.resolved_at and v.opened_at:
            by_day[_day(v.resolved_at)].append((v.resolved_at - v.opened_at).total_seconds())
    return {
        "window": {
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
        },
        "incidents": len(chosen),
        "open": sum(1 for v in chosen if v.status not in ("resolved", "closed")),
        "mtta_seconds": summary(tta),
        "mttr_seconds": summary(ttr),
        "mttd_seconds": summary(ttd),
        "mtbf": mtbf(chosen, until=end if end is not None and end < now else now),
        "sla": {"response": compliance("response"), "resolution": compliance("resolution")},
        "volume": {
            "by_priority": dict(sorted(Counter(v.priority or "none" for v in chosen).items())),
            "by_service": dict(sorted(Counter(v.service for v in chosen).items())),
            "by_day": {
                d.isoformat(): n
                for d, n in sorted(Counter(_day(v.opened_at) for v in chosen if v.opened_at).items())
            },
        },
        "major_incidents": sum(1 for v in chosen if v.major == "accepted"),
        "status_update_latency_seconds": summary(latencies),
        "csat": {
            "responses": len(scores),
            "mean": round(sum(scores) / len(scores), 2) if scores else None,
            "satisfied_percent": round(100 * sum(1 for s in scores if s >= 4) / len(scores), 2)
            if scores
            else None,
            "distribution": {str(k): scores.count(k) for k in range(1, 6)},
        },
        "mttr_trend": [
            {"day": d.isoformat(), "median_seconds": percentile(xs, 50), "resolved": len(xs)}
            for d, xs in sorted(by_day.items())
        ],
    }

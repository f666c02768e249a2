"""The metrics of `metrics.compute`, from per-day partial aggregates of the read store's figures.

`metrics.compute` defines every figure over incident views; loading and judging every view in a
window cost tens of microseconds per incident, so a question over weeks of incidents took a second.
Here the read store keeps each incident's figures as columns (`metrics.FIGURES`, written with the
incident by live processing and by a rebuild alike), and a `Part` sums up the incidents opened in a
span of time: counts, exact sums, the sorted durations (so percentiles are exact: the values at
the ranks they interpolate between), outages already merged per service, the SLA clocks still
running as the instants they fall due. Parts add up: a window is the parts of the whole UTC days in
it (kept in memory, made again when an event changes an incident opened that day) and of the
partial days at its edges (read each time), so an answer costs about as much per day as per
incident at the edges. A question about one service or priority reads that selection's rows.

What depends on the instant asked is decided per request: a clock still running is breached once
past its due instant; the rare SLA clock with time on hold is judged from its document by
`metrics.sla_outcome`; open incidents' outages last until then. Durations are whole microseconds
and become the same float seconds `compute` reports (`timedelta.total_seconds()` is microseconds
divided by 10^6); means are exact sums divided (`compute` adds floats: within the last bit).
`tests/unit/test_analytics_aggregates.py` checks every figure against `compute`.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain, pairwise, repeat
from typing import Any

import orjson

from services.analytics.metrics import micros, sla_outcome, summary
from services.analytics.projections import IncidentView
from services.analytics.readstore import ReadStore, utc
from shared.policy.analytics import AnalyticsPolicy

US = 1_000_000
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
COLUMNS = (
    "id, service, priority, status, major, opened_us, resolved_us, resolved_day, opened_day, "
    "tta_us, ttr_us, ttd_us, csat, response_sla, response_due, resolution_sla, resolution_due, latencies"
)
SOURCE = "incidents INDEXED BY incidents_figures"
"""A covering index of every figure, in the order of opening."""
CLOCKS = ("response", "resolution")
MERGE_BELOW = 1024
"""Fewer values than this per run are merged (sorting sorted runs is quick); more are selected
from (a halving of the range of values costs a binary search per run)."""


def selection(
    policy: AnalyticsPolicy,
    *,
    start: datetime | None,
    end: datetime | None,
    service: str | None = None,
    priority: str | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause of the incidents `compute` counts: opened in [start, end), of the service
    and priority asked, not left out by the policy."""
    where = ["opened_at IS NOT NULL"]
    args: list[Any] = []
    for clause, value in (
        ("opened_at >= ?", utc(start) if start is not None else None),
        ("opened_at < ?", utc(end) if end is not None else None),
        ("service = ?", service),
        ("priority = ?", priority),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    if policy.excluded_services:
        where.append(f"service NOT IN ({', '.join('?' * len(policy.excluded_services))})")
        args += policy.excluded_services
    if policy.excluded_categories:
        marks = ", ".join("?" * len(policy.excluded_categories))
        where.append(f"(category IS NULL OR category NOT IN ({marks}))")
        args += policy.excluded_categories
    return " AND ".join(where), args


@dataclass
class Outages:
    """One service's incidents in a part: how many, the outages of those resolved (merged), the
    openings of those still open (their outage lasts until the instant asked), and every span as
    it is where one ends before it starts (a clock skew: merged only with all the others)."""

    failures: int = 0
    merged: list[tuple[int, int]] = field(default_factory=list)
    open_from: list[int] = field(default_factory=list)
    spans: list[tuple[int, int | None]] = field(default_factory=list)
    skewed: bool = False


@dataclass
class Part:
    """What the metrics need of the incidents opened in a span of time (see the module)."""

    incidents: int = 0
    open: int = 0
    majors: int = 0
    durations: dict[str, list[int]] = field(default_factory=lambda: {"tta": [], "ttr": [], "ttd": []})
    sums: dict[str, int] = field(default_factory=lambda: {"tta": 0, "ttr": 0, "ttd": 0})
    decided: dict[str, Counter[str]] = field(default_factory=lambda: {c: Counter() for c in CLOCKS})
    due: dict[str, list[int]] = field(default_factory=lambda: {c: [] for c in CLOCKS})
    """Running clocks: the instants after which each is breached (sorted)."""
    never: Counter[str] = field(default_factory=Counter)
    live: list[tuple[str, tuple[bool, bool]]] = field(default_factory=list)
    """Incidents with a clock only `sla_outcome` can judge, and which of the two clocks."""
    scores: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    by_service: Counter[str] = field(default_factory=Counter)
    by_priority: Counter[str] = field(default_factory=Counter)
    by_day: Counter[str] = field(default_factory=Counter)
    resolved: dict[str, list[int]] = field(default_factory=dict)
    """Times to resolve by the day (UTC) of resolution, sorted."""
    outages: dict[str, Outages] = field(default_factory=dict)


def part_of(rows: list[tuple[Any, ...]]) -> Part:
    """The part of some incidents' figure rows (`COLUMNS`, in order of opening), column by column
    (counting and sorting in C where it can: the edges of a window are made on every request)."""
    p = Part()
    if not rows:
        return p
    (
        ids,
        services,
        priorities,
        statuses,
        majors,
        opened,
        resolved,
        resolved_days,
        opened_days,
        tta,
        ttr,
        ttd,
        csat,
        response_sla,
        response_due,
        resolution_sla,
        resolution_due,
        latencies,
    ) = zip(*rows, strict=True)
    p.incidents = len(rows)
    p.open = len(rows) - statuses.count("resolved") - statuses.count("closed")
    p.majors = majors.count("accepted")
    for name, column in (("tta", tta), ("ttr", ttr), ("ttd", ttd)):
        values = [v for v in column if v is not None]
        p.sums[name] = sum(values)
        values.sort()
        p.durations[name] = values
    for day, value in zip(resolved_days, ttr, strict=True):
        if value is not None:
            p.resolved.setdefault(day, []).append(value)
    for clock, states, dues in (
        ("response", response_sla, response_due),
        ("resolution", resolution_sla, resolution_due),
    ):
        counted = Counter(states)
        p.decided[clock] = Counter({k: counted[k] for k in ("met", "breached") if counted[k]})
        if counted["due"]:
            running = [d for state, d in zip(states, dues, strict=True) if state == "due"]
            p.never[clock] = running.count(None)
            p.due[clock] = sorted(d for d in running if d is not None)
    if "live" in response_sla or "live" in resolution_sla:
        for incident_id, a, b in zip(ids, response_sla, resolution_sla, strict=True):
            if a == "live" or b == "live":
                p.live.append((incident_id, (a == "live", b == "live")))
    p.scores = Counter(c for c in csat if c is not None)
    for blob in latencies:
        if blob is not None:
            p.latencies += orjson.loads(blob)
    p.by_service = Counter(services)
    p.by_priority = Counter(x or "none" for x in priorities)
    p.by_day = Counter(opened_days)
    for service, a, b in zip(services, opened, resolved, strict=True):
        o = p.outages.get(service)
        if o is None:
            o = p.outages[service] = Outages()
        o.failures += 1
        o.spans.append((a, b))
        if b is None:
            o.open_from.append(a)
        elif b < a:
            o.skewed = True
    for day_values in p.resolved.values():
        day_values.sort()
    for o in p.outages.values():
        o.merged = merge(sorted((a, b) for a, b in o.spans if b is not None))
    return p


def combined(parts: list[Part]) -> Part:
    """One part of several (of consecutive spans of time, in order): the sums added, the sorted
    runs merged into one, each service's outages merged again (merging is associative)."""
    out = Part()
    out.incidents = sum(p.incidents for p in parts)
    out.open = sum(p.open for p in parts)
    out.majors = sum(p.majors for p in parts)
    for name in out.durations:
        out.durations[name] = sorted(chain.from_iterable(p.durations[name] for p in parts))
        out.sums[name] = sum(p.sums[name] for p in parts)
    for clock in CLOCKS:
        out.due[clock] = sorted(chain.from_iterable(p.due[clock] for p in parts))
    for p in parts:
        for clock in CLOCKS:
            out.decided[clock].update(p.decided[clock])
        out.never.update(p.never)
        out.live += p.live
        out.scores.update(p.scores)
        out.latencies += p.latencies
        out.by_service.update(p.by_service)
        out.by_priority.update(p.by_priority)
        out.by_day.update(p.by_day)
        for day, values in p.resolved.items():
            out.resolved.setdefault(day, []).extend(values)
        for service, o in p.outages.items():
            mine = out.outages.get(service)
            if mine is None:
                mine = out.outages[service] = Outages()
            mine.failures += o.failures
            mine.merged += o.merged
            mine.open_from += o.open_from
            mine.spans += o.spans
            mine.skewed |= o.skewed
    for values in out.resolved.values():
        values.sort()
    for o in out.outages.values():
        o.merged = merge(sorted(o.merged))
    return out


def merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans merged where they overlap or touch, as `metrics.mtbf` merges them."""
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def select(runs: list[list[int]], k: int) -> int:
    """The k-th smallest (from 0) of the values of sorted runs, without merging them: the least
    value with more than k values at or below it, found by halving the range of values."""
    lo, hi = min(r[0] for r in runs), max(r[-1] for r in runs)
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(map(bisect_right, runs, repeat(mid))) > k:
            hi = mid
        else:
            lo = mid + 1
    return lo


def ranked(runs: list[list[int]], n: int, q: float) -> float:
    """`metrics.percentile` of the n values of sorted runs (microseconds), in seconds: the values
    at the two ranks it interpolates between, picked exactly."""
    rank = (n - 1) * q / 100
    low = int(rank)
    high = min(low + 1, n - 1)
    if len(runs) == 1 or n <= MERGE_BELOW * len(runs):
        ordered = runs[0] if len(runs) == 1 else sorted(chain.from_iterable(runs))
        a, b = ordered[low], ordered[high]
    else:
        a = select(runs, low)
        if high == low or sum(map(bisect_right, runs, repeat(a))) > high:
            b = a
        else:  # the next value up: the least of each run's first above `a`
            b = min(r[i] for r in runs if (i := bisect_right(r, a)) < len(r))
    lo, hi = a / US, b / US
    return lo + (hi - lo) * (rank - low)


def _summary(parts: list[Part], name: str) -> dict[str, float | int | None]:
    """count, mean, median and p90 of a duration over the parts, as `metrics.summary`."""
    runs = [p.durations[name] for p in parts if p.durations[name]]
    n = sum(map(len, runs))
    if n == 0:
        return {"count": 0, "mean": None, "median": None, "p90": None}
    return {
        "count": n,
        "mean": sum(p.sums[name] for p in parts) / US / n,
        "median": ranked(runs, n, 50),
        "p90": ranked(runs, n, 90),
    }


def _mtbf(parts: list[Part], until_us: int) -> dict[str, dict[str, Any]]:
    services = sorted({s for p in parts for s in p.outages})
    out: dict[str, dict[str, Any]] = {}
    for service in services:
        mine = [p.outages[service] for p in parts if service in p.outages]
        if any(o.skewed for o in mine):  # merge every span as it is, as `metrics.mtbf` does
            pieces = [(a, b if b is not None else max(until_us, a)) for o in mine for a, b in o.spans]
        else:
            pieces = [s for o in mine for s in o.merged]
            pieces += [(a, max(until_us, a)) for o in mine for a in o.open_from]
        merged = merge(sorted(pieces))
        gaps = [(nxt[0] - cur[1]) / US for cur, nxt in pairwise(merged)]
        out[service] = {
            "failures": sum(o.failures for o in mine),
            "outages": len(merged),
            "gaps_seconds": gaps,
            "mtbf_seconds": sum(gaps) / len(gaps) if gaps else None,
        }
    return out


def answer(
    parts: list[Part],
    live: list[tuple[IncidentView, tuple[bool, bool]]],
    *,
    policy: AnalyticsPolicy,
    now: datetime,
    start: datetime | None,
    end: datetime | None,
) -> dict[str, Any]:
    """`metrics.compute`'s answer from the parts of the window (in order of time) and the views
    of the incidents in it with a clock judged live."""
    now_us = micros(now)
    sla: dict[str, dict[str, Any]] = {}
    for clock in CLOCKS:
        met = sum(p.decided[clock]["met"] for p in parts)
        breached = sum(p.decided[clock]["breached"] for p in parts)
        passed = sum(bisect_left(p.due[clock], now_us) for p in parts)
        pending = sum(len(p.due[clock]) + p.never[clock] for p in parts) - passed
        breached += passed
        sla[clock] = {"met": met, "breached": breached, "pending": pending}
    for view, which in live:
        outcome = sla_outcome(view, policy, now=now)
        for clock, judged_live in zip(CLOCKS, which, strict=True):
            judged = getattr(outcome, clock)
            if judged_live and judged is not None:
                sla[clock][judged] += 1
    for counts in sla.values():
        met, breached = counts["met"], counts["breached"]
        counts["percent"] = round(100 * met / (met + breached), 2) if met + breached else None

    scores: Counter[int] = Counter()
    by_service: Counter[str] = Counter()
    by_priority: Counter[str] = Counter()
    by_day: Counter[str] = Counter()
    resolved: dict[str, list[list[int]]] = {}
    for p in parts:
        scores.update(p.scores)
        by_service.update(p.by_service)
        by_priority.update(p.by_priority)
        by_day.update(p.by_day)
        for day, values in p.resolved.items():
            resolved.setdefault(day, []).append(values)
    responses = sum(scores.values())
    total = sum(k * n for k, n in scores.items())
    trend = []
    for day in sorted(resolved):
        runs = resolved[day]
        n = sum(map(len, runs))
        trend.append({"day": day, "median_seconds": ranked(runs, n, 50), "resolved": n})
    return {
        "window": {
            "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None,
        },
        "incidents": sum(p.incidents for p in parts),
        "open": sum(p.open for p in parts),
        "mtta_seconds": _summary(parts, "tta"),
        "mttr_seconds": _summary(parts, "ttr"),
        "mttd_seconds": _summary(parts, "ttd"),
        "mtbf": _mtbf(parts, micros(end if end is not None and end < now else now)),
        "sla": sla,
        "volume": {
            "by_priority": dict(sorted(by_priority.items())),
            "by_service": dict(sorted(by_service.items())),
            "by_day": dict(sorted(by_day.items())),
        },
        "major_incidents": sum(p.majors for p in parts),
        "status_update_latency_seconds": summary([x for p in parts for x in p.latencies]),
        "csat": {
            "responses": responses,
            "mean": round(total / responses, 2) if responses else None,
            "satisfied_percent": round(100 * (scores[4] + scores[5]) / responses, 2) if responses else None,
            "distribution": {str(k): scores[k] for k in range(1, 6)},
        },
        "mttr_trend": trend,
    }


def _whole_days(first: str, last: str, start: datetime | None, end: datetime | None) -> tuple[date, date]:
    """The whole days (UTC, [from, to)) of the window [start, end) from the first to the last day
    an incident opened (`first`, `last`: the read store's `opened_at`)."""
    data_from = datetime.fromisoformat(first).astimezone(UTC).date()
    data_to = datetime.fromisoformat(last).astimezone(UTC).date() + DAY
    if start is None:
        whole_from = data_from
    else:
        day = start.astimezone(UTC).date()
        whole_from = max(day if _midnight(day) == start else day + DAY, data_from)
    whole_to = data_to if end is None else min(end.astimezone(UTC).date(), data_to)
    return whole_from, whole_to


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), UTC)


class Metrics:
    """The metrics service of one read store under one policy, with the parts of whole days kept
    (each as long as no event changed an incident opened that day: `ReadStore.day_versions`)."""

    def __init__(self, reads: ReadStore, policy: AnalyticsPolicy) -> None:
        self.reads = reads
        self.policy = policy
        self._days: dict[str, tuple[int, int, Part]] = {}
        self._weeks: dict[date, tuple[tuple[int, ...], Part]] = {}

    def _rows(
        self,
        conn: sqlite3.Connection,
        start: datetime | None,
        end: datetime | None,
        service: str | None = None,
        priority: str | None = None,
    ) -> list[tuple[Any, ...]]:
        where, args = selection(self.policy, start=start, end=end, service=service, priority=priority)
        return conn.execute(
            f"SELECT {COLUMNS} FROM {SOURCE} WHERE {where} ORDER BY opened_at, id", args
        ).fetchall()

    def _day(self, conn: sqlite3.Connection, day: date) -> Part:
        key = day.isoformat()
        version = (self.reads.epoch, self.reads.day_versions.get(key, 0))  # read before the rows
        kept = self._days.get(key)
        if kept is not None and kept[:2] == version:
            return kept[2]
        part = part_of(self._rows(conn, _midnight(day), _midnight(day + DAY)))
        self._days[key] = (*version, part)
        return part

    def _week(self, conn: sqlite3.Connection, monday: date) -> Part:
        """The seven days from `monday` combined, kept while none of them changes."""
        days = [monday + timedelta(days=i) for i in range(7)]
        version = (self.reads.epoch, *(self.reads.day_versions.get(d.isoformat(), 0) for d in days))
        kept = self._weeks.get(monday)
        if kept is not None and kept[0] == version:
            return kept[1]
        part = combined([self._day(conn, d) for d in days])
        self._weeks[monday] = (version, part)
        return part

    def _next_day(self, conn: sqlite3.Connection, day: date, until: date) -> date:
        """The first day from `day` on which an incident opened (`until` when none before it): one
        seek of the index, so a window spanning years with a few incidents costs a few parts."""
        (found,) = conn.execute(
            f"SELECT min(opened_at) FROM {SOURCE} WHERE opened_at >= ? AND opened_at < ?",
            (utc(_midnight(day)), utc(_midnight(until))),
        ).fetchone()
        return until if found is None else datetime.fromisoformat(found).astimezone(UTC).date()

    def _parts(
        self,
        conn: sqlite3.Connection,
        start: datetime | None,
        end: datetime | None,
        service: str | None,
        priority: str | None,
    ) -> list[Part]:
        if service is not None or priority is not None:
            return [part_of(self._rows(conn, start, end, service, priority))]
        first, last = conn.execute(  # each an end of the index (not one scan for both)
            f"SELECT (SELECT min(opened_at) FROM {SOURCE}), (SELECT max(opened_at) FROM {SOURCE})"
        ).fetchone()
        if first is None:
            return []
        try:
            whole_from, whole_to = _whole_days(first, last, start, end)
        except OverflowError:  # an instant on the calendar's first or last day: the rows themselves
            return [part_of(self._rows(conn, start, end))]
        if whole_from >= whole_to:  # no whole day in the window: its rows
            return [part_of(self._rows(conn, start, end))]
        parts = []
        if start is not None and start < _midnight(whole_from):
            parts.append(part_of(self._rows(conn, start, _midnight(whole_from))))
        day = whole_from
        while (day := self._next_day(conn, day, whole_to)) < whole_to:  # days with no incident skipped
            if day.weekday() == 0 and day + WEEK <= whole_to:
                parts.append(self._week(conn, day))
                day += WEEK
            else:
                parts.append(self._day(conn, day))
                day += DAY
        if end is not None and end > _midnight(whole_to):
            parts.append(part_of(self._rows(conn, _midnight(whole_to), end)))
        return parts

    def compute(
        self,
        conn: sqlite3.Connection,
        *,
        now: datetime,
        start: datetime | None = None,
        end: datetime | None = None,
        service: str | None = None,
        priority: str | None = None,
    ) -> dict[str, Any]:
        """`metrics.compute` over the incidents of the read store on `conn` (the reader's)."""
        parts = self._parts(conn, start, end, service, priority)
        wanted = dict(chain.from_iterable(p.live for p in parts))  # a few: clocks with time on hold
        live = []
        if wanted:
            marks = ", ".join("?" * len(wanted))
            for incident_id, doc in conn.execute(
                f"SELECT id, doc FROM incidents WHERE id IN ({marks})", tuple(wanted)
            ):
                live.append((IncidentView.from_json(orjson.loads(doc)), wanted[incident_id]))
        return answer(parts, live, policy=self.policy, now=now, start=start, end=end)

    async def __call__(
        self,
        *,
        now: datetime,
        start: datetime | None = None,
        end: datetime | None = None,
        service: str | None = None,
        priority: str | None = None,
    ) -> dict[str, Any]:
        return await self.reads.read(
            lambda conn: self.compute(conn, now=now, start=start, end=end, service=service, priority=priority)
        )

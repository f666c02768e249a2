"""On-call load and response, pure: MTTA per team and per person, pages per person per week, and
pages outside business hours, from the escalation events triage recorded."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from services.triage.escalation import in_hours
from shared.events import EscalationStarted, EscalationStopped, Event, PageRequested
from shared.policy.oncall import OnCallPolicy
from shared.policy.triage import BusinessHours


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    mean_seconds: float | None
    median_seconds: float | None
    p90_seconds: float | None


def summarise(values: list[float]) -> Summary:
    if not values:
        return Summary(0, None, None, None)
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]
    return Summary(len(values), statistics.fmean(values), statistics.median(values), p90)


@dataclass
class Report:
    mtta_by_team: dict[str, Summary] = field(default_factory=dict)
    mtta_by_person: dict[str, Summary] = field(default_factory=dict)
    pages_per_person_week: dict[str, dict[str, int]] = field(default_factory=dict)
    out_of_hours_pages: dict[str, int] = field(default_factory=dict)
    pages: int = 0
    out_of_hours: int = 0


def week(at: datetime) -> str:
    year, number, _ = at.isocalendar()
    return f"{year}-W{number:02d}"


def report(
    events: Iterable[Event],
    policies: OnCallPolicy,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Report:
    """Escalations that started (and pages sent) within [start, end)."""

    def within(at: datetime) -> bool:
        return (start is None or at >= start) and (end is None or at < end)

    started: dict[str, EscalationStarted] = {}
    by_team: dict[str, list[float]] = {}
    by_person: dict[str, list[float]] = {}
    out = Report()
    for event in events:
        match event:
            case EscalationStarted() if within(event.occurred_at):
                started[event.incident_id] = event
            case EscalationStopped(reason="acknowledged") if event.incident_id in started:
                began = started.pop(event.incident_id)
                seconds = (event.occurred_at - began.occurred_at).total_seconds()
                by_team.setdefault(began.team, []).append(seconds)
                by_person.setdefault(event.by or "unknown", []).append(seconds)
            case EscalationStopped():
                started.pop(event.incident_id, None)
            case PageRequested() if within(event.occurred_at):
                out.pages += 1
                weeks = out.pages_per_person_week.setdefault(event.person, {})
                weeks[week(event.occurred_at)] = weeks.get(week(event.occurred_at), 0) + 1
                policy = policies.escalation_policy(event.policy_id)
                hours = policy.business_hours if policy is not None else BusinessHours()
                if not in_hours(hours, event.occurred_at):
                    out.out_of_hours += 1
                    out.out_of_hours_pages[event.person] = out.out_of_hours_pages.get(event.person, 0) + 1
    out.mtta_by_team = {k: summarise(v) for k, v in sorted(by_team.items())}
    out.mtta_by_person = {k: summarise(v) for k, v in sorted(by_person.items())}
    return out

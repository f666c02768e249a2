"""What triage has seen on one service lately (its `service-activity-<service>` stream), for the
storm rule and the problem-recurrence rule. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.events import Event, ProblemSuggested, ServiceActivityRecorded, StormDetected

KEEP = timedelta(days=90)  # the longest window any rule may look back (policy caps problems.days at 90)
KEEP_ALERTS = timedelta(days=1)  # the storm window is capped at a day


@dataclass(frozen=True, slots=True)
class Signal:
    at: datetime
    incident_id: str
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class ServiceActivity:
    incidents: tuple[Signal, ...] = ()
    alerts: tuple[Signal, ...] = ()
    attachments: tuple[Signal, ...] = ()  # alerts that joined an incident, with their fingerprint
    storm_at: datetime | None = None
    suggested: tuple[tuple[str, datetime], ...] = ()  # (suggestion key, when)


def _recent(signals: tuple[Signal, ...], now: datetime, keep: timedelta) -> tuple[Signal, ...]:
    return tuple(s for s in signals if s.at > now - keep)


def evolve_activity(state: ServiceActivity, event: Event) -> ServiceActivity:
    match event:
        case ServiceActivityRecorded():
            at = event.occurred_at
            signal = Signal(at, event.incident_id, event.fingerprint)
            if event.activity == "incident":
                return replace(state, incidents=(*_recent(state.incidents, at, KEEP), signal))
            alerts = (*_recent(state.alerts, at, KEEP_ALERTS), signal)
            if event.fingerprint and not any(
                a.incident_id == event.incident_id and a.fingerprint == event.fingerprint
                for a in state.attachments
            ):
                attachments = (*_recent(state.attachments, at, KEEP), signal)
                return replace(state, alerts=alerts, attachments=attachments)
            return replace(state, alerts=alerts)
        case StormDetected():
            return replace(state, storm_at=event.occurred_at)
        case ProblemSuggested():
            key = suggestion_key(event.service, event.fingerprint)
            return replace(state, suggested=(*state.suggested, (key, event.occurred_at)))
        case _:
            return state


def suggestion_key(service: str, fingerprint: str) -> str:
    return f"alert:{fingerprint}" if fingerprint else f"service:{service}"


def in_window(signals: tuple[Signal, ...], end: datetime, window: timedelta) -> list[Signal]:
    """Signals in (end - window, end]."""
    return [s for s in signals if end - window < s.at <= end]

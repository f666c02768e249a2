"""What triage has seen on one service lately (its `service-activity-<service>` stream), for the
storm rule and the problem-recurrence rule. Pure.

Signals are recorded in time order (the handler never records one earlier than the last), so
windows are counted by bisection and pruned by slicing: a storm of thousands of alerts costs a
copy per alert, not a scan per alert.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
    last_at: datetime | None = None
    incidents: tuple[Signal, ...] = ()  # incidents opened, in time order
    alert_times: tuple[datetime, ...] = ()  # every alert (attached or repeated), in time order
    attachments: Mapping[str, tuple[Signal, ...]] = field(default_factory=dict)  # fingerprint -> incidents
    storm_at: datetime | None = None
    calm: bool = False  # since the last storm, the service was once below every threshold
    suggested: Mapping[str, datetime] = field(default_factory=dict)  # suggestion key -> when

    def at_or_after_last(self, at: datetime) -> datetime:
        """The time to record a signal at: never before the last one."""
        return at if self.last_at is None or at > self.last_at else self.last_at


def _since(signals: tuple[Signal, ...], start: datetime) -> tuple[Signal, ...]:
    return signals[bisect_right(signals, start, key=lambda s: s.at) :]


def evolve_activity(state: ServiceActivity, event: Event) -> ServiceActivity:
    match event:
        case ServiceActivityRecorded():
            at = event.occurred_at
            state = replace(state, last_at=at, calm=state.calm or event.calm)
            signal = Signal(at, event.incident_id, event.fingerprint)
            if event.activity == "incident":
                return replace(state, incidents=(*_since(state.incidents, at - KEEP), signal))
            times = state.alert_times[bisect_right(state.alert_times, at - KEEP_ALERTS) :]
            state = replace(state, alert_times=(*times, at))
            seen = state.attachments.get(event.fingerprint, ())
            if not event.fingerprint or any(s.incident_id == event.incident_id for s in seen):
                return state
            attachments = {**state.attachments, event.fingerprint: (*_since(seen, at - KEEP), signal)}
            return replace(state, attachments=attachments)
        case StormDetected():
            return replace(state, storm_at=event.occurred_at, calm=False)
        case ProblemSuggested():
            key = suggestion_key(event.service, event.fingerprint)
            return replace(state, suggested={**state.suggested, key: event.occurred_at})
        case _:
            return state


def suggestion_key(service: str, fingerprint: str) -> str:
    return f"alert:{fingerprint}" if fingerprint else f"service:{service}"


def in_window(signals: tuple[Signal, ...], end: datetime, window: timedelta) -> list[Signal]:
    """Signals in (end - window, end]."""
    lo = bisect_right(signals, end - window, key=lambda s: s.at)
    hi = bisect_right(signals, end, key=lambda s: s.at)
    return list(signals[lo:hi])


def alerts_in_window(state: ServiceActivity, end: datetime, window: timedelta) -> int:
    """Alerts in (end - window, end]."""
    return bisect_right(state.alert_times, end) - bisect_right(state.alert_times, end - window)

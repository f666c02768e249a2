"""Heartbeats and maintenance windows, the pure part: a monitor that stops checking in is itself an
alert; a service in maintenance records alerts but opens no incident. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.intake.domain import Alert
from shared.events import (
    AlertStatus,
    Event,
    HeartbeatExpired,
    HeartbeatReceived,
    HeartbeatRecovered,
    MaintenanceWindowScheduled,
    Severity,
)
from shared.policy.intake import ResolveRule


@dataclass(frozen=True, slots=True)
class Heartbeat:
    name: str = ""
    timeout_seconds: int = 0
    service: str = ""
    integration_id: str = ""
    last_beat: datetime | None = None
    incident_id: str | None = None  # the incident its expiry opened, until it recovers

    @property
    def due_at(self) -> datetime | None:
        if self.last_beat is None:
            return None
        return self.last_beat + timedelta(seconds=self.timeout_seconds)

    @property
    def expired(self) -> bool:
        return self.incident_id is not None


def evolve_heartbeat(state: Heartbeat, event: Event) -> Heartbeat:
    match event:
        case HeartbeatReceived():
            last = event.occurred_at if state.last_beat is None else max(state.last_beat, event.occurred_at)
            return replace(
                state,
                name=event.name,
                timeout_seconds=event.timeout_seconds,
                service=event.service,
                integration_id=event.integration_id,
                last_beat=last,
            )
        case HeartbeatExpired(incident_id=incident_id):
            return replace(state, incident_id=incident_id)
        case HeartbeatRecovered():
            return replace(state, incident_id=None)
        case _:
            return state


def alert_key(name: str) -> str:
    return f"heartbeat:{name}"


def heartbeat_alert(state: Heartbeat, *, status: AlertStatus, at: datetime) -> Alert:
    """The alert a heartbeat raises when it expires (firing) and when it comes back (resolved)."""
    return Alert(
        key=alert_key(state.name),
        dedup_key=state.name,
        title=f"Heartbeat {state.name!r} missed: no check-in for {state.timeout_seconds}s",
        service=state.service,
        severity=Severity.HIGH,
        status=status,
        source="heartbeat",
        description=f"The monitor {state.name!r} was due by {state.due_at} and did not check in.",
        labels={"heartbeat": state.name},
        starts_at=at if status is AlertStatus.FIRING else None,
        ends_at=at if status is AlertStatus.RESOLVED else None,
        integration_id=state.integration_id,
        resolve_rule=ResolveRule.ALL,
    )


def beat(
    state: Heartbeat, *, name: str, timeout_seconds: int, service: str, integration_id: str, now: datetime
) -> list[Event]:
    """A check-in; one that arrives after expiry also records the recovery."""
    events: list[Event] = [
        HeartbeatReceived(
            name=name,
            timeout_seconds=timeout_seconds,
            service=service,
            integration_id=integration_id,
            occurred_at=now,
        )
    ]
    if state.incident_id is not None:
        events.append(HeartbeatRecovered(incident_id=state.incident_id, name=name, occurred_at=now))
    return events


def expire(state: Heartbeat, *, now: datetime, incident_id: str) -> list[Event]:
    """Expire a heartbeat whose due time has passed (once: an expired heartbeat stays expired)."""
    due = state.due_at
    if due is None or state.expired or due > now:
        return []
    return [
        HeartbeatExpired(
            incident_id=incident_id, name=state.name, due_at=due, service=state.service, occurred_at=due
        )
    ]


@dataclass(frozen=True, slots=True)
class Window:
    id: str
    service: str
    starts_at: datetime
    ends_at: datetime
    reason: str = ""


def window_of(event: MaintenanceWindowScheduled) -> Window:
    return Window(event.window_id, event.service, event.starts_at, event.ends_at, event.reason)


def in_maintenance(windows: Iterable[Window], service: str, at: datetime) -> str | None:
    """The id of a maintenance window covering `service` at `at`, if any."""
    for w in windows:
        if w.service == service and w.starts_at <= at < w.ends_at:
            return w.id
    return None

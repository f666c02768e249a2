"""Intake's pure core: an alert's identity, dedup, and the incident lifecycle. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from shared.envelope import Envelope
from shared.errors import Conflict, DomainError, NotFound
from shared.events import (
    AlertAttached,
    AlertObserved,
    AlertRepeated,
    AlertResolved,
    AlertStatus,
    Event,
    IncidentAcknowledged,
    IncidentOpened,
    IncidentResolved,
    Level,
    Severity,
)


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Alert:
    """One parsed alert, whatever format it came in."""

    key: str
    dedup_key: str
    title: str
    service: str
    severity: Severity
    status: AlertStatus
    source: str
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertKey:
    """The dedup layer: which incident an alert key currently belongs to."""

    incident_id: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    id: str = ""
    status: Status | None = None
    title: str = ""
    service: str = ""
    firing: frozenset[str] = frozenset()
    repeats: dict[str, int] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def open(self) -> bool:
        return self.status in (Status.OPEN, Status.ACKNOWLEDGED)


def evolve_key(state: AlertKey, event: Event) -> AlertKey:
    match event:
        case AlertObserved(incident_id=incident_id) if incident_id:
            return AlertKey(incident_id)
        case _:
            return state


def evolve(state: Incident, event: Event) -> Incident:
    match event:
        case IncidentOpened():
            return Incident(
                id=event.incident_id, status=Status.OPEN, title=event.title, service=event.service
            )
        case AlertAttached(alert_key=key):
            return replace(state, firing=state.firing | {key})
        case AlertRepeated(alert_key=key, count=count):
            return replace(state, repeats={**state.repeats, key: count})
        case AlertResolved(alert_key=key):
            return replace(state, firing=state.firing - {key})
        case IncidentAcknowledged():
            return replace(state, status=Status.ACKNOWLEDGED)
        case IncidentResolved():
            return replace(state, status=Status.RESOLVED)
        case _:
            return state


def fold_key(history: Sequence[Envelope]) -> AlertKey:
    state = AlertKey()
    for env in history:
        state = evolve_key(state, env.event)
    return state


def fold(history: Sequence[Envelope]) -> Incident:
    state = Incident()
    for env in history:
        state = evolve(state, env.event)
    return state


@dataclass(frozen=True, slots=True)
class Decision:
    """What receiving one alert records: on its key stream, and on its incident's stream."""

    incident_id: str
    key_events: list[Event]
    incident_events: list[Event]
    opened: bool


def receive(key: AlertKey, incident: Incident, alert: Alert, *, now: datetime, new_id: str) -> Decision:
    """Dedup then lifecycle. A repeat of an alert in an open incident bumps its counter; an alert
    whose incident is resolved (or that has none) opens a new incident; never attach to a resolved one.

    The key stream records only bindings (key -> incident); repeats and resolves of a bound alert
    are recorded on the incident's stream, whose expected version serialises them."""
    at = alert.starts_at or now
    if incident.open and key.incident_id == incident.id:
        if alert.status is AlertStatus.RESOLVED:
            resolved_at = alert.ends_at or now
            events: list[Event] = [
                AlertResolved(incident_id=incident.id, alert_key=alert.key, occurred_at=resolved_at)
            ]
            if incident.firing <= {alert.key}:
                events.append(
                    IncidentResolved(
                        incident_id=incident.id,
                        by="system",
                        reason="all alerts resolved",
                        occurred_at=resolved_at,
                    )
                )
            return Decision(incident.id, [], events, opened=False)
        count = incident.repeats.get(alert.key, 1) + 1
        return Decision(
            incident.id,
            [],
            [AlertRepeated(incident_id=incident.id, alert_key=alert.key, count=count, occurred_at=now)],
            opened=False,
        )
    if alert.status is AlertStatus.RESOLVED:
        # A resolve for an alert with no open incident: record it on the key, open nothing.
        return Decision(
            key.incident_id or "",
            [
                AlertObserved(
                    incident_id=key.incident_id or "",
                    alert_key=alert.key,
                    status=alert.status,
                    occurred_at=alert.ends_at or now,
                )
            ],
            [],
            opened=False,
        )
    reason = (
        f"alert key {alert.dedup_key!r} had no open incident"
        if key.incident_id is None
        else f"alert key {alert.dedup_key!r} fired again after incident {key.incident_id} was resolved"
    )
    return Decision(
        new_id,
        [AlertObserved(incident_id=new_id, alert_key=alert.key, status=alert.status, occurred_at=at)],
        [
            IncidentOpened(
                incident_id=new_id,
                title=alert.title,
                description=alert.description,
                service=alert.service,
                severity=alert.severity,
                source=alert.source,
                reporter=alert.source,
                detected_at=alert.starts_at,
                occurred_at=at,
            ),
            AlertAttached(
                incident_id=new_id,
                alert_key=alert.key,
                dedup_key=alert.dedup_key,
                title=alert.title,
                severity=alert.severity,
                source=alert.source,
                reason=f"{reason}; opened a new incident",
                labels=alert.labels,
                occurred_at=at,
            ),
        ],
        opened=True,
    )


class IncidentNotOpen(Conflict):
    title = "Incident not open"


def open_manually(
    *,
    incident_id: str,
    title: str,
    description: str,
    service: str,
    severity: Severity,
    impact: Level | None,
    urgency: Level | None,
    reporter: str,
    now: datetime,
) -> list[Event]:
    return [
        IncidentOpened(
            incident_id=incident_id,
            title=title,
            description=description,
            service=service,
            severity=severity,
            source="api",
            reporter=reporter,
            impact=impact,
            urgency=urgency,
            occurred_at=now,
        )
    ]


def acknowledge(state: Incident, *, by: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if state.status is not Status.OPEN:
        raise IncidentNotOpen(
            f"incident {state.id} is {state.status}; only an open incident can be acknowledged"
        )
    return [IncidentAcknowledged(incident_id=state.id, by=by, occurred_at=now)]


def resolve(state: Incident, *, by: str, reason: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if not state.open:
        raise IncidentNotOpen(f"incident {state.id} is {state.status}; it is not open")
    return [IncidentResolved(incident_id=state.id, by=by, reason=reason, occurred_at=now)]


def _must_exist(state: Incident) -> None:
    if not state.exists:
        raise NotFound("no such incident")


__all__ = ["Alert", "AlertKey", "Decision", "DomainError", "Incident", "Status", "receive"]

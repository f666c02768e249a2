"""Intake's pure core: an alert's identity, dedup, grouping and the incident's state. No I/O, no clock.

Three layers, each recorded:
1. identity: `Alert.key` (per integration: fingerprint, dedup_key, cycle key, CloudEvents source+id);
2. dedup: the `alert-<key>` stream binds a key to an incident (`AlertObserved`); a repeat while that
   incident is open is an `AlertRepeated` counter on the incident and opens nothing;
3. grouping: a new key joins the open incident of its group (`group-<...>` stream, `AlertGrouped`)
   when the group's incident was opened within the window; `AlertAttached.reason` says why.
An alert is never attached to a resolved incident. The lifecycle commands live in `lifecycle.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.envelope import Envelope
from shared.errors import DomainError
from shared.events import (
    AlertAttached,
    AlertGrouped,
    AlertObserved,
    AlertRepeated,
    AlertResolved,
    AlertStatus,
    AlertSuppressed,
    Event,
    IncidentAcknowledged,
    IncidentAssigned,
    IncidentClosed,
    IncidentOpened,
    IncidentPutOnHold,
    IncidentReopened,
    IncidentResolved,
    IncidentResumed,
    NoteAdded,
    Severity,
)
from shared.policy.intake import ResolveRule


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Alert:
    """One parsed alert, whatever format it came in, with the rules of the integration it came from."""

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
    integration_id: str = ""
    group_key: str = ""
    acknowledge: bool = False
    raw: dict[str, Any] | None = None
    resolve_rule: ResolveRule = ResolveRule.ALL
    window_seconds: int = 0
    replay_id: str = ""


@dataclass(frozen=True, slots=True)
class AlertKey:
    """The dedup layer: which incident an alert key currently belongs to."""

    incident_id: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """The grouping layer: the incident a group key currently leads to."""

    incident_id: str | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    id: str = ""
    status: Status | None = None
    title: str = ""
    service: str = ""
    firing: frozenset[str] = frozenset()
    repeats: dict[str, int] = field(default_factory=dict)
    alerts: tuple[str, ...] = ()
    resolve_rule: ResolveRule = ResolveRule.ALL
    opened_at: datetime | None = None
    on_hold: bool = False
    assignee: str = ""
    notes: frozenset[str] = frozenset()

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


def evolve_group(state: Group, event: Event) -> Group:
    match event:
        case AlertGrouped(incident_id=incident_id):
            return Group(incident_id)
        case _:
            return state


def _rule(value: str) -> ResolveRule:
    try:
        return ResolveRule(value)
    except ValueError:
        return ResolveRule.ALL


def evolve(state: Incident, event: Event) -> Incident:
    match event:
        case IncidentOpened():
            return Incident(
                id=event.incident_id,
                status=Status.OPEN,
                title=event.title,
                service=event.service,
                resolve_rule=_rule(event.resolve_rule),
                opened_at=event.occurred_at,
            )
        case AlertAttached(alert_key=key):
            alerts = (*(a for a in state.alerts if a != key), key)
            return replace(state, firing=state.firing | {key}, alerts=alerts)
        case AlertRepeated(alert_key=key, count=count):
            return replace(state, repeats={**state.repeats, key: count})
        case AlertResolved(alert_key=key):
            return replace(state, firing=state.firing - {key})
        case IncidentAcknowledged():
            return replace(state, status=Status.ACKNOWLEDGED)
        case IncidentResolved():
            return replace(state, status=Status.RESOLVED, on_hold=False)
        case IncidentClosed():
            return replace(state, status=Status.CLOSED, on_hold=False)
        case IncidentReopened():
            # Its alerts may have moved on (a new incident took a key that fired again after the
            # resolve): a reopened incident holds only the alerts that report firing again.
            return replace(state, status=Status.OPEN, firing=frozenset())
        case IncidentPutOnHold():
            return replace(state, on_hold=True)
        case IncidentResumed():
            return replace(state, on_hold=False)
        case IncidentAssigned(assignee=assignee):
            return replace(state, assignee=assignee)
        case NoteAdded(note_id=note_id) if note_id:
            return replace(state, notes=state.notes | {note_id})
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
    """What receiving one alert records: on its key stream, its group stream and its incident's stream."""

    incident_id: str
    key_events: list[Event]
    incident_events: list[Event]
    opened: bool
    group_events: list[Event] = field(default_factory=list)
    action: str = ""

    @property
    def outcome(self) -> str:
        """opened, attached, repeated, resolved, acknowledged, suppressed or recorded."""
        return self.action or ("opened" if self.opened else "recorded")


def sender_times(alert: Alert, *, now: datetime, max_age: timedelta) -> Alert:
    """The alert with its sender's times as far as they are believed: a time ahead of `now` (the
    sender's clock runs fast) is `now`; one older than `max_age` (a clock far off, a zero time the
    sender did not mean) is dropped, so the receive time stands in. An incident never opens in the
    future, and a stray year cannot stretch MTTR or MTTD over centuries."""

    def believed(at: datetime | None) -> datetime | None:
        return None if at is None or at < now - max_age else min(at, now)

    starts, ends = believed(alert.starts_at), believed(alert.ends_at)
    if (starts, ends) == (alert.starts_at, alert.ends_at):
        return alert
    return replace(alert, starts_at=starts, ends_at=ends)


def _resolves(incident: Incident, key: str) -> str | None:
    """Why resolving alert `key` resolves the incident under its resolve rule, or None."""
    match incident.resolve_rule:
        case ResolveRule.ALL:
            return "all alerts resolved" if incident.firing <= {key} else None
        case ResolveRule.FIRST:
            first = incident.alerts[0] if incident.alerts else key
            return "its first alert resolved (resolve rule: first)" if first == key else None
        case ResolveRule.LAST:
            last = incident.alerts[-1] if incident.alerts else key
            return "its most recent alert resolved (resolve rule: last)" if last == key else None
        case _:
            return None


def _in_open_incident(incident: Incident, alert: Alert, *, now: datetime) -> Decision:
    common = {"incident_id": incident.id, "alert_key": alert.key, "integration_id": alert.integration_id}
    if alert.acknowledge:
        if incident.status is Status.OPEN:
            ack = IncidentAcknowledged(
                incident_id=incident.id, by=f"{alert.source} ({alert.dedup_key})", occurred_at=now
            )
            return Decision(incident.id, [], [ack], opened=False, action="acknowledged")
        return Decision(incident.id, [], [], opened=False, action="recorded")
    if alert.status is AlertStatus.RESOLVED:
        if alert.key not in incident.firing:
            return Decision(incident.id, [], [], opened=False, action="recorded")
        resolved_at = alert.ends_at or now
        events: list[Event] = [AlertResolved(**common, raw=alert.raw, occurred_at=resolved_at)]
        why = _resolves(incident, alert.key)
        if why is not None:
            events.append(
                IncidentResolved(incident_id=incident.id, by="system", reason=why, occurred_at=resolved_at)
            )
        return Decision(incident.id, [], events, opened=False, action="resolved")
    if alert.key not in incident.firing:
        again = _attached(
            incident.id, alert, "it fired again while its incident is still open", at=alert.starts_at or now
        )
        return Decision(incident.id, [], [again], opened=False, action="attached")
    count = incident.repeats.get(alert.key, 1) + 1
    repeat = AlertRepeated(**common, count=count, raw=alert.raw, occurred_at=now)
    return Decision(incident.id, [], [repeat], opened=False, action="repeated")


def _attached(incident_id: str, alert: Alert, reason: str, *, at: datetime) -> AlertAttached:
    return AlertAttached(
        incident_id=incident_id,
        alert_key=alert.key,
        dedup_key=alert.dedup_key,
        title=alert.title,
        severity=alert.severity,
        source=alert.source,
        reason=reason,
        labels=alert.labels,
        raw=alert.raw,
        integration_id=alert.integration_id,
        group_key=alert.group_key,
        occurred_at=at,
    )


def _group_join(group: Group | None, incident: Incident | None, alert: Alert, at: datetime) -> str:
    """Why the alert may join its group's incident ('' when it may not), or why not, prefixed '!'."""
    if not alert.group_key:
        return "!its integration does not group alerts"
    if group is None or group.incident_id is None or incident is None or not incident.exists:
        return f"!group {alert.group_key!r} had no incident"
    if not incident.open:
        return f"!group {alert.group_key!r} led to incident {incident.id}, which is {incident.status}"
    if alert.window_seconds and incident.opened_at is not None:
        age = (at - incident.opened_at).total_seconds()
        if age > alert.window_seconds:
            return (
                f"!group {alert.group_key!r} incident {incident.id} was opened {int(age)}s before, "
                f"outside the {alert.window_seconds}s window"
            )
        within = f", opened {max(int(age), 0)}s before, within the {alert.window_seconds}s window"
    else:
        within = " (no window)"
    return f"grouped with incident {incident.id}: same group {alert.group_key!r}{within}"


def receive(
    key: AlertKey,
    incident: Incident,
    alert: Alert,
    *,
    now: datetime,
    new_id: str,
    group: Group | None = None,
    group_incident: Incident | None = None,
    maintenance: str | None = None,
) -> Decision:
    """Dedup, then grouping, then the lifecycle. A repeat of an alert in an open incident bumps its
    counter; a new key joins its group's open incident within the window; otherwise it opens a new
    incident. Never attach to a resolved incident. In a maintenance window (`maintenance` names it),
    what would open or join an incident is recorded as `AlertSuppressed` instead."""
    at = alert.starts_at or now
    if incident.open and key.incident_id == incident.id:
        return _in_open_incident(incident, alert, now=now)
    if alert.acknowledge:
        return Decision(key.incident_id or "", [], [], opened=False, action="recorded")  # dropped, as PD does
    if alert.status is AlertStatus.RESOLVED:
        # A resolve for an alert with no open incident: record it on the key, open nothing.
        observed = AlertObserved(
            incident_id=key.incident_id or "",
            alert_key=alert.key,
            status=alert.status,
            integration_id=alert.integration_id,
            raw=alert.raw,
            occurred_at=alert.ends_at or now,
        )
        return Decision(key.incident_id or "", [observed], [], opened=False, action="recorded")
    if maintenance is not None:
        suppressed = AlertSuppressed(
            alert_key=alert.key,
            service=alert.service,
            title=alert.title,
            status=alert.status,
            window_id=maintenance,
            reason=f"service {alert.service!r} is in maintenance window {maintenance!r}",
            integration_id=alert.integration_id,
            raw=alert.raw,
            occurred_at=at,
        )
        return Decision("", [suppressed], [], opened=False, action="suppressed")
    why_key = (
        f"alert key {alert.dedup_key!r} had no open incident"
        if key.incident_id is None
        else f"alert key {alert.dedup_key!r} fired again after incident {key.incident_id} was resolved"
    )
    joined = _group_join(group, group_incident, alert, at)
    observed_as = {"alert_key": alert.key, "status": alert.status, "integration_id": alert.integration_id}
    if not joined.startswith("!") and group_incident is not None:
        return Decision(
            group_incident.id,
            [AlertObserved(incident_id=group_incident.id, **observed_as, occurred_at=at)],
            [_attached(group_incident.id, alert, f"{why_key}; {joined}", at=at)],
            opened=False,
            action="attached",
        )
    grouped: list[Event] = (
        [AlertGrouped(group_key=alert.group_key, incident_id=new_id, alert_key=alert.key, occurred_at=at)]
        if alert.group_key
        else []
    )
    return Decision(
        new_id,
        [AlertObserved(incident_id=new_id, **observed_as, occurred_at=at)],
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
                integration_id=alert.integration_id,
                group_key=alert.group_key,
                resolve_rule=alert.resolve_rule.value,
                labels=alert.labels,
                occurred_at=at,
            ),
            _attached(new_id, alert, f"{why_key}; {joined.removeprefix('!')}; opened a new incident", at=at),
        ],
        opened=True,
        group_events=grouped,
        action="opened",
    )


__all__ = ["Alert", "AlertKey", "Decision", "DomainError", "Group", "Incident", "Status", "receive"]

"""What intake knows from its own log: integrations, heartbeats, maintenance windows and per-integration
counts. A follower folds intake's log into it (so it is rebuilt after a restart and shared by every
instance on one store); writes on this instance also apply at once, so a new key works immediately.

What this instance commits is folded from the envelopes the store returned (`committed`), in log
order, instead of being read back and parsed again by the follower: on a store whose log order is
the gap-free position (SQLite, memory), an envelope that follows the checkpoint is folded at once and
the checkpoint moves past it; anything else (another writer's event in between, PostgreSQL's
transaction order) waits for the follower, which folds every envelope exactly once, in order."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.intake.heartbeats import Heartbeat, Window, evolve_heartbeat, window_of
from shared.envelope import Checkpoint, Envelope
from shared.events import (
    AlertAttached,
    AlertChangeRecorded,
    AlertObserved,
    AlertRepeated,
    AlertResolved,
    AlertSuppressed,
    Event,
    HeartbeatExpired,
    HeartbeatReceived,
    HeartbeatRecovered,
    IncidentClosed,
    IncidentOpened,
    IncidentReopened,
    IncidentResolved,
    IntegrationCreated,
    IntegrationRequestRefused,
    MaintenanceWindowScheduled,
    Severity,
)
from shared.policy.intake import GroupBy, Grouping, ResolveRule

DEFAULT_ID = "default"


@dataclass(frozen=True, slots=True)
class Integration:
    id: str
    name: str
    source_type: str
    default_service: str
    key_hash: str = ""
    severity_map: dict[str, Severity] = field(default_factory=dict)
    resolve_rule: ResolveRule = ResolveRule.ALL
    grouping: Grouping | None = None  # None: the policy's default for the format it posts
    hmac_secret: str | None = None
    signature_header: str | None = None
    timestamp_header: str | None = None
    created_at: datetime | None = None
    created_by: str = ""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "source_type": self.source_type,
            "default_service": self.default_service,
            "severity_map": {k: v.value for k, v in self.severity_map.items()},
            "resolve_rule": self.resolve_rule.value,
            "grouping": None if self.grouping is None else self.grouping.model_dump(mode="json"),
            "hmac": self.hmac_secret is not None,
            "signature_header": self.signature_header,
            "timestamp_header": self.timestamp_header,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "created_by": self.created_by,
        }


def integration_of(event: IntegrationCreated) -> Integration:
    grouping = None
    if event.group_by != "policy":
        try:
            grouping = Grouping(
                by=GroupBy(event.group_by),
                labels=tuple(event.group_labels),
                window_seconds=event.group_window_seconds,
            )
        except ValueError:
            grouping = None
    try:
        rule = ResolveRule(event.resolve_rule)
    except ValueError:
        rule = ResolveRule.ALL
    return Integration(
        id=event.integration_id,
        name=event.name,
        source_type=event.source_type,
        default_service=event.default_service,
        key_hash=event.key_hash,
        severity_map=dict(event.severity_map),
        resolve_rule=rule,
        grouping=grouping,
        hmac_secret=event.hmac_secret,
        signature_header=event.signature_header,
        timestamp_header=event.timestamp_header,
        created_at=event.occurred_at,
        created_by=event.by,
    )


@dataclass(frozen=True, slots=True)
class Stats:
    alerts: int = 0
    incidents_opened: int = 0
    grouped: int = 0
    repeats: int = 0
    resolved: int = 0
    suppressed: int = 0
    changes: int = 0
    last_received_at: datetime | None = None


COUNTED = (AlertAttached, AlertRepeated, AlertResolved, AlertSuppressed, AlertChangeRecorded, AlertObserved)


def tally(stats: Stats, event: Event, recorded_at: datetime) -> Stats:
    """Per-integration counters from one of its events."""
    match event:
        case IncidentOpened():
            return replace(stats, incidents_opened=stats.incidents_opened + 1)
        case AlertAttached(reason=reason):
            grouped = stats.grouped + (1 if "grouped with incident" in reason else 0)
            stats = replace(stats, alerts=stats.alerts + 1, grouped=grouped)
        case AlertRepeated():
            stats = replace(stats, alerts=stats.alerts + 1, repeats=stats.repeats + 1)
        case AlertResolved():
            stats = replace(stats, alerts=stats.alerts + 1, resolved=stats.resolved + 1)
        case AlertSuppressed():
            stats = replace(stats, alerts=stats.alerts + 1, suppressed=stats.suppressed + 1)
        case AlertChangeRecorded():
            stats = replace(stats, changes=stats.changes + 1)
        case AlertObserved(incident_id=incident_id) if not incident_id:
            stats = replace(stats, alerts=stats.alerts + 1, resolved=stats.resolved + 1)
        case _:
            return stats
    last = stats.last_received_at
    return replace(stats, last_received_at=recorded_at if last is None else max(last, recorded_at))


@dataclass(frozen=True, slots=True)
class Failure:
    count: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None


@dataclass
class Registry:
    integrations: dict[str, Integration] = field(default_factory=dict)
    by_hash: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Stats] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    heartbeats: dict[str, Heartbeat] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)
    open_by_service: dict[str, dict[str, None]] = field(default_factory=dict)
    checkpoint: Checkpoint = (0, 0)
    services: dict[str, str] = field(default_factory=dict)  # incident id -> its service
    committed_here: dict[int, Envelope] = field(default_factory=dict)  # position -> not yet folded

    def fold(self, env: Envelope) -> None:
        """Fold the log's next envelope (counted) and move the checkpoint past it; one already
        folded (committed here, or read twice) changes nothing."""
        if env.checkpoint <= self.checkpoint:
            return
        self.committed_here.pop(env.position, None)
        self.apply(env)
        self.checkpoint = env.checkpoint
        self._fold_committed_here()

    def committed(self, envelopes: list[Envelope]) -> None:
        """Envelopes this instance has just committed: folded now if the log has nothing between
        them and the checkpoint, else by the follower when it reads them."""
        for env in envelopes:
            if env.tx == 0 and env.checkpoint > self.checkpoint:
                self.committed_here[env.position] = env
        self._fold_committed_here()

    def _fold_committed_here(self) -> None:
        tx, position = self.checkpoint
        while tx == 0 and (env := self.committed_here.pop(position + 1, None)) is not None:
            self.apply(env)
            self.checkpoint = tx, position = env.checkpoint

    def add(self, integration: Integration) -> None:
        self.integrations[integration.id] = integration
        if integration.key_hash:
            self.by_hash[integration.key_hash] = integration.id

    def apply(self, env: Envelope, *, count: bool = True) -> None:
        """Fold one event of intake's own log. Only the log follower counts (`count`), so a write
        applied at once on this instance and again by the follower never counts twice."""
        event = env.event
        match event:
            case IntegrationCreated():
                self.add(integration_of(event))
            case MaintenanceWindowScheduled():
                self.windows[event.window_id] = window_of(event)
            case HeartbeatReceived() | HeartbeatExpired() | HeartbeatRecovered():
                self.heartbeat(event)
            case IncidentOpened():
                self.open_by_service.setdefault(event.service, {})[event.incident_id] = None
                self.services[event.incident_id] = event.service
            case IncidentReopened():
                service = self.services.get(event.incident_id)
                if service is not None:
                    self.open_by_service.setdefault(service, {})[event.incident_id] = None
            case IncidentResolved() | IncidentClosed():
                service = self.services.get(event.incident_id)
                if service is not None:
                    self.open_by_service.get(service, {}).pop(event.incident_id, None)
        integration_id = getattr(event, "integration_id", "")
        if not count:
            return
        if isinstance(event, IntegrationRequestRefused):
            self.failed(event.integration_id, f"{event.status} {event.error}", event.occurred_at)
            return
        if (
            isinstance(event, (*COUNTED, IncidentOpened))
            and isinstance(integration_id, str)
            and integration_id
        ):
            self.stats[integration_id] = tally(
                self.stats.get(integration_id, Stats()), event, env.recorded_at
            )

    def open_incidents(self, service: str) -> list[str]:
        """The open incidents of a service as far as the log has been read, oldest first."""
        return list(self.open_by_service.get(service, {}))

    def heartbeat(self, event: Event) -> None:
        name = str(getattr(event, "name", ""))
        self.heartbeats[name] = evolve_heartbeat(self.heartbeats.get(name, Heartbeat(name=name)), event)

    def failed(self, integration_id: str, error: str, at: datetime) -> None:
        previous = self.failures.get(integration_id, Failure())
        self.failures[integration_id] = Failure(previous.count + 1, error[:1000], at)

    def due_heartbeats(self, now: datetime) -> list[str]:
        return sorted(
            name
            for name, hb in self.heartbeats.items()
            if not hb.expired and hb.due_at is not None and hb.due_at <= now
        )

"""Intake's shell: load, decide, append. Nothing else.

Alerts of one lane (their group when the integration groups, else their key) arriving together are
decided one after another on one in-memory state and appended in one commit (a per-lane batch), so
a storm of duplicates costs one write, not one optimistic-concurrency conflict per copy. The streams'
expected versions (key, group, incident) still arbitrate between writers in other processes: on a
conflict the whole batch is decided again from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.intake import domain, heartbeats
from services.intake.domain import Alert, AlertKey, Decision, Group, Incident
from services.intake.heartbeats import Heartbeat, Window, in_maintenance
from services.intake.registry import Registry
from shared.aggregates import Aggregates, deciding
from shared.clock import Clock
from shared.events import (
    AlertChangeRecorded,
    AlertStatus,
    CloudEventReceived,
    Event,
    IntegrationRequestRefused,
)
from shared.policy.intake import IntakePolicy
from shared.store import ConcurrencyError, EventStore, StoreUnavailable, Write

MAX_CONFLICT_RETRIES = 100


def incident_stream(incident_id: str) -> str:
    return f"incident-{incident_id}"


def key_stream(key: str) -> str:
    return f"alert-{key}"


def group_stream(group_key: str) -> str:
    return f"group-{group_key}"


def heartbeat_stream(name: str) -> str:
    return f"heartbeat-{name}"


def replay_stream(replay_id: str) -> str:
    return "cloudevent-" + hashlib.sha256(replay_id.encode()).hexdigest()[:40]


Pending = list[tuple[Alert, "asyncio.Future[Decision]"]]


class Staging:
    """The streams one batch reads and writes: state as of the store plus what the batch decided."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.states: dict[str, tuple[Any, int]] = {}
        self.writes: dict[str, tuple[int, list[Event]]] = {}

    async def _load(self, stream: str, aggregates: Aggregates[Any]) -> Any:
        if stream not in self.states:
            self.states[stream] = await aggregates.load(stream)
        return self.states[stream][0]

    async def key(self, key: str) -> AlertKey:
        state: AlertKey = await self._load(key_stream(key), self.intake.keys)
        return state

    async def group(self, group_key: str) -> Group:
        state: Group = await self._load(group_stream(group_key), self.intake.groups)
        return state

    async def incident(self, incident_id: str) -> Incident:
        state: Incident = await self._load(incident_stream(incident_id), self.intake.incidents)
        return state

    async def seen(self, replay_id: str) -> bool:
        stream = replay_stream(replay_id)
        if stream not in self.states:
            self.states[stream] = (None, len(await self.intake.store.read(stream)))
        return self.states[stream][1] > 0 or stream in self.writes

    def stage(self, stream: str, events: Sequence[Event], evolve: Callable[[Any, Event], Any]) -> None:
        if not events:
            return
        state, version = self.states.get(stream, (None, 0))
        self.writes.setdefault(stream, (version, []))[1].extend(events)
        for event in events:
            state = evolve(state, event)
        self.states[stream] = (state, version)

    async def decide(
        self, alert: Alert, *, now: datetime, new_id: str, windows: Sequence[Window]
    ) -> Decision:
        alert = domain.sender_times(alert, now=now, max_age=self.intake.sender_max_age)
        if alert.replay_id:
            if await self.seen(alert.replay_id):
                return Decision("", [], [], opened=False, action="duplicate")
            guard = CloudEventReceived(
                source=alert.replay_id.split("\n", 1)[0],
                id=alert.replay_id.split("\n", 1)[-1],
                alert_key=alert.key,
                occurred_at=now,
            )
            self.stage(replay_stream(alert.replay_id), [guard], lambda s, e: s)
        key = await self.key(alert.key)
        incident = await self.incident(key.incident_id) if key.incident_id else Incident()
        group = await self.group(alert.group_key) if alert.group_key else None
        group_incident = await self.incident(group.incident_id) if group and group.incident_id else None
        at = alert.starts_at or now
        maintenance = in_maintenance(windows, alert.service, at)
        decision = domain.receive(
            key,
            incident,
            alert,
            now=now,
            new_id=new_id,
            group=group,
            group_incident=group_incident,
            maintenance=maintenance,
        )
        self.stage(key_stream(alert.key), decision.key_events, domain.evolve_key)
        if decision.group_events:
            self.stage(group_stream(alert.group_key), decision.group_events, domain.evolve_group)
        if decision.incident_events:
            stream = incident_stream(decision.incident_id)
            self.states.setdefault(stream, (Incident(), 0))
            self.stage(stream, decision.incident_events, domain.evolve)
        return decision

    def commit_writes(self) -> list[Write]:
        return [Write(s, events, v) for s, (v, events) in self.writes.items()]


@dataclass
class Intake:
    store: EventStore
    clock: Clock
    new_id: Callable[[], str]
    registry: Registry = field(default_factory=Registry)
    static_windows: Sequence[Window] = ()
    sender_max_age: timedelta = timedelta(seconds=IntakePolicy().sender_time_max_age_seconds)
    in_flight: int = 0
    _catching_up: asyncio.Lock = field(default_factory=asyncio.Lock)
    _pending: dict[str, Pending] = field(default_factory=dict)
    _draining: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.keys: Aggregates[AlertKey] = Aggregates(self.store, AlertKey, domain.evolve_key)
        self.groups: Aggregates[Group] = Aggregates(self.store, Group, domain.evolve_group)
        self.incidents: Aggregates[Incident] = Aggregates(self.store, Incident, domain.evolve)
        self.beats: Aggregates[Heartbeat] = Aggregates(self.store, Heartbeat, heartbeats.evolve_heartbeat)

    def windows(self) -> list[Window]:
        return [*self.static_windows, *self.registry.windows.values()]

    async def receive(self, alert: Alert) -> Decision:
        """Dedup, group and attach one alert; resolves once its decision is durably appended."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        lane = f"group:{alert.group_key}" if alert.group_key else f"key:{alert.key}"
        queue = self._pending.get(lane)
        if queue is not None:
            queue.append((alert, future))  # a batch for this lane is being written: join the next one
        else:
            self._pending[lane] = [(alert, future)]
            task = asyncio.create_task(self._drain(lane))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        self.in_flight += 1
        try:
            return await future
        finally:
            self.in_flight -= 1

    async def _drain(self, lane: str) -> None:
        while batch := self._pending.get(lane):
            self._pending[lane] = []
            try:
                decisions = await self._decide_and_append(batch)
            except Exception as error:  # the store's error reaches every waiting request
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (_, future), decision in zip(batch, decisions, strict=True):
                    if not future.done():
                        future.set_result(decision)
        self._pending.pop(lane, None)

    async def _decide_and_append(self, batch: Pending) -> list[Decision]:
        for _ in range(MAX_CONFLICT_RETRIES):
            staging = Staging(self)
            now, windows = self.clock(), self.windows()
            with deciding() as grounds:
                decisions = [
                    await staging.decide(alert, now=now, new_id=self.new_id(), windows=windows)
                    for alert, _ in batch
                ]
            writes = staging.commit_writes()
            try:
                committed = await self.store.commit([*grounds.assertions(writes), *writes])
            except ConcurrencyError:
                continue
            self.registry.committed(committed.envelopes)
            return decisions
        raise ConcurrencyError(key_stream(batch[0][0].key), -1, -1)

    async def load(self, incident_id: str) -> tuple[Incident, int]:
        return await self.incidents.load(incident_stream(incident_id))

    async def append(self, incident_id: str, events: list[Event], expected_version: int) -> int:
        if events:
            committed = await self.store.commit(
                [Write(incident_stream(incident_id), events, expected_version)]
            )
            self.registry.committed(committed.envelopes)
        return expected_version + len(events)

    async def change(
        self, incident_id: str, decide: Callable[[Incident], list[Event]], if_match: int | None
    ) -> int:
        """Load, decide, append with the version the caller saw (If-Match) or the one just read."""
        state, version = await self.load(incident_id)
        if if_match is not None and if_match != version:
            raise PreconditionFailed(
                f"incident {incident_id} is at version {version}, If-Match said {if_match}; reload and retry"
            )
        return await self.append(incident_id, decide(state), version)

    async def record(self, stream: str, events: list[Event], expected_version: int | None = None) -> None:
        """Append facts that decide nothing (change events, integrations, maintenance windows)."""
        committed = await self.store.commit([Write(stream, events, expected_version)])
        for env in committed.envelopes:
            self.registry.apply(env, count=False)
        self.registry.committed(committed.envelopes)

    async def refused(self, integration_id: str, status: int, error: str) -> None:
        """Record a refused request for its integration's owner to see; an outage loses the record,
        never the answer."""
        event = IntegrationRequestRefused(
            integration_id=integration_id, status=status, error=error[:1000], occurred_at=self.clock()
        )
        with contextlib.suppress(StoreUnavailable):
            committed = await self.store.commit([Write(f"integration-{integration_id}", [event], None)])
            self.registry.committed(committed.envelopes)

    async def catch_up(self, page: int = 1000) -> None:
        """Fold what intake's log holds beyond the registry's checkpoint into the registry."""
        async with self._catching_up:
            while True:
                batch = await self.store.read_all(after=self.registry.checkpoint, limit=page)
                for env in batch:
                    self.registry.fold(env)
                if len(batch) < page:
                    return

    async def record_change(self, change_id: str, change: AlertChangeRecorded) -> None:
        """A change event is kept under its service (`change-<id>`, counted for its integration) and
        copied onto the timeline of every open incident of that service, where a responder looks for
        what changed. It opens nothing."""
        await self.catch_up()
        copies = [
            Write(
                incident_stream(i), [change.model_copy(update={"incident_id": i, "integration_id": ""})], None
            )
            for i in self.registry.open_incidents(change.service)
        ]
        committed = await self.store.commit([Write(f"change-{change_id}", [change], 0), *copies])
        self.registry.committed(committed.envelopes)

    async def heartbeat(
        self, name: str, *, timeout_seconds: int, service: str, integration_id: str
    ) -> Heartbeat:
        """A check-in; one after expiry resolves the incident the expiry opened, in the same commit."""
        for _ in range(MAX_CONFLICT_RETRIES):
            state, version = await self.beats.load(heartbeat_stream(name))
            now = self.clock()
            events = heartbeats.beat(
                state,
                name=name,
                timeout_seconds=timeout_seconds,
                service=service,
                integration_id=integration_id,
                now=now,
            )
            staging = Staging(self)
            if state.expired:
                back = heartbeats.heartbeat_alert(state, status=AlertStatus.RESOLVED, at=now)
                await staging.decide(back, now=now, new_id=self.new_id(), windows=())
            writes = [*staging.commit_writes(), Write(heartbeat_stream(name), events, version)]
            try:
                committed = await self.store.commit(writes)
            except ConcurrencyError:
                continue
            for env in committed.envelopes:
                if env.stream == heartbeat_stream(name):
                    self.registry.apply(env, count=False)
                    state = heartbeats.evolve_heartbeat(state, env.event)
            self.registry.committed(committed.envelopes)
            return state
        raise ConcurrencyError(heartbeat_stream(name), -1, -1)

    async def expire_heartbeat(self, name: str) -> Decision | None:
        """The durable timer's step: expire an overdue heartbeat and open (or join) its incident."""
        for _ in range(MAX_CONFLICT_RETRIES):
            state, version = await self.beats.load(heartbeat_stream(name))
            now = self.clock()
            staging = Staging(self)
            if state.due_at is None or state.expired or state.due_at > now:
                return None
            alert = heartbeats.heartbeat_alert(state, status=AlertStatus.FIRING, at=state.due_at)
            decision = await staging.decide(alert, now=now, new_id=self.new_id(), windows=self.windows())
            expired = heartbeats.expire(state, now=now, incident_id=decision.incident_id)
            writes = [*staging.commit_writes(), Write(heartbeat_stream(name), expired, version)]
            try:
                committed = await self.store.commit(writes)
            except ConcurrencyError:
                continue
            for env in committed.envelopes:
                if env.stream == heartbeat_stream(name):
                    self.registry.apply(env, count=False)
            self.registry.committed(committed.envelopes)
            return decision
        raise ConcurrencyError(heartbeat_stream(name), -1, -1)


class PreconditionFailed(domain.DomainError):
    status = 412
    title = "Precondition failed"

"""Intake's shell: load, decide, append. Nothing else.

Copies of one alert arriving together are decided one after another on one in-memory state and
appended in one commit (a per-key batch), so a storm of duplicates costs one write, not one
optimistic-concurrency conflict per copy. The streams' expected versions still arbitrate between
writers in other processes: on a conflict the whole batch is decided again from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from services.intake import domain
from services.intake.domain import Alert, AlertKey, Decision, Incident
from shared.aggregates import Aggregates
from shared.clock import Clock
from shared.events import Event
from shared.store import ConcurrencyError, EventStore, Write

MAX_CONFLICT_RETRIES = 100


def incident_stream(incident_id: str) -> str:
    return f"incident-{incident_id}"


def key_stream(key: str) -> str:
    return f"alert-{key}"


Pending = list[tuple[Alert, "asyncio.Future[Decision]"]]


@dataclass
class Intake:
    store: EventStore
    clock: Clock
    new_id: Callable[[], str]
    _pending: dict[str, Pending] = field(default_factory=dict)
    _draining: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.keys: Aggregates[AlertKey] = Aggregates(self.store, AlertKey, domain.evolve_key)
        self.incidents: Aggregates[Incident] = Aggregates(self.store, Incident, domain.evolve)

    async def receive(self, alert: Alert) -> Decision:
        """Dedup and attach one alert; resolves once its decision is durably appended."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        queue = self._pending.get(alert.key)
        if queue is not None:
            queue.append((alert, future))  # a batch for this key is being written: join the next one
        else:
            self._pending[alert.key] = [(alert, future)]
            task = asyncio.create_task(self._drain(alert.key))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        return await future

    async def _drain(self, key: str) -> None:
        while batch := self._pending.get(key):
            self._pending[key] = []
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
        self._pending.pop(key, None)

    async def _decide_and_append(self, batch: Pending) -> list[Decision]:
        stream_of_key = key_stream(batch[0][0].key)
        for _ in range(MAX_CONFLICT_RETRIES):
            key, key_version = await self.keys.load(stream_of_key)
            incidents: dict[str, tuple[Incident, int]] = {}
            writes: dict[str, tuple[int, list[Event]]] = {}
            decisions = []
            for alert, _ in batch:
                if key.incident_id and key.incident_id not in incidents:
                    incidents[key.incident_id] = await self.incidents.load(incident_stream(key.incident_id))
                incident = incidents[key.incident_id][0] if key.incident_id else Incident()
                decision = domain.receive(key, incident, alert, now=self.clock(), new_id=self.new_id())
                decisions.append(decision)
                if decision.key_events:
                    writes.setdefault(stream_of_key, (key_version, []))[1].extend(decision.key_events)
                    for event in decision.key_events:
                        key = domain.evolve_key(key, event)
                if decision.incident_events:
                    incident, version = incidents.get(decision.incident_id, (Incident(), 0))
                    stream = incident_stream(decision.incident_id)
                    writes.setdefault(stream, (version, []))[1].extend(decision.incident_events)
                    for event in decision.incident_events:
                        incident = domain.evolve(incident, event)
                    incidents[decision.incident_id] = (incident, version)
            try:
                await self.store.commit([Write(s, events, v) for s, (v, events) in writes.items()])
            except ConcurrencyError:
                continue
            return decisions
        raise ConcurrencyError(stream_of_key, -1, -1)

    async def load(self, incident_id: str) -> tuple[Incident, int]:
        return await self.incidents.load(incident_stream(incident_id))

    async def append(self, incident_id: str, events: list[Event], expected_version: int) -> int:
        await self.store.commit([Write(incident_stream(incident_id), events, expected_version)])
        return expected_version + len(events)

    async def change(
        self, incident_id: str, decide: Callable[[Incident], list[Event]], if_match: int | None
    ) -> int:
        """Load, decide, append with the version the caller saw (If-Match) or the one just read."""
        state, version = await self.load(incident_id)
        if if_match is not None and if_match != version:
            raise ConcurrencyError(incident_stream(incident_id), if_match, version)
        return await self.append(incident_id, decide(state), version)

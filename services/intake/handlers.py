"""Intake's shell: load, decide, append. Nothing else."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass
class Intake:
    store: EventStore
    clock: Clock
    new_id: Callable[[], str]

    def __post_init__(self) -> None:
        self.keys: Aggregates[AlertKey] = Aggregates(self.store, AlertKey, domain.evolve_key)
        self.incidents: Aggregates[Incident] = Aggregates(self.store, Incident, domain.evolve)

    async def receive(self, alert: Alert) -> Decision:
        """Dedup and attach one alert; the alert-key stream's version arbitrates concurrent copies."""
        for _ in range(MAX_CONFLICT_RETRIES):
            key, key_version = await self.keys.load(key_stream(alert.key))
            incident, incident_version = (
                await self.incidents.load(incident_stream(key.incident_id)) if key.incident_id else (Incident(), 0)
            )
            decision = domain.receive(key, incident, alert, now=self.clock(), new_id=self.new_id())
            writes = []
            if decision.key_events:
                writes.append(Write(key_stream(alert.key), decision.key_events, key_version))
            if decision.incident_events:
                expected = 0 if decision.opened else incident_version
                writes.append(Write(incident_stream(decision.incident_id), decision.incident_events, expected))
            try:
                await self.store.commit(writes)
            except ConcurrencyError:
                continue
            return decision
        raise ConcurrencyError(key_stream(alert.key), -1, -1)

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

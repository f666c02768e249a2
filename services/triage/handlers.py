"""Triage's shell: react to intake's events by loading, deciding and returning writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.triage import domain
from shared.aggregates import Aggregates
from shared.envelope import Envelope
from shared.events import IncidentOpened
from shared.store import EventStore, Write


def triage_stream(incident_id: str) -> str:
    return f"triage-{incident_id}"


@dataclass
class TriageHandlers:
    store: EventStore

    def __post_init__(self) -> None:
        self.triages: Aggregates[domain.Triage] = Aggregates(self.store, domain.Triage, domain.evolve)

    async def on_event(self, env: Envelope) -> Sequence[Write]:
        match env.event:
            case IncidentOpened() as opened:
                stream = triage_stream(opened.incident_id)
                state, version = await self.triages.load(stream)
                events = domain.on_opened(state, opened)
                return [
                    Write(stream, events, version, correlation_id=env.correlation_id, causation_id=env.id)
                ]
            case _:
                return []

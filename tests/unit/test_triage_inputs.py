"""Triage declares the intake events it acts on (`INPUTS`), and the bus passes the others over
without a tracking record. So an event type left out must be one triage does nothing with: checked
here for every type intake produces, on an incident triage knows."""

from __future__ import annotations

from datetime import UTC, datetime

from services.triage.handlers import INPUTS, TriageHandlers
from shared.envelope import Envelope
from shared.events import PRODUCERS, Event, IncidentOpened, Severity, event_types
from shared.store.memory import MemoryStore

T = datetime(2026, 3, 2, 10, tzinfo=UTC)


def envelope(event: Event, n: int) -> Envelope:
    return Envelope(
        id=f"e{n}",
        stream="incident-i1",
        version=n,
        position=n,
        event=event,
        recorded_at=T,
        source="intake",
        correlation_id="i1",
    )


def test_the_inputs_are_event_types_intake_produces() -> None:
    intake = {cls.__name__ for cls in PRODUCERS["intake"]}
    assert INPUTS <= intake <= set(event_types())


async def test_every_intake_event_left_out_of_the_inputs_changes_nothing_in_triage() -> None:
    async with MemoryStore(source="triage") as store:
        handlers = TriageHandlers(store)
        opened = IncidentOpened(
            incident_id="i1",
            title="Checkout failing",
            service="payments",
            severity=Severity.CRITICAL,
            source="test",
            reporter="test",
            occurred_at=T,
        )
        decided = await handlers.decide(envelope(opened, 1))
        assert decided.writes  # triage knows the incident now
        await store.commit(decided.writes)
        left_out = [cls for cls in PRODUCERS["intake"] if cls.__name__ not in INPUTS]
        assert left_out
        for n, cls in enumerate(left_out, start=2):
            # Only the fields a dispatch on the type reads: an event acted on would fail loudly here.
            event = cls.model_construct(incident_id="i1", occurred_at=T)
            decided = await handlers.decide(envelope(event, n))
            assert decided.writes == [], cls.__name__

"""Intake's registry folds its own commits without reading them back, and still folds every event
of its log exactly once, in log order."""

from __future__ import annotations

from datetime import UTC, datetime

from services.intake.registry import Registry
from shared.envelope import Envelope
from shared.events import Event, IncidentOpened, IncidentResolved, Severity

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def opened(incident_id: str) -> IncidentOpened:
    return IncidentOpened(
        incident_id=incident_id,
        title="t",
        service="db",
        severity=Severity.HIGH,
        source="canonical",
        reporter="x",
        integration_id="int",
        occurred_at=NOW,
    )


def resolved(incident_id: str) -> IncidentResolved:
    return IncidentResolved(incident_id=incident_id, by="x", reason="fixed", occurred_at=NOW)


def at(position: int, event: Event, *, tx: int = 0) -> Envelope:
    return Envelope(
        id=f"e{position}",
        stream=f"incident-{position}",
        version=1,
        position=position,
        event=event,
        recorded_at=NOW,
        source="intake",
        correlation_id="c",
        tx=tx,
    )


def test_a_commit_right_after_the_checkpoint_is_folded_at_once_and_counted_once() -> None:
    registry = Registry()
    registry.committed([at(1, opened("a")), at(2, opened("b"))])
    assert registry.checkpoint == (0, 2)
    assert registry.open_incidents("db") == ["a", "b"]
    for env in [at(1, opened("a")), at(2, opened("b"))]:  # the follower reading them again
        registry.fold(env)
    assert registry.stats["int"].incidents_opened == 2


def test_a_commit_after_a_gap_waits_for_the_follower_and_keeps_log_order() -> None:
    registry = Registry()
    registry.committed([at(2, resolved("a"))])  # position 1 (another writer) not read yet
    assert registry.checkpoint == (0, 0)
    assert registry.open_incidents("db") == []
    registry.fold(at(1, opened("a")))
    assert registry.checkpoint == (0, 2)
    assert registry.open_incidents("db") == []  # opened, then resolved: in that order


def test_a_store_ordered_by_transaction_is_left_to_the_follower() -> None:
    registry = Registry()
    registry.committed([at(1, opened("a"), tx=7)])
    assert registry.checkpoint == (0, 0)
    registry.fold(at(1, opened("a"), tx=7))
    assert registry.checkpoint == (7, 1)
    assert registry.open_incidents("db") == ["a"]

"""The ITIL priority matrix and how severity stands in for impact and urgency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.triage.domain import Priority, Triage, on_opened, prioritise
from shared.events import IncidentOpened, Level, Severity

H, M, L = Level.HIGH, Level.MEDIUM, Level.LOW
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        (H, H, "P1"),
        (H, M, "P2"),
        (M, H, "P2"),
        (H, L, "P3"),
        (M, M, "P3"),
        (L, H, "P3"),
        (M, L, "P4"),
        (L, M, "P4"),
        (L, L, "P5"),
    ],
)
def test_matrix(impact: Level, urgency: Level, priority: str) -> None:
    assert prioritise(impact, urgency) == Priority(priority)


def opened(severity: Severity, impact: Level | None = None, urgency: Level | None = None) -> IncidentOpened:
    return IncidentOpened(
        incident_id="i",
        title="t",
        service="s",
        severity=severity,
        source="x",
        reporter="x",
        impact=impact,
        urgency=urgency,
        occurred_at=NOW,
    )


@pytest.mark.parametrize(
    ("severity", "priority"),
    [
        (Severity.CRITICAL, "P1"),
        (Severity.HIGH, "P2"),
        (Severity.WARNING, "P3"),
        (Severity.INFO, "P4"),
        (Severity.LOW, "P5"),
    ],
)
def test_severity_stands_in_when_the_reporter_gave_nothing(severity: Severity, priority: str) -> None:
    [assigned] = on_opened(Triage(), opened(severity))
    assert getattr(assigned, "priority") == priority
    assert f"severity {severity.value}" in getattr(assigned, "reason")


def test_the_reporters_impact_and_urgency_win_over_severity() -> None:
    [assigned] = on_opened(Triage(), opened(Severity.LOW, impact=H, urgency=H))
    assert getattr(assigned, "priority") == "P1"
    assert "reporter" in getattr(assigned, "reason")


def test_an_incident_is_prioritised_once() -> None:
    assert on_opened(Triage(priority=Priority.P3), opened(Severity.CRITICAL)) == []

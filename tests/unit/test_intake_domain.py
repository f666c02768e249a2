"""Intake's rules: dedup, never attach to a resolved incident, resolve when all alerts resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.intake import domain, lifecycle
from services.intake.domain import Alert, AlertKey, Incident, Status
from shared.errors import Conflict, NotFound
from shared.events import AlertStatus, Event, IncidentOpened, Severity

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STARTED = datetime(2026, 3, 1, 11, 58, tzinfo=UTC)


def alert(key: str = "k", status: AlertStatus = AlertStatus.FIRING, **kw: object) -> Alert:
    return Alert(
        key=key,
        dedup_key=key,
        title="Disk full",
        service="db",
        severity=Severity.CRITICAL,
        status=status,
        source="canonical",
        **kw,
    )  # type: ignore[arg-type]


def replay(events: list[Event]) -> Incident:
    state = Incident()
    for e in events:
        state = domain.evolve(state, e)
    return state


def types(events: list[Event]) -> list[str]:
    return [str(getattr(e, "type")) for e in events]


def test_a_new_key_opens_an_incident_and_says_why() -> None:
    d = domain.receive(AlertKey(), Incident(), alert(starts_at=STARTED), now=NOW, new_id="i1")
    assert d.opened and d.incident_id == "i1"
    assert types(d.incident_events) == ["IncidentOpened", "AlertAttached"]
    assert "no open incident" in getattr(d.incident_events[1], "reason")
    assert d.incident_events[0].occurred_at == STARTED  # the sender's time, not receipt


@pytest.mark.parametrize(
    ("sent", "believed"),
    [
        (STARTED, STARTED),  # minutes ago: the sender's time
        (NOW - timedelta(days=7), NOW - timedelta(days=7)),  # as old as the policy believes
        (NOW - timedelta(days=7, seconds=1), None),  # older: the receive time stands in
        (datetime(2, 1, 1, tzinfo=UTC), None),  # a clock far off
        (NOW + timedelta(seconds=3), NOW),  # a fast clock: never opened in the future
        (datetime(9999, 1, 1, tzinfo=UTC), NOW),
    ],
)
def test_a_senders_times_are_believed_within_bounds(sent: datetime, believed: datetime | None) -> None:
    week = timedelta(days=7)
    firing = domain.sender_times(alert(starts_at=sent), now=NOW, max_age=week)
    resolved = domain.sender_times(alert(status=AlertStatus.RESOLVED, ends_at=sent), now=NOW, max_age=week)
    assert (firing.starts_at, resolved.ends_at) == (believed, believed)
    opened = domain.receive(AlertKey(), Incident(), firing, now=NOW, new_id="i1").incident_events[0]
    assert isinstance(opened, IncidentOpened)
    assert (opened.occurred_at, opened.detected_at) == (believed or NOW, believed)


def test_a_repeat_in_an_open_incident_bumps_the_counter_and_opens_nothing() -> None:
    first = domain.receive(AlertKey(), Incident(), alert(), now=NOW, new_id="i1")
    incident = replay(first.incident_events)
    d = domain.receive(AlertKey("i1"), incident, alert(), now=NOW, new_id="i2")
    assert not d.opened and d.incident_id == "i1"
    assert types(d.incident_events) == ["AlertRepeated"]
    assert getattr(d.incident_events[0], "count") == 2
    assert d.key_events == []


def test_resolving_the_last_firing_alert_resolves_the_incident() -> None:
    first = domain.receive(AlertKey(), Incident(), alert(), now=NOW, new_id="i1")
    d = domain.receive(
        AlertKey("i1"), replay(first.incident_events), alert(status=AlertStatus.RESOLVED), now=NOW, new_id="x"
    )
    assert types(d.incident_events) == ["AlertResolved", "IncidentResolved"]


def test_after_resolve_the_same_key_opens_a_new_incident() -> None:
    first = domain.receive(AlertKey(), Incident(), alert(), now=NOW, new_id="i1")
    resolved = replay(
        [
            *first.incident_events,
            *lifecycle.resolve(replay(first.incident_events), by="ana", reason="ok", now=NOW),
        ]
    )
    assert resolved.status is Status.RESOLVED
    d = domain.receive(AlertKey("i1"), resolved, alert(), now=NOW, new_id="i2")
    assert d.opened and d.incident_id == "i2"
    assert "after incident i1 was resolved" in getattr(d.incident_events[1], "reason")


def test_a_resolve_for_an_alert_with_no_open_incident_opens_nothing() -> None:
    d = domain.receive(AlertKey(), Incident(), alert(status=AlertStatus.RESOLVED), now=NOW, new_id="i1")
    assert not d.opened and d.incident_events == []
    assert types(d.key_events) == ["AlertObserved"]


def test_acknowledge_only_an_open_incident() -> None:
    opened = replay(domain.receive(AlertKey(), Incident(), alert(), now=NOW, new_id="i1").incident_events)
    acked = replay(
        [
            *domain.receive(AlertKey(), Incident(), alert(), now=NOW, new_id="i1").incident_events,
            *lifecycle.acknowledge(opened, by="ana", now=NOW),
        ]
    )
    assert acked.status is Status.ACKNOWLEDGED
    with pytest.raises(Conflict):
        lifecycle.acknowledge(acked, by="ana", now=NOW)
    with pytest.raises(NotFound):
        lifecycle.acknowledge(Incident(), by="ana", now=NOW)

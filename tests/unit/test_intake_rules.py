"""Intake's pure rules: grouping with its recorded reason, resolve rules, maintenance, heartbeats,
lifecycle transitions, and the format mappers."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.intake import domain, heartbeats, lifecycle
from services.intake.domain import Alert, AlertKey, Group, Incident, Status
from services.intake.parsers import BadPayload, Context, alertmanager, datadog, epoch_ms, pagerduty, utc
from services.intake.registry import Integration
from shared.errors import Conflict
from shared.events import AlertAttached, AlertStatus, Event, Severity
from shared.policy.intake import GroupBy, Grouping, IntakePolicy, ResolveRule

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def alert(key: str = "k", *, group: str = "", status: AlertStatus = AlertStatus.FIRING, **kw: Any) -> Alert:
    return Alert(
        key=key,
        dedup_key=key,
        title="Disk full",
        service="db",
        severity=Severity.CRITICAL,
        status=status,
        source="canonical",
        group_key=group,
        **kw,
    )


def replay(events: list[Event], state: Incident | None = None) -> Incident:
    state = state if state is not None else Incident()
    for e in events:
        state = domain.evolve(state, e)
    return state


def opened_with(*keys: str, rule: ResolveRule = ResolveRule.ALL) -> Incident:
    """An incident opened by the first key, the others grouped into it, in order."""
    first = domain.receive(
        AlertKey(), Incident(), alert(keys[0], group="g", resolve_rule=rule), now=NOW, new_id="i1"
    )
    incident = replay(first.incident_events)
    for k in keys[1:]:
        d = domain.receive(
            AlertKey(),
            Incident(),
            alert(k, group="g"),
            now=NOW,
            new_id="x",
            group=Group("i1"),
            group_incident=incident,
        )
        incident = replay(d.incident_events, incident)
    return incident


def test_a_new_key_joins_its_groups_open_incident_and_the_reason_says_so() -> None:
    incident = opened_with("a")
    d = domain.receive(
        AlertKey(), Incident(), alert("b", group="g", window_seconds=600), now=NOW + timedelta(minutes=5),
        new_id="i2", group=Group("i1"), group_incident=incident,
    )  # fmt: skip
    assert d.outcome == "attached" and d.incident_id == "i1" and not d.opened
    [attached] = d.incident_events
    assert isinstance(attached, AlertAttached)
    assert "grouped with incident i1" in attached.reason and "within the 600s window" in attached.reason
    assert [e.type for e in d.key_events] == ["AlertObserved"]  # the key now belongs to i1


def test_outside_the_window_a_group_opens_a_new_incident_and_the_group_moves_on() -> None:
    incident = opened_with("a")
    d = domain.receive(
        AlertKey(), Incident(), alert("b", group="g", window_seconds=600), now=NOW + timedelta(hours=1),
        new_id="i2", group=Group("i1"), group_incident=incident,
    )  # fmt: skip
    assert d.opened and d.incident_id == "i2"
    assert [e.type for e in d.group_events] == ["AlertGrouped"]
    assert "outside the 600s window" in getattr(d.incident_events[1], "reason")


def test_a_group_whose_incident_is_resolved_opens_a_new_one() -> None:
    incident = replay(lifecycle.resolve(opened_with("a"), by="ana", reason="ok", now=NOW), opened_with("a"))
    d = domain.receive(
        AlertKey(),
        Incident(),
        alert("b", group="g"),
        now=NOW,
        new_id="i2",
        group=Group("i1"),
        group_incident=incident,
    )
    assert d.opened and "which is resolved" in getattr(d.incident_events[1], "reason")


@pytest.mark.parametrize(
    ("rule", "resolving", "resolves"),
    [
        (ResolveRule.ALL, "a", False),
        (ResolveRule.FIRST, "a", True),
        (ResolveRule.FIRST, "c", False),
        (ResolveRule.LAST, "c", True),
        (ResolveRule.LAST, "a", False),
        (ResolveRule.NEVER, "a", False),
    ],
)
def test_resolve_rules(rule: ResolveRule, resolving: str, resolves: bool) -> None:
    incident = opened_with("a", "b", "c", rule=rule)
    d = domain.receive(
        AlertKey("i1"), incident, alert(resolving, status=AlertStatus.RESOLVED), now=NOW, new_id="x"
    )
    assert ("IncidentResolved" in [e.type for e in d.incident_events]) is resolves


def test_with_rule_all_the_last_firing_alert_resolves_the_incident() -> None:
    incident = opened_with("a", "b")
    for key, expected in (("a", ["AlertResolved"]), ("b", ["AlertResolved", "IncidentResolved"])):
        d = domain.receive(
            AlertKey("i1"), incident, alert(key, status=AlertStatus.RESOLVED), now=NOW, new_id="x"
        )
        assert [e.type for e in d.incident_events] == expected
        incident = replay(d.incident_events, incident)


def test_a_resolved_alert_firing_again_in_its_open_incident_is_attached_again() -> None:
    incident = opened_with("a", "b")
    incident = replay(
        domain.receive(
            AlertKey("i1"), incident, alert("a", status=AlertStatus.RESOLVED), now=NOW, new_id="x"
        ).incident_events,
        incident,
    )
    d = domain.receive(AlertKey("i1"), incident, alert("a"), now=NOW, new_id="x")
    assert d.outcome == "attached" and "fired again while its incident is still open" in getattr(
        d.incident_events[0], "reason"
    )


def test_acknowledge_by_key_only_while_open() -> None:
    incident = opened_with("a")
    d = domain.receive(AlertKey("i1"), incident, alert("a", acknowledge=True), now=NOW, new_id="x")
    assert [e.type for e in d.incident_events] == ["IncidentAcknowledged"]
    resolved = replay(lifecycle.resolve(incident, by="ana", reason="ok", now=NOW), incident)
    d = domain.receive(AlertKey("i1"), resolved, alert("a", acknowledge=True), now=NOW, new_id="x")
    assert d.incident_events == [] and d.key_events == [] and not d.opened


def test_maintenance_suppresses_what_would_open_but_not_repeats_of_an_open_incident() -> None:
    d = domain.receive(AlertKey(), Incident(), alert("a"), now=NOW, new_id="i1", maintenance="w1")
    assert (
        d.outcome == "suppressed"
        and [e.type for e in d.key_events] == ["AlertSuppressed"]
        and not d.incident_events
    )
    d = domain.receive(AlertKey("i1"), opened_with("a"), alert("a"), now=NOW, new_id="x", maintenance="w1")
    assert d.outcome == "repeated"


def test_maintenance_window_bounds() -> None:
    w = heartbeats.Window("w1", "db", NOW, NOW + timedelta(hours=1))
    assert heartbeats.in_maintenance([w], "db", NOW) == "w1"
    assert heartbeats.in_maintenance([w], "db", NOW + timedelta(hours=1)) is None
    assert heartbeats.in_maintenance([w], "api", NOW) is None


def test_a_heartbeat_expires_once_after_its_timeout_and_recovers_on_the_next_beat() -> None:
    hb = heartbeats.Heartbeat()
    for e in heartbeats.beat(hb, name="etl", timeout_seconds=60, service="data", integration_id="", now=NOW):
        hb = heartbeats.evolve_heartbeat(hb, e)
    assert heartbeats.expire(hb, now=NOW + timedelta(seconds=59), incident_id="i1") == []
    [expired] = heartbeats.expire(hb, now=NOW + timedelta(seconds=61), incident_id="i1")
    assert getattr(expired, "due_at") == NOW + timedelta(seconds=60) and expired.occurred_at == expired.due_at  # type: ignore[attr-defined]
    hb = heartbeats.evolve_heartbeat(hb, expired)
    assert heartbeats.expire(hb, now=NOW + timedelta(hours=1), incident_id="i2") == []
    events = heartbeats.beat(
        hb, name="etl", timeout_seconds=60, service="data", integration_id="", now=NOW + timedelta(hours=1)
    )
    assert [e.type for e in events] == ["HeartbeatReceived", "HeartbeatRecovered"]


def test_lifecycle_transitions() -> None:
    incident = opened_with("a")
    with pytest.raises(Conflict):
        lifecycle.close(incident, by="ana", now=NOW)
    with pytest.raises(Conflict):
        lifecycle.reopen(incident, by="ana", reason="", now=NOW)
    held = replay(lifecycle.hold(incident, by="ana", reason="vendor", now=NOW), incident)
    assert held.on_hold and held.status is Status.OPEN
    resolved = replay(lifecycle.resolve(held, by="ana", reason="ok", now=NOW), held)
    assert not resolved.on_hold
    closed = replay(lifecycle.close(resolved, by="ana", now=NOW), resolved)
    assert closed.status is Status.CLOSED
    with pytest.raises(Conflict):
        lifecycle.reopen(closed, by="ana", reason="", now=NOW)
    assert lifecycle.assign(held, assignee="", by="ana", now=NOW) == []  # unchanged: nothing to record
    noted = replay(lifecycle.add_note(closed, text="t", by="ana", note_id="n1", now=NOW), closed)
    assert lifecycle.add_note(noted, text="t", by="ana", note_id="n1", now=NOW) == []


def ctx(source: str, **integration: Any) -> Context:
    fields = {"id": "int1", "name": "x", "source_type": source, "default_service": "fallback", **integration}
    return Context(Integration(**fields), IntakePolicy(), source)


def test_alertmanager_mapping_uses_labels_annotations_and_sender_times() -> None:
    body = {
        "groupKey": '{}:{alertname="X"}',
        "alerts": [
            {
                "labels": {"alertname": "X", "severity": "warning"},
                "annotations": {"description": "d"},
                "startsAt": "2026-03-01T10:00:00+01:00",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "f1",
            }
        ],
    }
    [a] = alertmanager.parse(body, ctx("alertmanager"))
    assert a.key == "alertmanager:int1:f1" and a.title == "X" and a.service == "fallback"
    assert a.severity is Severity.WARNING and a.status is AlertStatus.FIRING
    assert a.starts_at == datetime(2026, 3, 1, 9, tzinfo=UTC) and a.ends_at is None
    assert a.group_key == 'fallback|int1:{}:{alertname="X"}'
    labelled = ctx("alertmanager", grouping=Grouping(by=GroupBy.LABELS, labels=("alertname",)))
    assert alertmanager.parse(body, labelled)[0].group_key == "fallback|int1:labels:alertname=X"


def test_a_custom_alertmanager_payload_template_falls_back_to_the_generic_mapper() -> None:
    [a] = alertmanager.parse(
        {"title": "Custom", "status": "resolved", "fingerprint": "zz"}, ctx("alertmanager")
    )
    assert a.title == "Custom" and a.status is AlertStatus.RESOLVED and a.dedup_key == "zz"


@pytest.mark.parametrize(
    ("priority", "transition", "severity", "status"),
    [
        ("P1", "Triggered", Severity.CRITICAL, AlertStatus.FIRING),
        ("P2", "Re-Triggered", Severity.HIGH, AlertStatus.FIRING),
        ("P3", "Triggered", Severity.WARNING, AlertStatus.FIRING),
        ("P1", "Warn", Severity.WARNING, AlertStatus.FIRING),
        ("P4", "Recovered", Severity.INFO, AlertStatus.RESOLVED),
    ],
)
def test_datadog_priority_and_transition(
    priority: str, transition: str, severity: Severity, status: AlertStatus
) -> None:
    a = datadog.parse({"cycle_key": "c", "priority": priority, "transition": transition}, ctx("datadog"))
    assert (a.severity, a.status) == (severity, status)


def test_pagerduty_severity_and_actions() -> None:
    trigger = {
        "routing_key": "k",
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "h", "severity": "error"},
    }
    a = pagerduty.parse(trigger, ctx("pagerduty"))
    assert a.severity is Severity.HIGH and len(a.dedup_key) == 32  # a trigger without a key gets one
    ack = pagerduty.parse(
        {"routing_key": "k", "event_action": "acknowledge", "dedup_key": "d"}, ctx("pagerduty")
    )
    assert ack.acknowledge and ack.key == "pagerduty:int1:d"
    with pytest.raises(BadPayload, match=r"^dedup_key"):
        pagerduty.parse({"routing_key": "k", "event_action": "resolve"}, ctx("pagerduty"))


def test_times() -> None:
    assert utc(datetime(1, 1, 1, tzinfo=UTC)) is None
    assert utc(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert epoch_ms("1763800000000") == datetime.fromtimestamp(1_763_800_000, tz=UTC)
    assert epoch_ms("$DATE") is None and epoch_ms("1e400") is None


CORE = ["domain.py", "lifecycle.py", "heartbeats.py", "registry.py", "parsers"]
IO = (
    "fastapi",
    "starlette",
    "httpx",
    "asyncio",
    "aiosqlite",
    "asyncpg",
    "shared.store",
    "shared.web",
    "random",
    "time",
)


@pytest.mark.parametrize("name", CORE)
def test_intakes_core_modules_do_no_io_and_read_no_clock(name: str) -> None:
    base = ROOT / "services" / "intake" / name
    for path in [base] if base.is_file() else sorted(base.glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in modules if any(m == f or m.startswith(f + ".") for f in IO)}, path
        assert "datetime.now(" not in path.read_text() and "utcnow(" not in path.read_text()

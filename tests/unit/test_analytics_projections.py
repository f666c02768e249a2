"""The pure fold: every service's events make one incident view and a timeline with who, when, why."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from services.analytics import reports
from services.analytics.projections import Fact, IncidentView, project, timeline_entry
from shared.policy.analytics import AnalyticsPolicy

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
counter = itertools.count()


def fact(type_: str, minutes: float, source: str = "intake", **data: Any) -> Fact:
    n = next(counter)
    return Fact(
        id=f"e{n}",
        type=type_,
        incident_id="inc-1",
        at=T0 + timedelta(minutes=minutes),
        data={"incident_id": "inc-1", **data},
        source=source,
        position=n,
    )


def fold(facts: list[Fact]) -> IncidentView | None:
    view = None
    for f in facts:
        view = project(view, f)
    return view


INTAKE = [
    fact(
        "IncidentOpened",
        0,
        title="DB down",
        service="db",
        severity="critical",
        source="pd",
        reporter="pd",
        detected_at=T0 - timedelta(minutes=4),
    ),
    fact("AlertAttached", 0, alert_key="pd:k", dedup_key="k", reason="new key: no open incident"),
    fact("IncidentAcknowledged", 3, by="ann"),
    fact("IncidentAssigned", 4, by="ann", assignee="bob"),
    fact("NoteAdded", 5, by="ann", text="Action: add a disk alert @carl"),
    fact("IncidentPutOnHold", 20, by="bob", reason="waiting for the vendor"),
    fact("IncidentResumed", 50, by="bob"),
    fact("IncidentResolved", 70, by="bob", reason="disk replaced"),
    fact("IncidentReopened", 80, by="ann", reason="it came back"),
    fact("IncidentResolved", 90, by="bob", reason="for good"),
    fact("IncidentClosed", 120, by="ann"),
]
TRIAGE = [
    fact(
        "PriorityAssigned",
        0,
        "triage",
        priority="P1",
        by="triage",
        reason="critical x high",
        title="DB down",
        service="db",
    ),
    fact("IncidentRouted", 0, "triage", team="dba", rule="db-rule", reason="service db"),
    fact("MajorIncidentProposed", 1, "triage", by="ann", reason="all customers", automatic=False),
    fact("MajorIncidentAccepted", 2, "triage", by="mia", business_impact="checkout down", notes=""),
    fact("RoleAssigned", 2, "triage", role="incident_manager", person="mia", by="mia"),
    fact(
        "HandoverCompleted",
        60,
        "triage",
        role="incident_manager",
        from_person="mia",
        to_person="max",
        briefing={"current_state": "vendor on site"},
        by="mia",
    ),
    fact("SlaBreached", 30, "triage", kind="resolution", due_at=T0, priority="P1"),
]
COMMS = [
    fact("NotificationPlanned", 1, "comms", recipient="execs", channel="email", subject="s", cause_type="X"),
    fact("NotificationSent", 2, "comms", recipient="execs", channel="email", attempt=1),
    fact(
        "StatusUpdatePublished",
        40,
        "comms",
        audience="executive",
        subject="update",
        by="carol",
        due_at=T0 + timedelta(minutes=30),
        latency_seconds=600.0,
        next_due_at=T0 + timedelta(minutes=70),
    ),
]


def test_a_whole_incident_folds_into_one_view() -> None:
    v = fold(INTAKE + TRIAGE + COMMS)
    assert v is not None
    assert (v.status, v.priority, v.team, v.major, v.assignee) == ("closed", "P1", "dba", "accepted", "bob")
    assert v.detected_at == T0 - timedelta(minutes=4)
    assert v.acknowledged_at == T0 + timedelta(minutes=3)
    assert v.resolved_at == T0 + timedelta(minutes=90)
    assert v.reopen_count == 1
    assert v.holds == (((T0 + timedelta(minutes=20)).isoformat(), (T0 + timedelta(minutes=50)).isoformat()),)
    assert v.resolution_breached and not v.response_breached
    assert [(r["role"], r["who"], r["to"] is None) for r in v.roles] == [
        ("incident_manager", "mia", False),
        ("incident_manager", "max", True),
    ]
    assert v.actions[0]["owner"] == "carl"
    assert v.updates[0]["latency_seconds"] == 600.0
    assert v.next_update_due == T0 + timedelta(minutes=70)
    assert (v.notification_count, v.notifications_sent) == (1, 1)
    assert IncidentView.from_json(v.to_json()) == v


def test_a_view_is_stored_as_every_field_in_order_with_times_as_text_and_tuples_as_lists() -> None:
    v = fold(INTAKE + TRIAGE + COMMS)
    assert v is not None
    expected = {
        f.name: getattr(v, f.name).isoformat()
        if isinstance(getattr(v, f.name), datetime)
        else [list(x) if isinstance(x, tuple) else x for x in getattr(v, f.name)]
        if isinstance(getattr(v, f.name), tuple)
        else getattr(v, f.name)
        for f in dataclasses.fields(IncidentView)
    }
    assert list(v.to_json().items()) == list(expected.items())


def test_a_stored_view_missing_fields_takes_their_defaults_and_unknown_keys_are_ignored() -> None:
    doc = {"id": "inc-1", "opened_at": T0.isoformat(), "holds": [["a", "b"]], "retired_field": 3}
    assert IncidentView.from_json(doc) == IncidentView(id="inc-1", opened_at=T0, holds=(("a", "b"),))


def test_the_view_does_not_depend_on_how_the_services_logs_interleave() -> None:
    one_after_another = fold(TRIAGE + COMMS + INTAKE)
    interleaved = fold([f for group in itertools.zip_longest(INTAKE, TRIAGE, COMMS) for f in group if f])
    assert one_after_another == interleaved == fold(INTAKE + TRIAGE + COMMS)


def test_the_timeline_says_who_and_why() -> None:
    entries = [timeline_entry(f) for f in INTAKE + TRIAGE]
    said = {e.type: e for e in entries if e is not None}
    assert said["AlertAttached"].why == "new key: no open incident"
    assert said["IncidentPutOnHold"].by == "bob" and said["IncidentPutOnHold"].why == "waiting for the vendor"
    assert said["HandoverCompleted"].why == "briefing: vendor on site"
    assert said["MajorIncidentAccepted"].by == "mia" and said["MajorIncidentAccepted"].why == "checkout down"
    assert "sender saw it start" in said["IncidentOpened"].summary


def test_bookkeeping_and_events_without_an_incident_stay_off_the_timeline() -> None:
    assert timeline_entry(fact("AlertGrouped", 0, group_key="g", alert_key="k")) is None
    lone = Fact(id="x", type="ProblemRecorded", incident_id=None, at=T0, data={"problem_id": "p"})
    assert timeline_entry(lone) is None and project(None, lone) is None
    unknown = timeline_entry(fact("SomethingNew", 1, "triage", by="zed", detail="d"))
    assert unknown is not None and unknown.by == "zed" and "Something new" in unknown.summary


def test_the_review_draft_has_every_section_in_both_formats() -> None:
    v = fold(INTAKE + TRIAGE + COMMS)
    assert v is not None
    timeline = [e.to_json() for f in INTAKE + TRIAGE + COMMS if (e := timeline_entry(f)) is not None]
    doc = reports.review(v, timeline, policy=AnalyticsPolicy(), now=T0 + timedelta(hours=3))
    md, html = reports.markdown(doc), reports.html(doc)
    for title in (
        "Summary",
        "Impact",
        "Timeline",
        "Roles and tenure",
        "Communications",
        "SLA outcome",
        "Action items",
    ):
        assert f"## {title}" in md
        assert f"<h2>{title}</h2>" in html
    assert "| incident_manager | mia |" in md and "| 58m |" in md  # mia held the role 58 minutes
    assert "add a disk alert @carl | carl |" in md
    assert "| Resolution | 4h | " in md and "breached" in md
    assert "<script" not in html


def test_the_category_comes_from_the_event_or_else_from_its_labels() -> None:
    base = {"title": "t", "service": "s", "severity": "low", "source": "x", "reporter": "r"}
    by_field = project(None, fact("IncidentOpened", 0, **base, category="drill"))
    by_label = project(None, fact("IncidentOpened", 0, **base, labels={"type": "test"}))
    assert by_field is not None and by_field.category == "drill"
    assert by_label is not None and by_label.category == "test"


def test_resolving_while_on_hold_closes_the_hold() -> None:
    base = {"title": "t", "service": "s", "severity": "low", "source": "x", "reporter": "r"}
    v = fold(
        [
            fact("IncidentOpened", 0, **base),
            fact("IncidentPutOnHold", 10, by="a", reason="vendor"),
            fact("IncidentResolved", 30, by="a", reason="vendor fixed it"),
        ]
    )
    assert v is not None and v.on_hold_since is None
    assert v.holds == (((T0 + timedelta(minutes=10)).isoformat(), (T0 + timedelta(minutes=30)).isoformat()),)


def test_what_senders_wrote_is_escaped_in_html_and_svg() -> None:
    from services.analytics import charts

    evil = "<script>alert(1)</script>"
    v = IncidentView(id="inc-x", title=evil, service="s", opened_at=T0)
    html = reports.html(reports.review(v, [], policy=AnalyticsPolicy(), now=T0))
    assert evil not in html and "&lt;script&gt;" in html
    svg = charts.bar_chart(evil, {evil: 1.0})
    assert "<script>" not in svg

"""Triage's rules as tables: derived priority, routing, the major-incident rules, the storm rule,
problem recurrence, roles and role gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.triage import major, problems, roles
from services.triage.activity import ServiceActivity, evolve_activity
from services.triage.domain import change_priority, derive_levels, open_incident, route
from services.triage.state import Triage, evolve
from shared.errors import Conflict
from shared.events import Briefing, Event, IncidentOpened, Level, ServiceActivityRecorded, Severity
from shared.policy import PolicyError, parse_policy
from shared.policy.triage import IncidentRole, Priority, TriagePolicy

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)
H, M, L = Level.HIGH, Level.MEDIUM, Level.LOW

POLICY = parse_policy(
    {
        "triage": {
            "services": {
                "payments": {"team": "payments-team", "criticality": "business_critical"},
                "search": {"team": "search-team", "criticality": "high"},
                "wiki": {"team": "docs-team", "criticality": "low"},
            },
            "routing": [
                {"name": "db-on-call", "team": "dba", "labels": {"component": "db"}},
                {
                    "name": "p1-payments",
                    "team": "payments-oncall",
                    "services": ["payments"],
                    "priorities": ["P1"],
                },
            ],
            "major": {"storm": {"incidents": 3, "alerts": 5, "window_minutes": 10}},
            "problems": {"recurrences": 3, "days": 7},
            "roles": {"gap_minutes": 15},
        }
    }
).triage


def opened(service: str = "payments", severity: Severity = Severity.WARNING, **extra: Any) -> IncidentOpened:
    return IncidentOpened(
        incident_id=extra.pop("incident_id", "i1"),
        title="Checkout failing",
        service=service,
        severity=severity,
        source="test",
        reporter="test",
        occurred_at=extra.pop("at", NOW),
        **extra,
    )


def fold(events: list[Event], state: Triage | None = None) -> Triage:
    state = state or Triage()
    for event in events:
        state = evolve(state, event)
    return state


@pytest.mark.parametrize(
    ("service", "severity", "impact", "priority", "says"),
    [
        ("payments", Severity.WARNING, H, Priority.P2, "business-critical -> impact high"),
        ("payments", Severity.CRITICAL, H, Priority.P1, "severity critical"),
        ("search", Severity.INFO, M, Priority.P3, "service search is high -> impact medium"),
        ("search", Severity.HIGH, H, Priority.P2, "severity high"),
        ("wiki", Severity.LOW, L, Priority.P5, "severity low"),
        ("unknown", Severity.WARNING, M, Priority.P3, "severity warning"),
    ],
)
def test_the_services_criticality_raises_the_impact(
    service: str, severity: Severity, impact: Level, priority: Priority, says: str
) -> None:
    got_impact, urgency, reason = derive_levels(opened(service, severity), POLICY)
    assert got_impact == impact
    assert POLICY.matrix[got_impact][urgency] == priority
    assert says in reason


def test_the_matrix_is_policy_data() -> None:
    flat = {i.value: {u.value: "P3" for u in Level} for i in Level}
    policy = parse_policy({"triage": {"matrix": flat}}).triage
    [assigned, *_] = open_incident(Triage(), opened("x", Severity.CRITICAL), policy)
    assert getattr(assigned, "priority") == "P3"


def test_an_incomplete_matrix_is_refused_with_its_place() -> None:
    with pytest.raises(
        PolicyError, match=r"policy: triage.matrix: .*no priority for impact/urgency high/medium.* low/low"
    ):
        parse_policy({"triage": {"matrix": {"high": {"high": "P1"}}}})
    with pytest.raises(PolicyError, match="unknown time zone"):
        parse_policy({"triage": {"calendars": {"x": {"timezone": "Mars/Olympus"}}}})
    with pytest.raises(PolicyError, match="no calendar named 'nope'"):
        parse_policy({"triage": {"services": {"s": {"team": "t", "hours": "nope"}}}})


@pytest.mark.parametrize(
    ("service", "labels", "priority", "team", "rule"),
    [
        ("payments", {"component": "db"}, Priority.P1, "dba", "db-on-call"),
        ("payments", {}, Priority.P1, "payments-oncall", "p1-payments"),
        ("payments", {}, Priority.P2, "payments-team", "service-owner"),
        ("search", {"component": "web"}, Priority.P1, "search-team", "service-owner"),
        ("elsewhere", {}, Priority.P1, "service-desk", "default"),
    ],
)
def test_routing(service: str, labels: dict[str, str], priority: Priority, team: str, rule: str) -> None:
    assert route(service, labels, priority, POLICY)[:2] == (team, rule)


def test_opening_assigns_priority_team_clocks_and_proposes_a_p1_on_a_critical_service() -> None:
    events = open_incident(Triage(), opened("payments", Severity.CRITICAL), POLICY)
    assert [e.type for e in events] == [
        "PriorityAssigned",
        "IncidentRouted",
        "SlaTargetSet",
        "SlaTargetSet",
        "MajorIncidentProposed",
    ]
    routed, proposal = events[1], events[-1]
    assert (getattr(routed, "team"), getattr(routed, "rule")) == ("payments-oncall", "p1-payments")
    assert getattr(proposal, "automatic") and getattr(proposal, "by") == "triage"
    assert "P1 on business-critical service payments" in getattr(proposal, "reason")
    assert open_incident(fold(events), opened("payments", Severity.CRITICAL), POLICY) == []


@pytest.mark.parametrize(
    ("service", "severity", "proposed"),
    [
        ("payments", Severity.CRITICAL, True),
        ("payments", Severity.WARNING, False),  # P2
        ("search", Severity.CRITICAL, False),  # P1, but not business-critical
        ("unknown", Severity.CRITICAL, False),
    ],
)
def test_the_automatic_major_incident_rule(service: str, severity: Severity, proposed: bool) -> None:
    events = open_incident(Triage(), opened(service, severity), POLICY)
    assert any(e.type == "MajorIncidentProposed" for e in events) is proposed


def test_raising_the_priority_retargets_reroutes_and_may_propose() -> None:
    state = fold(open_incident(Triage(), opened("payments", Severity.WARNING), POLICY))
    later = NOW + timedelta(minutes=5)
    events = change_priority(state, Priority.P1, reason="checkout down", by="ann", now=later, policy=POLICY)
    types = [e.type for e in events]
    assert types == [
        "PriorityChanged",
        "IncidentRouted",
        "SlaTargetSet",
        "SlaTargetSet",
        "MajorIncidentProposed",
    ]
    state = fold(events, state)
    assert state.priority == Priority.P1 and state.team == "payments-oncall"
    assert state.clocks["response"].started_at == NOW  # the clock keeps its start
    assert state.clocks["response"].target == timedelta(minutes=15)
    with pytest.raises(Conflict):
        change_priority(state, Priority.P1, reason="again", by="ann", now=later, policy=POLICY)


def test_major_incident_decisions() -> None:
    state = fold(open_incident(Triage(), opened("search", Severity.HIGH), POLICY))
    with pytest.raises(major.NotProposed):
        major.accept(state, by="ima", business_impact="x", notes="y", now=NOW, policy=POLICY)
    state = fold(major.propose(state, reason="customers cannot search", by="bob", now=NOW), state)
    with pytest.raises(Conflict):
        major.propose(state, reason="again", by="bob", now=NOW)
    rejected = fold(major.reject(state, by="ima", reason="one region only", now=NOW), state)
    assert rejected.major.status == "rejected" and rejected.major.rejection_reason == "one region only"
    accepted = fold(
        major.accept(
            state, by="ima", business_impact="no search", notes="bridge open", now=NOW, policy=POLICY
        ),
        state,
    )
    assert accepted.major.required_roles == ("incident_manager", "communications_manager")
    assert major.review_status(accepted) == "pending"
    reviewed = fold(
        major.record_review(accepted, by="ima", summary="done", problem_id=None, now=NOW), accepted
    )
    assert major.review_status(reviewed) == "done"


def activity(*signals: tuple[str, int, str]) -> ServiceActivity:
    """(incident|alert, minutes after NOW, incident id)"""
    state = ServiceActivity()
    for kind, minutes, incident_id in signals:
        state = evolve_activity(
            state,
            ServiceActivityRecorded(
                service="payments",
                activity=kind,  # type: ignore[arg-type]
                incident_id=incident_id,
                fingerprint="fp" if kind == "alert" else "",
                occurred_at=NOW + timedelta(minutes=minutes),
            ),
        )
    return state


@pytest.mark.parametrize(
    ("signals", "at", "storm"),
    [
        ([("incident", 0, "a"), ("incident", 5, "b")], 5, None),
        ([("incident", 0, "a"), ("incident", 5, "b"), ("incident", 9, "c")], 9, ("incident", 3)),
        ([("incident", 0, "a"), ("incident", 5, "b"), ("incident", 11, "c")], 11, None),  # outside the window
        ([("alert", m, "a") for m in range(4)], 3, None),
        ([("alert", m, "a") for m in range(5)], 4, ("alert", 5)),
    ],
)
def test_the_storm_rule(signals: list[tuple[str, int, str]], at: int, storm: tuple[str, int] | None) -> None:
    found = major.storm(activity(*signals), NOW + timedelta(minutes=at), POLICY)
    assert (None if found is None else (found.activity, found.count)) == storm


def test_a_storm_is_reported_once_until_it_dies_down() -> None:
    from shared.events import StormDetected

    state = ServiceActivity()
    reports: list[int] = []

    def alert(minute: int) -> None:
        nonlocal state
        at = NOW + timedelta(minutes=minute)
        seen, found = major.notice(
            state, service="payments", kind="alert", incident_id="a", fingerprint="fp", at=at, policy=POLICY
        )
        state = evolve_activity(state, seen)
        if found is not None:
            reports.append(minute)
            storm = StormDetected(
                incident_id="a",
                service="payments",
                activity=found.activity,
                count=found.count,
                window_minutes=found.window_minutes,
                proposed=True,
                occurred_at=at,
            )
            state = evolve_activity(state, storm)

    for minute in range(30):  # an alert a minute: the storm starts at the fifth and goes on
        alert(minute)
    for minute in range(60, 65):  # quiet for half an hour, then a new storm
        alert(minute)
    assert reports == [4, 64]


def test_signals_are_recorded_in_time_order() -> None:
    state = activity(("alert", 10, "a"))
    seen, _ = major.notice(
        state, service="payments", kind="alert", incident_id="b", fingerprint="", at=NOW, policy=POLICY
    )
    state = evolve_activity(state, seen)
    assert seen.occurred_at == NOW + timedelta(minutes=10)
    assert list(state.alert_times) == [NOW + timedelta(minutes=10)] * 2


def test_a_storm_does_not_propose_an_incident_already_major() -> None:
    state = fold(open_incident(Triage(), opened("payments", Severity.CRITICAL), POLICY))
    found = major.Storm("alert", 5, 10)
    assert major.storm_proposal(state, found, NOW, POLICY) == []
    calm = fold(open_incident(Triage(), opened("search", Severity.WARNING), POLICY))
    [proposal] = major.storm_proposal(calm, found, NOW, POLICY)
    assert getattr(proposal, "rule") == "storm"
    assert getattr(proposal, "reason") == "storm: 5 alerts on service search within 10 minutes"


@pytest.mark.parametrize(
    ("days_apart", "suggested"),
    [
        ([0, 1, 2], True),
        ([0, 1], False),
        ([0, 3, 8], False),  # the first is more than 7 days before the third
        ([0, 6, 6.9], True),
    ],
)
def test_a_service_that_keeps_failing_suggests_a_problem(days_apart: list[float], suggested: bool) -> None:
    state = ServiceActivity()
    for n, day in enumerate(days_apart):
        at = NOW + timedelta(days=day)
        state = evolve_activity(
            state,
            ServiceActivityRecorded(
                service="payments", activity="incident", incident_id=f"i{n}", occurred_at=at
            ),
        )
    found = problems.suggestions(state, "payments", "", NOW + timedelta(days=days_apart[-1]), POLICY)
    assert bool(found) is suggested
    if found:
        state = evolve_activity(state, found[0])
        assert problems.suggestions(state, "payments", "", NOW + timedelta(days=days_apart[-1]), POLICY) == []


def test_the_same_alert_in_three_incidents_suggests_a_problem() -> None:
    state = ServiceActivity()
    for n in range(3):
        for _ in range(2):  # repeats within one incident count once
            state = evolve_activity(
                state,
                ServiceActivityRecorded(
                    service="db", activity="alert", incident_id=f"i{n}", fingerprint="disk", occurred_at=NOW
                ),
            )
    [suggestion] = problems.suggestions(state, "db", "disk", NOW, POLICY)
    assert getattr(suggestion, "incident_ids") == ["i0", "i1", "i2"]
    assert "alert 'disk' recurred in 3 incidents" in getattr(suggestion, "reason")


def accepted_major() -> Triage:
    state = fold(open_incident(Triage(), opened("payments", Severity.CRITICAL), POLICY))
    return fold(major.accept(state, by="ima", business_impact="x", notes="y", now=NOW, policy=POLICY), state)


def test_roles_tenure_and_handover() -> None:
    state = accepted_major()
    IM = IncidentRole.INCIDENT_MANAGER
    state = fold(roles.assign(state, IM, "ann", by="ima", now=NOW, policy=POLICY), state)
    with pytest.raises(Conflict, match="hand it over"):
        roles.assign(state, IM, "bob", by="ima", now=NOW, policy=POLICY)
    sme = IncidentRole.SUBJECT_MATTER_EXPERT
    state = fold(roles.assign(state, sme, "cy", by="ima", now=NOW, policy=POLICY), state)
    state = fold(roles.assign(state, sme, "di", by="ima", now=NOW, policy=POLICY), state)
    briefing = Briefing(current_state="db failing over", open_actions=["watch replication"])
    later = NOW + timedelta(hours=8)
    [handover] = roles.handover(state, IM, "ann", "bob", briefing, by="ann", now=later)
    state = fold([handover], state)
    assert state.holders("incident_manager") == ["bob"]
    assert state.holders("subject_matter_expert") == ["cy", "di"]
    ann = next(t for t in state.roles if t.person == "ann")
    assert (ann.assumed_at, ann.relinquished_at) == (NOW, later)
    with pytest.raises(Conflict):
        roles.handover(state, IM, "ann", "cy", briefing, by="ann", now=later)


def test_a_role_gap_is_detected_once_per_vacancy() -> None:
    state = accepted_major()
    assert roles.gaps_due(state, NOW + timedelta(minutes=14), POLICY) == []
    assert roles.next_gap_due(state, POLICY) == NOW + timedelta(minutes=15)
    gaps = roles.gaps_due(state, NOW + timedelta(minutes=15), POLICY)
    assert sorted(getattr(g, "role") for g in gaps) == ["communications_manager", "incident_manager"]
    state = fold(gaps, state)
    assert roles.gaps_due(state, NOW + timedelta(hours=1), POLICY) == []
    IM = IncidentRole.INCIDENT_MANAGER
    state = fold(roles.assign(state, IM, "ann", by="x", now=NOW + timedelta(hours=1), policy=POLICY), state)
    left = NOW + timedelta(hours=2)
    state = fold(roles.relinquish(state, IM, "ann", by="ann", now=left), state)
    [gap] = roles.gaps_due(state, left + timedelta(minutes=15), POLICY)
    assert (getattr(gap, "role"), getattr(gap, "since")) == ("incident_manager", left)


def test_the_documented_example_policy_is_valid() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "triage.md").read_text()
    [example] = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    policy = parse_policy(yaml.safe_load(example)).triage
    assert policy.services["intranet"].hours == "london-office"
    assert policy.hours_for("intranet", Priority.P3) == "london-office"
    assert policy.hours_for("intranet", Priority.P1) is None  # P1 counts around the clock
    assert policy.routing[0].team == "dba"
    defaults = TriagePolicy()  # the example spells out the built-in defaults
    assert (policy.matrix, policy.severity, policy.sla) == (defaults.matrix, defaults.severity, defaults.sla)
    assert (policy.major, policy.roles, policy.problems) == (
        defaults.major,
        defaults.roles,
        defaults.problems,
    )


def test_an_alerts_labels_route_the_incident_again_when_they_change_the_team() -> None:
    from services.triage.domain import on_labels

    state = fold(open_incident(Triage(), opened("payments", Severity.WARNING), POLICY))
    assert state.team == "payments-team"
    assert on_labels(state, {"component": "web"}, NOW, POLICY) == []
    [routed] = on_labels(state, {"component": "db"}, NOW, POLICY)
    assert (getattr(routed, "team"), getattr(routed, "rule")) == ("dba", "db-on-call")
    assert "component=db" in getattr(routed, "reason")
    assert fold([routed], state).labels == {"component": "db"}

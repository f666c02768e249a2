"""Escalation policies, pure: the next step and its due time, whom it pages and how (page or
notify by urgency and business hours), repeats, the end of the chain, and starting and stopping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.triage import escalation
from services.triage.escalation import Escalation, evolve, next_position, on_routed, reach_step, stop
from shared.events import EscalationStarted, EscalationStepReached, EscalationStopped, Event, PageRequested
from shared.policy.oncall import OnCallPolicy

POLICY = OnCallPolicy.model_validate(
    {
        "people": [
            {
                "id": "ann",
                "contacts": [
                    {"kind": "email", "address": "ann@example.org"},
                    {"kind": "webhook", "address": "https://pager.example.org/ann", "urgent_only": True},
                ],
            },
            {"id": "bob", "contacts": [{"kind": "email", "address": "bob@example.org"}]},
            {"id": "cat", "contacts": [{"kind": "slack", "address": "https://chat.example.org/cat"}]},
            {
                "id": "lead",
                "name": "Team lead",
                "contacts": [{"kind": "teams", "address": "https://t.example.org/l"}],
            },
            {
                "id": "pager-only",
                "contacts": [{"kind": "webhook", "address": "https://p.example.org", "urgent_only": True}],
            },
        ],
        "teams": [{"id": "db-team", "members": ["bob", "cat"]}],
        "schedules": [
            {
                "id": "primary",
                "layers": [{"timezone": "Europe/Berlin", "start": "2026-03-16", "people": ["ann", "bob"]}],
            },
            {"id": "empty", "layers": [{"start": "2030-01-07", "people": ["ann"]}]},
        ],
        "escalation_policies": [
            {
                "id": "db",
                "teams": ["db"],
                "steps": [
                    {"targets": [{"kind": "schedule", "id": "primary"}], "wait": 300},
                    {"targets": [{"kind": "person", "id": "lead"}], "wait": 600},
                    {
                        "targets": [{"kind": "team", "id": "db-team"}, {"kind": "person", "id": "bob"}],
                        "wait": 300,
                    },
                ],
                "repeat": 1,
                "business_hours": {"timezone": "Europe/Berlin"},
            },
            {
                "id": "gaps",
                "services": ["batch"],
                "steps": [
                    {"targets": [{"kind": "schedule", "id": "empty"}, {"kind": "person", "id": "pager-only"}]}
                ],
            },
        ],
    }
)

# Wednesday 2026-03-18 10:00 in Berlin (CET, UTC+1): business hours
T = datetime(2026, 3, 18, 9, tzinfo=UTC)
MIN = timedelta(minutes=1)


def link(person: str) -> tuple[str, datetime]:
    return f"https://intake.example.org/v1/ack/token-for-{person}", T + timedelta(hours=24)


def started(priority: str = "P1", *, at: datetime = T, team: str = "db", service: str = "db") -> Escalation:
    events = on_routed(
        Escalation(),
        POLICY,
        incident_id="inc-1",
        team=team,
        service=service,
        priority=priority,
        title="DB down",
        settled=False,
        now=at,
    )
    return fold(Escalation(), events)


def fold(state: Escalation, events: list[Event]) -> Escalation:
    for e in events:
        state = evolve(state, e)
    return state


def walk(state: Escalation, times: list[datetime]) -> tuple[Escalation, list[Event]]:
    """Reach what is due at each time in turn."""
    out: list[Event] = []
    for now in times:
        events = reach_step(state, POLICY, now=now, link=link)
        state = fold(state, events)
        out += events
    return state, out


def steps(events: list[Event]) -> list[tuple[int, int, datetime, str, list[str], datetime | None]]:
    return [
        (e.step, e.round, e.due_at, e.mode, e.paged, e.next_due_at)
        for e in events
        if isinstance(e, EscalationStepReached)
    ]


@pytest.mark.parametrize(
    ("step", "round_", "expected"),
    [(0, 1, (1, 1)), (1, 1, (2, 1)), (2, 1, (3, 1)), (3, 1, (1, 2)), (2, 2, (3, 2)), (3, 2, None)],
)
def test_next_position(step: int, round_: int, expected: tuple[int, int] | None) -> None:
    policy = POLICY.escalation_policy("db")
    assert policy is not None
    assert next_position(Escalation(step=step, round=round_), policy) == expected


@pytest.mark.parametrize(
    ("name", "priority", "start", "times", "expected"),
    [
        (
            "high urgency: the first step at once, each next one after its wait",
            "P1",
            T,
            [T, T + 4 * MIN, T + 5 * MIN, T + 15 * MIN],
            [
                (1, 1, T, "page", ["ann"], T + 5 * MIN),
                (2, 1, T + 5 * MIN, "page", ["lead"], T + 15 * MIN),
                (3, 1, T + 15 * MIN, "page", ["bob", "cat"], T + 20 * MIN),
            ],
        ),
        (
            "a late step's wait runs from when it was reached",
            "P1",
            T,
            [T, T + 7 * MIN],
            [(1, 1, T, "page", ["ann"], T + 5 * MIN), (2, 1, T + 5 * MIN, "page", ["lead"], T + 17 * MIN)],
        ),
        (
            "the chain repeats, then stops",
            "P2",
            T,
            [T, T + 5 * MIN, T + 15 * MIN, T + 20 * MIN, T + 25 * MIN, T + 35 * MIN, T + 40 * MIN],
            [
                (1, 1, T, "page", ["ann"], T + 5 * MIN),
                (2, 1, T + 5 * MIN, "page", ["lead"], T + 15 * MIN),
                (3, 1, T + 15 * MIN, "page", ["bob", "cat"], T + 20 * MIN),
                (1, 2, T + 20 * MIN, "page", ["ann"], T + 25 * MIN),
                (2, 2, T + 25 * MIN, "page", ["lead"], T + 35 * MIN),
                (3, 2, T + 35 * MIN, "page", ["bob", "cat"], T + 40 * MIN),
            ],
        ),
        (
            "low urgency in business hours pages; its wait counts business time (16:58 -> 09:03)",
            "P4",
            datetime(2026, 3, 18, 15, 58, tzinfo=UTC),
            [datetime(2026, 3, 18, 15, 58, tzinfo=UTC)],
            [
                (
                    1,
                    1,
                    datetime(2026, 3, 18, 15, 58, tzinfo=UTC),
                    "page",
                    ["ann"],
                    datetime(2026, 3, 19, 8, 3, tzinfo=UTC),
                )
            ],
        ),
        (
            "low urgency at 20:00 notifies, and the chain waits for business hours",
            "P5",
            datetime(2026, 3, 18, 19, tzinfo=UTC),
            [datetime(2026, 3, 18, 19, tzinfo=UTC), datetime(2026, 3, 19, 8, 4, tzinfo=UTC)],
            [
                (
                    1,
                    1,
                    datetime(2026, 3, 18, 19, tzinfo=UTC),
                    "notify",
                    ["ann"],
                    datetime(2026, 3, 19, 8, 5, tzinfo=UTC),
                )
            ],
        ),
        (
            "high urgency at 20:00 still pages",
            "P1",
            datetime(2026, 3, 18, 19, tzinfo=UTC),
            [datetime(2026, 3, 18, 19, tzinfo=UTC)],
            [
                (
                    1,
                    1,
                    datetime(2026, 3, 18, 19, tzinfo=UTC),
                    "page",
                    ["ann"],
                    datetime(2026, 3, 18, 19, 5, tzinfo=UTC),
                )
            ],
        ),
    ],
)
def test_steps_and_due_times(
    name: str,
    priority: str,
    start: datetime,
    times: list[datetime],
    expected: list[tuple[int, int, datetime, str, list[str], datetime | None]],
) -> None:
    _, events = walk(started(priority, at=start), times)
    assert steps(events) == expected, name


def test_after_the_last_round_the_chain_is_exhausted() -> None:
    state, _ = walk(started(), [T + n * MIN for n in (0, 5, 15, 20, 25, 35)])
    assert escalation.due(state) == T + 40 * MIN
    assert reach_step(state, POLICY, now=T + 39 * MIN, link=link) == []
    [end] = reach_step(state, POLICY, now=T + 40 * MIN, link=link)
    assert (
        isinstance(end, EscalationStopped) and end.reason == "exhausted" and (end.step, end.round) == (3, 2)
    )
    assert reach_step(evolve(state, end), POLICY, now=T + 60 * MIN, link=link) == []


def test_a_page_carries_the_contacts_and_the_acknowledge_link() -> None:
    _, events = walk(started(), [T])
    [page] = [e for e in events if isinstance(e, PageRequested)]
    assert page.person == "ann" and page.urgency == "high" and page.mode == "page"
    assert [(c.kind, c.address) for c in page.contacts] == [
        ("email", "ann@example.org"),
        ("webhook", "https://pager.example.org/ann"),
    ]
    assert page.ack_url == "https://intake.example.org/v1/ack/token-for-ann"
    assert page.ack_expires_at == T + timedelta(hours=24)
    assert (page.step, page.round, page.team, page.priority) == (1, 1, "db", "P1")


def test_a_low_urgency_notification_skips_urgent_only_contacts() -> None:
    at = datetime(2026, 3, 18, 19, tzinfo=UTC)
    _, events = walk(started("P4", at=at), [at])
    [page] = [e for e in events if isinstance(e, PageRequested)]
    assert page.mode == "notify" and [c.kind for c in page.contacts] == ["email"]


def test_nobody_on_call_and_no_usable_contact_are_recorded_as_unreached() -> None:
    state = started("P4", service="batch", team="batch", at=datetime(2026, 3, 18, 19, tzinfo=UTC))
    _, events = walk(state, [datetime(2026, 3, 18, 19, tzinfo=UTC)])
    [reached] = [e for e in events if isinstance(e, EscalationStepReached)]
    assert reached.paged == []
    assert reached.unreached == [
        "schedule empty: nobody on call",
        "person pager-only: no contact method for a notify",
    ]
    assert not [e for e in events if isinstance(e, PageRequested)]


def test_a_step_is_reached_once() -> None:
    state, first = walk(started(), [T])
    assert first and reach_step(state, POLICY, now=T, link=link) == []


@pytest.mark.parametrize(
    ("name", "state", "team", "settled", "expected"),
    [
        ("routed to a team with a policy", Escalation(), "db", False, ["EscalationStarted"]),
        ("routed again to the same team", "running", "db", False, []),
        ("routed to another team", "running", "web", False, ["EscalationStopped"]),
        ("already acknowledged", Escalation(), "db", True, []),
        ("a team without a policy", Escalation(), "web", False, []),
    ],
)
def test_routing_starts_and_stops(
    name: str, state: Escalation | str, team: str, settled: bool, expected: list[str]
) -> None:
    current = started() if state == "running" else state
    assert isinstance(current, Escalation)
    events = on_routed(
        current,
        POLICY,
        incident_id="inc-1",
        team=team,
        service="db",
        priority="P1",
        title="",
        settled=settled,
        now=T,
    )
    assert [e.type for e in events] == expected, name


def test_a_service_policy_wins_over_a_team_policy_and_urgency_follows_priority() -> None:
    events = on_routed(
        Escalation(),
        POLICY,
        incident_id="i",
        team="db",
        service="batch",
        priority="P5",
        title="",
        settled=False,
        now=T,
    )
    [start] = events
    assert isinstance(start, EscalationStarted)
    assert (start.policy_id, start.urgency, start.first_due_at) == ("gaps", "low", T)


def test_acknowledging_stops_the_chain_once() -> None:
    state, _ = walk(started(), [T])
    [stopped] = stop(state, "acknowledged", by="ann", now=T + MIN)
    assert isinstance(stopped, EscalationStopped) and (stopped.reason, stopped.by, stopped.step) == (
        "acknowledged",
        "ann",
        1,
    )
    after = evolve(state, stopped)
    assert escalation.due(after) is None and stop(after, "resolved", by="x", now=T) == []

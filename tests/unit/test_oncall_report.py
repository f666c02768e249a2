"""The on-call report, pure: MTTA per team and per acknowledging person, pages per person per
ISO week, and pages outside business hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.triage.oncall_report import report, summarise
from shared.events import EscalationStarted, EscalationStopped, Event, PageContact, PageRequested
from shared.policy.oncall import OnCallPolicy

POLICY = OnCallPolicy.model_validate(
    {
        "people": [{"id": "ann", "contacts": [{"kind": "email", "address": "a@example.org"}]}],
        "escalation_policies": [
            {
                "id": "db",
                "teams": ["db"],
                "steps": [{"targets": [{"kind": "person", "id": "ann"}]}],
                "business_hours": {"timezone": "Europe/Berlin"},
            }
        ],
    }
)
MON = datetime(2026, 3, 16, 9, tzinfo=UTC)  # 10:00 in Berlin, ISO week 12


def started(incident: str, at: datetime, team: str = "db") -> EscalationStarted:
    return EscalationStarted(
        incident_id=incident,
        policy_id="db",
        team=team,
        priority="P1",
        urgency="high",
        steps=1,
        first_due_at=at,
        occurred_at=at,
    )


def stopped(incident: str, at: datetime, reason: str = "acknowledged", by: str = "ann") -> EscalationStopped:
    return EscalationStopped(incident_id=incident, policy_id="db", reason=reason, by=by, occurred_at=at)  # type: ignore[arg-type]


def page(incident: str, at: datetime, person: str = "ann") -> PageRequested:
    return PageRequested(
        incident_id=incident,
        person=person,
        policy_id="db",
        step=1,
        urgency="high",
        mode="page",
        contacts=[PageContact(kind="email", address="a@example.org")],
        ack_url="u",
        ack_expires_at=at,
        occurred_at=at,
    )


def test_mtta_pages_per_week_and_out_of_hours() -> None:
    events: list[Event] = [
        started("i1", MON),
        page("i1", MON),
        stopped("i1", MON + timedelta(minutes=2)),
        started("i2", MON),
        page("i2", MON),
        stopped("i2", MON + timedelta(minutes=4), by="bob"),
        started("i3", MON, team="web"),
        page("i3", MON),
        stopped("i3", MON + timedelta(minutes=6), reason="resolved"),
        # Sunday night in Berlin, ISO week 13
        started("i4", datetime(2026, 3, 29, 22, tzinfo=UTC)),
        page("i4", datetime(2026, 3, 29, 22, tzinfo=UTC)),
        page("i4", datetime(2026, 3, 29, 22, 5, tzinfo=UTC), person="bob"),
        stopped("i4", datetime(2026, 3, 29, 22, 10, tzinfo=UTC), by="bob"),
    ]
    r = report(events, POLICY)
    assert r.mtta_by_team["db"].count == 3 and r.mtta_by_team["db"].median_seconds == 240
    assert "web" not in r.mtta_by_team  # resolved without an acknowledgement: no MTTA
    assert r.mtta_by_person["ann"].mean_seconds == 120
    assert r.mtta_by_person["bob"].count == 2 and r.mtta_by_person["bob"].mean_seconds == 420
    assert r.pages_per_person_week == {"ann": {"2026-W12": 3, "2026-W13": 1}, "bob": {"2026-W13": 1}}
    assert (r.pages, r.out_of_hours, r.out_of_hours_pages) == (5, 2, {"ann": 1, "bob": 1})

    week12 = report(events, POLICY, start=MON, end=MON + timedelta(days=7))
    assert week12.pages == 3 and week12.out_of_hours == 0 and week12.mtta_by_team["db"].count == 2


def test_summaries() -> None:
    assert summarise([]).count == 0 and summarise([]).median_seconds is None
    s = summarise([float(n) for n in range(1, 11)])
    assert (s.count, s.mean_seconds, s.median_seconds, s.p90_seconds) == (10, 5.5, 5.5, 9.0)

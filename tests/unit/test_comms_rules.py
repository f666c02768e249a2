"""Comms' pure rules: who hears what, coalescing, cadence, templates, retries, outbound allowlist."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from services.comms import cadence, directory, domain
from services.comms.channels import DeliveryFailed, Outbound
from services.comms.delivery import backoff, progress
from services.comms.templates import TemplateInvalid, Templates
from shared.events import (
    ChannelTarget,
    NotificationCoalesced,
    NotificationFailed,
    NotificationPlanned,
    NotificationSent,
    RecipientNotified,
)
from shared.policy import PolicyError, parse_policy
from shared.policy.comms import CadencePolicy, CommsPolicy, OutboundPolicy, RetryPolicy, TemplateOverride

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def policy(**comms: object) -> CommsPolicy:
    return parse_policy({"comms": comms}).comms


POLICY = policy(
    stakeholders=[
        {"id": "lead", "audience": "management", "channels": [{"kind": "email", "address": "lead@x.org"}]},
        {
            "id": "users",
            "audience": "end_users",
            "channels": [{"kind": "webhook", "address": "https://s.x.org/h"}],
        },
        {
            "id": "oncall",
            "channels": [
                {"kind": "slack", "address": "https://hooks.x.org/a"},
                {"kind": "email", "address": "oncall@x.org"},
            ],
        },
    ],
    lists=[{"id": "api", "members": ["lead", "users"]}],
    subscriptions=[
        {"id": "api", "list": "api", "services": ["api"]},
        {"id": "oncall-p1", "stakeholder": "oncall", "priorities": ["P1"]},
        {"id": "lead-major", "stakeholder": "lead", "major_only": True},
    ],
)
BOOK = directory.from_policy(POLICY)


def incident(**kw: object) -> domain.CommsIncident:
    base: dict[str, object] = {"id": "i1", "title": "API down", "service": "api", "priority": "P1"}
    return domain.CommsIncident(**{**base, **kw})  # type: ignore[arg-type]


def fact(kind: str, **data: object) -> domain.Fact:
    return domain.Fact(kind, "i1", f"e-{kind}", T0, data)


def names(to: list[domain.Addressee]) -> list[str]:
    return sorted(a.stakeholder for a in to)


def render(kind: str, audience: str, channel: str, ctx: object) -> tuple[str, str]:
    return f"{kind}/{audience}", "body"


def test_a_p1_on_a_subscribed_service_reaches_every_audience_subscribed() -> None:
    assert names(domain.addressees(incident(), "PriorityAssigned", BOOK, POLICY)) == [
        "lead",
        "oncall",
        "users",
    ]


def test_a_p3_reaches_responders_only_by_default() -> None:
    to = domain.addressees(incident(priority="P3"), "PriorityAssigned", BOOK, POLICY)
    assert names(to) == []  # oncall is P1-only; lead and users hear of P1/P2 only


def test_major_only_subscriptions_wait_for_acceptance() -> None:
    other = incident(service="db")
    assert "lead" not in names(domain.addressees(other, "PriorityAssigned", BOOK, POLICY))
    assert "lead" in names(domain.addressees(replace_major(other), "MajorIncidentAccepted", BOOK, POLICY))


def replace_major(i: domain.CommsIncident) -> domain.CommsIncident:
    return domain.CommsIncident(**{**{f: getattr(i, f) for f in i.__dataclass_fields__}, "major": "accepted"})


def test_resolve_goes_to_everyone_notified_before_and_only_them() -> None:
    state = incident()
    for e in domain.notify(
        state,
        cause_event_id="c1",
        kind="PriorityAssigned",
        to=domain.addressees(state, "PriorityAssigned", BOOK, POLICY),
        recipients={},
        render=render,
        policy=POLICY,
        now=T0,
    ).incident:
        state = domain.evolve(state, e)
    quiet = domain.CommsIncident(
        **{**{f: getattr(state, f) for f in state.__dataclass_fields__}, "service": "db", "priority": "P4"}
    )
    assert names(domain.addressees(quiet, "IncidentResolved", BOOK, POLICY)) == ["lead", "oncall", "users"]
    [oncall] = [a for a in state.notified.values() if a.stakeholder == "oncall"]
    assert oncall.fallback == ChannelTarget(kind="email", address="oncall@x.org")


def test_notification_ids_are_one_per_cause_and_recipient() -> None:
    state = incident()
    to = domain.addressees(state, "PriorityAssigned", BOOK, POLICY)
    first = domain.notify(
        state,
        cause_event_id="c1",
        kind="PriorityAssigned",
        to=to,
        recipients={},
        render=render,
        policy=POLICY,
        now=T0,
    )
    again = domain.notify(
        state,
        cause_event_id="c1",
        kind="PriorityAssigned",
        to=to,
        recipients={},
        render=render,
        policy=POLICY,
        now=T0,
    )
    assert [e.notification_id for e in first.incident] == [e.notification_id for e in again.incident]  # type: ignore[attr-defined]
    for e in first.incident:
        state = domain.evolve(state, e)
    replay = domain.notify(
        state,
        cause_event_id="c1",
        kind="PriorityAssigned",
        to=to,
        recipients={},
        render=render,
        policy=POLICY,
        now=T0,
    )
    assert replay.incident == []


def test_a_storm_to_one_recipient_is_coalesced_into_a_digest() -> None:
    p = policy(coalesce={"window": 60, "max_per_window": 2})
    lead = [
        a for a in domain.addressees(incident(), "PriorityAssigned", BOOK, POLICY) if a.stakeholder == "lead"
    ]
    rs = domain.RecipientState()
    planned = held = 0
    for n in range(10):
        out = domain.notify(
            incident(id=f"i{n}"),
            cause_event_id=f"c{n}",
            kind="PriorityAssigned",
            to=lead,
            recipients={lead[0].key: rs},
            render=render,
            policy=p,
            now=T0 + timedelta(seconds=n),
        )
        for e in out.incident:
            assert domain.recipient_of(e) == lead[0].key
            rs = domain.evolve_recipient(rs, e)
        planned += sum(isinstance(e, NotificationPlanned) for e in out.incident)
        held += sum(isinstance(e, NotificationCoalesced) for e in out.incident)
    assert (planned, held) == (2, 8)
    assert domain.digest(rs, render=render, now=T0 + timedelta(seconds=59)) is None
    digest = domain.digest(rs, render=render, now=T0 + timedelta(seconds=60))
    assert digest is not None
    [message] = digest.incident
    assert isinstance(message, NotificationPlanned) and message.cause_type == "Digest"
    assert len(message.digest_of) == 8
    rs = domain.evolve_recipient(rs, message)
    assert rs.pending == ()


def test_the_recipient_count_folds_each_notification_once_from_new_and_older_logs() -> None:
    """Planned here and read back from the log, or recorded by older versions on the recipient's own
    stream too (`RecipientNotified`, a second copy of each held-back one): each counts once."""
    key = domain.recipient_key("email", "lead@x.org")
    common = {
        "incident_id": "i1",
        "cause_type": "PriorityAssigned",
        "recipient": "lead@x.org",
        "channel": "email",
        "audience": "management",
        "subject": "s",
        "occurred_at": T0,
    }
    sent = NotificationPlanned(notification_id="n1", cause_event_id="c1", body="b", **common)
    held = NotificationCoalesced(
        notification_id="n2", cause_event_id="c2", window_ends_at=T0 + timedelta(minutes=1), **common
    )
    marker = RecipientNotified(recipient=key, notification_id="n1", incident_id="i1", occurred_at=T0)
    rs = domain.RecipientState()
    for e in [sent, marker, sent, held, held]:
        assert domain.recipient_of(e) == key
        rs = domain.evolve_recipient(rs, e)
    assert [n for n, _ in rs.recent] == ["n1"] and [p.notification_id for p in rs.pending] == ["n2"]
    old_digest = RecipientNotified(
        recipient=key, notification_id="d", incident_id="i1", digest_of=["n2"], occurred_at=T0
    )
    assert domain.evolve_recipient(rs, old_digest).pending == ()


def test_a_retried_decision_stands_so_the_first_of_a_storm_still_go_out() -> None:
    """A handler runs again when its commit conflicted; what it decided for a notification is already
    counted, and deciding it again must give the same answer, not count it against itself."""
    p = policy(coalesce={"window": 60, "max_per_window": 2})
    lead = [
        a for a in domain.addressees(incident(), "PriorityAssigned", BOOK, POLICY) if a.stakeholder == "lead"
    ]
    rs = domain.RecipientState()
    first: list[str] = []
    for n in range(4):
        out = domain.notify(
            incident(id=f"i{n}"),
            cause_event_id=f"c{n}",
            kind="PriorityAssigned",
            to=lead,
            recipients={lead[0].key: rs},
            render=render,
            policy=p,
            now=T0,
        )
        first += [e.type for e in out.incident]
        for e in out.incident:
            rs = domain.evolve_recipient(rs, e)
    again = [
        e.type
        for n in range(4)
        for e in domain.notify(
            incident(id=f"i{n}"),
            cause_event_id=f"c{n}",
            kind="PriorityAssigned",
            to=lead,
            recipients={lead[0].key: rs},
            render=render,
            policy=p,
            now=T0 + timedelta(seconds=1),
        ).incident
    ]
    assert first == again == ["NotificationPlanned"] * 2 + ["NotificationCoalesced"] * 2


def test_only_input_kinds_that_can_change_something_are_handled() -> None:
    for kind in ["AlertAttached", "AlertObserved", "SlaTargetSet", "ServiceActivityRecorded"]:
        assert not domain.relevant(kind, POLICY)
        assert domain.observe(incident(), fact(kind)) is None
    for kind in [
        "IncidentOpened",
        "PriorityAssigned",
        "IncidentAcknowledged",
        "PageRequested",
        "SlaBreached",
    ]:
        assert domain.relevant(kind, POLICY)


def test_status_updates_are_exempt_from_coalescing() -> None:
    p = policy(coalesce={"window": 60, "max_per_window": 1})
    lead = [
        a for a in domain.addressees(incident(), "PriorityAssigned", BOOK, POLICY) if a.stakeholder == "lead"
    ]
    busy = domain.RecipientState(recent=(("a", T0), ("b", T0)))
    out = domain.notify(
        incident(),
        cause_event_id="u",
        kind="StatusUpdatePublished",
        to=lead,
        recipients={lead[0].key: busy},
        render=render,
        policy=p,
        now=T0,
    )
    assert isinstance(out.incident[0], NotificationPlanned)


def test_accepting_a_major_incident_starts_the_cadence_and_resolve_stops_it() -> None:
    c = CadencePolicy(major_incident=timedelta(minutes=30))
    state = incident()
    assert cadence.change(state, c, incident_id="i1", now=T0) is None
    started = cadence.change(replace_major(state), c, incident_id="i1", now=T0)
    assert started is not None and started.type == "UpdateCadenceStarted"
    assert started.next_due_at == T0 + timedelta(minutes=30)  # type: ignore[union-attr]
    running = domain.evolve(replace_major(state), started)
    resolved = domain.CommsIncident(
        **{**{f: getattr(running, f) for f in running.__dataclass_fields__}, "status": "resolved"}
    )
    assert cadence.change(resolved, c, incident_id="i1", now=T0).type == "UpdateCadenceStopped"  # type: ignore[union-attr]


def test_overdue_reminds_then_escalates_once_per_due_time() -> None:
    c = CadencePolicy(major_incident=timedelta(minutes=30), escalate_after=timedelta(minutes=15))
    state = domain.evolve(
        replace_major(incident()), cadence.change(replace_major(incident()), c, incident_id="i1", now=T0)
    )  # type: ignore[arg-type]
    due = T0 + timedelta(minutes=30)
    assert cadence.overdue(state, c, now=due - timedelta(seconds=1)) == []
    assert cadence.overdue(state, c, now=due) == [("reminder", due)]
    event, to = domain.overdue_event(state, "reminder", due, policy=POLICY, directory=BOOK, now=due)
    state = domain.evolve(state, event)
    assert to[0].target.kind == "log" and event.role == "communications_manager"
    assert cadence.overdue(state, c, now=due + timedelta(minutes=1)) == []
    assert cadence.overdue(state, c, now=due + timedelta(minutes=15)) == [("escalation", due)]


def test_a_published_update_records_its_latency_against_the_due_time() -> None:
    c = CadencePolicy(major_incident=timedelta(minutes=30))
    state = domain.evolve(
        replace_major(incident()), cadence.change(replace_major(incident()), c, incident_id="i1", now=T0)
    )  # type: ignore[arg-type]
    late = T0 + timedelta(minutes=35)
    published = domain.publish(
        state,
        domain.UpdateCommand("all", "fixing"),
        incident_id="i1",
        update_id="u1",
        by="cm",
        subject="s",
        now=late,
    )
    assert published.due_at == T0 + timedelta(minutes=30)
    assert published.latency_seconds == 300
    assert published.next_due_at == late + timedelta(minutes=30)


def test_an_empty_update_is_refused() -> None:
    with pytest.raises(domain.UpdateRejected):
        domain.publish(
            incident(),
            domain.UpdateCommand("all"),
            incident_id="i1",
            update_id="u",
            by="x",
            subject="s",
            now=T0,
        )


def test_role_holders_come_from_the_incident_then_the_directory_then_the_log() -> None:
    book = directory.from_policy(
        policy(
            stakeholders=[
                {"id": "ann", "channels": [{"kind": "email", "address": "ann@x.org"}]},
                {
                    "id": "bob",
                    "roles": ["communications_manager"],
                    "channels": [{"kind": "email", "address": "bob@x.org"}],
                },
            ]
        )
    )
    assert names(
        domain.role_holders(incident(roles={"communications_manager": "ann"}), "communications_manager", book)
    ) == ["ann"]
    assert names(domain.role_holders(incident(), "communications_manager", book)) == ["bob"]
    assert domain.role_holders(incident(), "incident_manager", book)[0].target.kind == "log"


def test_templates_have_tactical_executive_and_public_shapes() -> None:
    t = Templates()
    ctx = {"incident": incident().context(), "event": {}, "update": {}, "recipient": {}}
    assert "Conditions:" in t.render("PriorityAssigned", "responders", "email", ctx).body
    assert "Next steps:" in t.render("PriorityAssigned", "management", "email", ctx).body
    public = t.render("PriorityAssigned", "end_users", "email", ctx)
    assert public.subject == "[P1] API down (api)" and "service desk" in public.body


def test_the_most_specific_override_wins_and_the_sandbox_holds() -> None:
    t = Templates(
        [
            TemplateOverride(event="*", subject="generic"),
            TemplateOverride(
                event="PriorityAssigned", channel="slack", subject="{{ incident.title | upper }}"
            ),
        ]
    )
    ctx = {"incident": incident().context(), "event": {}, "update": {}, "recipient": {}}
    assert t.render("PriorityAssigned", "responders", "slack", ctx).subject == "API DOWN"
    assert t.render("PriorityAssigned", "responders", "email", ctx).subject == "generic"
    with pytest.raises(TemplateInvalid):
        t.render("X", "responders", "email", ctx, subject="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateInvalid):
        Templates([TemplateOverride(body="{% if %}")])


def test_attempts_go_to_the_fallback_after_the_primary_is_exhausted() -> None:
    def failed(final: bool = False, permanent: bool = False) -> NotificationFailed:
        return NotificationFailed(
            incident_id="i",
            notification_id="n",
            channel="webhook",
            recipient="r",
            attempt=1,
            error="boom",
            final=final,
            permanent=permanent,
            occurred_at=T0,
        )

    assert progress([failed()], attempts=2).primary_given_up is False
    two = progress([failed(), failed()], attempts=2)
    assert two.primary_given_up and two.fallback_failures == 0
    assert progress([failed(permanent=True)], attempts=5).primary_given_up
    assert progress([failed(), failed(), failed(final=True)], attempts=2).dead
    sent = NotificationSent(
        incident_id="i", notification_id="n", channel="email", recipient="r", attempt=3, occurred_at=T0
    )
    assert progress([failed(), sent], attempts=2).sent


def test_backoff_doubles_is_capped_and_jitters_upwards() -> None:
    p = RetryPolicy(first_delay=timedelta(seconds=1), max_delay=timedelta(seconds=5), jitter=0.5)
    assert [backoff(p, n, 0.0) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert backoff(p, 1, 1.0) == 1.5


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:8080/x",
        "http://[::1]/x",
        "http://0.0.0.0/",
        "ftp://x.org/",
    ],
)
def test_outbound_refuses_metadata_loopback_and_odd_schemes(url: str) -> None:
    with pytest.raises(DeliveryFailed):
        Outbound(OutboundPolicy()).check_url(url)


def test_outbound_allows_what_the_policy_or_the_operator_lists() -> None:
    assert Outbound(OutboundPolicy(allow=["127.0.0.1"])).check_url("http://127.0.0.1:9/h") == "127.0.0.1"
    assert (
        Outbound(OutboundPolicy(), ["hooks.internal"]).check_url("http://hooks.internal/h")
        == "hooks.internal"
    )
    assert Outbound(OutboundPolicy()).check_url("https://10.1.2.3/h") == "10.1.2.3"
    strict = Outbound(OutboundPolicy(allow_private=False))
    assert strict.refusal(ipaddress.ip_address("10.1.2.3")) == "a private address"


def test_policy_references_must_resolve() -> None:
    with pytest.raises(PolicyError, match="unknown stakeholder nobody"):
        policy(subscriptions=[{"id": "s", "stakeholder": "nobody"}])
    with pytest.raises(PolicyError, match="not an email address"):
        policy(stakeholders=[{"id": "a", "channels": [{"kind": "email", "address": "nope"}]}])
    assert (
        policy(triggers={"IncidentRouted": {"audiences": ["responders"]}})
        .triggers["IncidentResolved"]
        .to_notified
    )


def test_roles_follow_assignment_handover_and_relinquishment() -> None:
    state = incident()
    for kind, data in [
        ("RoleAssigned", {"role": "communications_manager", "person": "ann"}),
        ("HandoverCompleted", {"role": "communications_manager", "from_person": "ann", "to_person": "bob"}),
    ]:
        change = domain.observe(state, fact(kind, **data))
        assert change is not None
        state = domain.evolve(state, change)
    assert state.roles == {"communications_manager": "bob"}
    assert (
        domain.observe(state, fact("RoleRelinquished", role="communications_manager", person="ann")) is None
    )
    gone = domain.observe(state, fact("RoleRelinquished", role="communications_manager", person="bob"))
    assert gone is not None and domain.evolve(state, gone).roles == {}


def test_acknowledge_goes_to_everyone_paged_and_nobody_else() -> None:
    state = incident(service="db", priority="P4")
    assert domain.addressees(state, "IncidentAcknowledged", BOOK, POLICY) == []
    paged = domain.notify(
        incident(),
        cause_event_id="c",
        kind="PriorityAssigned",
        to=domain.addressees(incident(), "PriorityAssigned", BOOK, POLICY),
        recipients={},
        render=render,
        policy=POLICY,
        now=T0,
    )
    for e in paged.incident:
        state = domain.evolve(state, e)
    assert names(domain.addressees(state, "IncidentAcknowledged", BOOK, POLICY)) == [
        "lead",
        "oncall",
        "users",
    ]


def test_events_that_change_nothing_and_notify_nobody_write_nothing() -> None:
    fresh = domain.CommsIncident()
    quiet = domain.react(fresh, fact("AlertRepeated", count=3), directory=BOOK, policy=POLICY, now=T0)
    assert quiet.events == [] and quiet.to == []
    opened = domain.react(
        fresh, fact("IncidentOpened", title="t", service="api"), directory=BOOK, policy=POLICY, now=T0
    )
    assert [e.type for e in opened.events] == ["IncidentContextUpdated"] and opened.state.id == "i1"


def test_a_status_update_can_choose_its_report_shape() -> None:
    t = Templates()
    ctx = {"incident": incident().context(), "event": {}, "recipient": {}}
    tactical = {
        "template": "tactical",
        "conditions": "db primary lost",
        "actions": "failing over",
        "needs": "dba",
    }
    body = t.render("StatusUpdatePublished", "management", "email", {**ctx, "update": tactical}).body
    assert "Conditions: db primary lost" in body and "Needs: dba" in body
    executive = {"template": "executive", "current_status": "degraded", "text": ""}
    body = t.render("StatusUpdatePublished", "responders", "email", {**ctx, "update": executive}).body
    assert "Current status: degraded" in body


def test_webhook_urls_are_shown_without_their_secret_path() -> None:
    from services.comms.api import redact

    assert redact("https://hooks.slack.example/services/T000/B000/XXXX") == "https://hooks.slack.example/..."
    assert redact("ops@example.org") == "ops@example.org"


def test_an_on_call_page_reaches_every_contact_with_its_acknowledge_link() -> None:
    contacts = [
        {"kind": "email", "address": "ann@x.org"},
        {"kind": "slack", "address": "https://hooks.x.org/a"},
    ]
    page = fact(
        "PageRequested", person="ann", name="Ann", step=1, contacts=contacts, ack_url="https://lp/v1/ack/x"
    )
    reaction = domain.react(incident(), page, directory=BOOK, policy=POLICY, now=T0)
    assert [(a.stakeholder, a.target.kind) for a in reaction.to] == [("ann", "email"), ("ann", "slack")]
    assert all(a.fallback is None for a in reaction.to)
    ctx = {"incident": incident().context(), "event": page.data, "update": {}, "recipient": {}}
    message = Templates().render("PageRequested", "responders", "email", ctx)
    assert message.subject == "[page] [P1] API down (api)" and "https://lp/v1/ack/x" in message.body
    busy = domain.RecipientState(recent=tuple((f"n{i}", T0) for i in range(10)))
    out = domain.notify(
        incident(),
        cause_event_id="p",
        kind="PageRequested",
        to=reaction.to,
        recipients={a.key: busy for a in reaction.to},
        render=render,
        policy=POLICY,
        now=T0,
    )
    assert all(isinstance(e, NotificationPlanned) for e in out.incident)  # pages are never held back

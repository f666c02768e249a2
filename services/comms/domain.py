"""Comms' pure core: what comms knows of an incident, who hears of each event, and the messages
they get (coalesced when one recipient would be flooded). No I/O, no clock, no randomness."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.comms import cadence
from services.comms.directory import Directory, Stakeholder
from services.comms.held import Held
from shared.errors import Conflict, DomainError, NotFound
from shared.events import (
    ChannelTarget,
    Event,
    IncidentContextUpdated,
    NotificationCoalesced,
    NotificationPlanned,
    RecipientNotified,
    StatusUpdateOverdue,
    StatusUpdatePublished,
    UpdateCadenceStarted,
    UpdateCadenceStopped,
)
from shared.policy.comms import CommsPolicy, Trigger

NAMESPACE = uuid.UUID("6c1f3f0e-7d7b-4c1e-9a55-1e0c2f6b9e41")
AUDIENCES = ("responders", "end_users", "management")

Render = Callable[[str, str, str, Mapping[str, Any]], tuple[str, str]]
"""(event kind, audience, channel, context) -> (subject, body)."""


@dataclass(frozen=True, slots=True)
class Fact:
    """An input event as comms sees it: its kind and data, whichever service recorded it."""

    kind: str
    incident_id: str
    event_id: str
    occurred_at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Addressee:
    """One recipient of one message: where it goes first, and where if that fails."""

    stakeholder: str
    name: str
    audience: str
    target: ChannelTarget
    fallback: ChannelTarget | None = None

    @property
    def key(self) -> str:
        return recipient_key(self.target.kind, self.target.address)


def recipient_key(channel: str, address: str) -> str:
    return f"{channel}|{address}"


def notification_id(cause_event_id: str, channel: str, address: str) -> str:
    """One notification per cause event and recipient, whatever is redelivered."""
    return str(uuid.uuid5(NAMESPACE, f"{cause_event_id}|{channel}|{address}"))


@dataclass(frozen=True, slots=True)
class CommsIncident:
    id: str = ""
    title: str = ""
    service: str = ""
    priority: str | None = None
    status: str = "open"
    major: str | None = None
    team: str | None = None
    business_impact: str | None = None
    roles: Mapping[str, str] = field(default_factory=dict)
    notified: Mapping[str, Addressee] = field(default_factory=dict)
    planned: frozenset[str] = frozenset()
    updates: frozenset[str] = frozenset()
    cadence_every: float | None = None
    next_due_at: datetime | None = None
    overdue_fired: frozenset[tuple[str, datetime]] = frozenset()

    def context(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "service": self.service,
            "priority": self.priority or "",
            "status": self.status,
            "major": self.major or "",
            "team": self.team or "",
            "business_impact": self.business_impact or "",
            "roles": dict(self.roles),
            "next_due_at": self.next_due_at.isoformat() if self.next_due_at else "",
        }


def _addressee(
    audience: str, stakeholder: str, recipient: str, channel: str, fb: tuple[str | None, ...]
) -> Addressee:
    fallback = ChannelTarget(kind=fb[0], address=fb[1]) if fb[0] and fb[1] else None
    return Addressee(
        stakeholder, stakeholder, audience, ChannelTarget(kind=channel, address=recipient), fallback
    )


def evolve(state: CommsIncident, event: Event) -> CommsIncident:
    match event:
        case IncidentContextUpdated():
            changed = {
                k: v
                for k in ("title", "service", "priority", "status", "major", "team", "business_impact")
                if (v := getattr(event, k)) is not None
            }
            roles = {r: p for r, p in {**state.roles, **event.roles}.items() if p}  # "" vacates a role
            return replace(state, id=event.incident_id, roles=roles, **changed)
        case NotificationPlanned() | NotificationCoalesced():
            a = _addressee(
                event.audience,
                event.stakeholder or event.recipient,
                event.recipient,
                event.channel,
                (event.fallback_channel, event.fallback_recipient),
            )
            notified = state.notified if a.key in state.notified else {**state.notified, a.key: a}
            return replace(
                state,
                id=event.incident_id,
                notified=notified,
                planned=state.planned | {event.notification_id},
            )
        case StatusUpdatePublished():
            return replace(state, updates=state.updates | {event.update_id}, next_due_at=event.next_due_at)
        case UpdateCadenceStarted():
            return replace(state, cadence_every=event.every_seconds, next_due_at=event.next_due_at)
        case UpdateCadenceStopped():
            return replace(state, cadence_every=None, next_due_at=None)
        case StatusUpdateOverdue():
            return replace(state, overdue_fired=state.overdue_fired | {(event.level, event.due_at)})
        case _:
            return state


def _text(data: Mapping[str, Any], *keys: str) -> str | None:
    for k in keys:
        v = data.get(k)
        if v is not None and v != "":
            return str(v)
    return None


OBSERVED = frozenset(
    {
        "IncidentOpened",
        "PriorityAssigned",
        "PriorityChanged",
        "IncidentRouted",
        "MajorIncidentProposed",
        "MajorIncidentAccepted",
        "MajorIncidentRejected",
        "RoleAssigned",
        "RoleRelinquished",
        "HandoverCompleted",
        "IncidentAcknowledged",
        "IncidentResolved",
        "IncidentClosed",
        "IncidentReopened",
    }
)
"""The input kinds that may change comms' view of an incident (`observe`)."""


def inputs(policy: CommsPolicy) -> frozenset[str]:
    """The input kinds that can change anything comms records: its view of the incident (and with
    it the cadence), or a notification. Most of what intake and triage record (alerts attached, SLA
    targets, activity) cannot: the bus passes it over, and the handler would too."""
    return OBSERVED | policy.triggers.keys() | {"PageRequested"}


def relevant(kind: str, policy: CommsPolicy) -> bool:
    return kind in inputs(policy)


def observe(state: CommsIncident, fact: Fact) -> IncidentContextUpdated | None:
    """What this input event changes in comms' view of the incident."""
    d = fact.data
    change: dict[str, Any] = {}
    match fact.kind:
        case "IncidentOpened":
            change = {"title": _text(d, "title"), "service": _text(d, "service"), "status": "open"}
        case "PriorityAssigned":
            change = {
                "priority": _text(d, "priority"),
                "title": _text(d, "title"),
                "service": _text(d, "service"),
            }
        case "PriorityChanged":
            change = {"priority": _text(d, "priority", "to_priority", "new_priority", "to")}
        case "IncidentRouted":
            change = {"team": _text(d, "team")}
        case "MajorIncidentProposed":
            change = {"major": "proposed"}
        case "MajorIncidentAccepted":
            change = {"major": "accepted", "business_impact": _text(d, "business_impact")}
        case "MajorIncidentRejected":
            change = {"major": "rejected"}
        case "RoleAssigned":
            role, person = _text(d, "role"), _text(d, "person")
            if role and person:
                change = {"roles": {role: person}}
        case "RoleRelinquished":
            role, person = _text(d, "role"), _text(d, "person")
            if role and person and state.roles.get(role) == person:
                change = {"roles": {role: ""}}
        case "HandoverCompleted":
            role, person = _text(d, "role"), _text(d, "to_person")
            if role and person:
                change = {"roles": {role: person}}
        case "IncidentAcknowledged":
            change = {"status": "acknowledged"} if state.status == "open" else {}
        case "IncidentResolved":
            change = {"status": "resolved"}
        case "IncidentClosed":
            change = {"status": "closed"}
        case "IncidentReopened":
            change = {"status": "open"}
    change = {k: v for k, v in change.items() if v is not None and (k == "roles" or getattr(state, k) != v)}
    if "roles" in change and all(state.roles.get(r, "") == p for r, p in change["roles"].items()):
        del change["roles"]
    if not change:
        return None
    return IncidentContextUpdated(incident_id=fact.incident_id, occurred_at=fact.occurred_at, **change)


def audiences_for(trigger: Trigger, priority: str | None) -> list[str]:
    if trigger.priorities and priority not in trigger.priorities:
        return []
    out = []
    for a in trigger.audiences:
        only = trigger.audience_priorities.get(a)
        if only and priority not in only:
            continue
        out.append(a.value)
    return out


def _from(s: Stakeholder, audience: str) -> Addressee:
    return Addressee(s.id, s.name, audience, s.primary, s.fallback)


def subscribers(state: CommsIncident, directory: Directory, audiences: Sequence[str]) -> list[Addressee]:
    """Stakeholders whose subscriptions match this incident, in the given audiences."""
    out: dict[str, Addressee] = {}
    for sub in sorted(directory.subscriptions.values(), key=lambda s: s.id):
        if not sub.matches(
            incident_id=state.id,
            service=state.service,
            priority=state.priority,
            major=state.major == "accepted",
        ):
            continue
        for s in directory.members(sub):
            audience = sub.audience or s.audience
            if audience in audiences:
                out.setdefault(_from(s, audience).key, _from(s, audience))
    return list(out.values())


def addressees(state: CommsIncident, kind: str, directory: Directory, policy: CommsPolicy) -> list[Addressee]:
    """Who hears of an event of this kind about this incident, by the policy's triggers."""
    trigger = policy.triggers.get(kind)
    if trigger is None:
        return []
    out = {a.key: a for a in subscribers(state, directory, audiences_for(trigger, state.priority))}
    if trigger.to_notified:
        for key, a in state.notified.items():
            out.setdefault(key, a)
    return list(out.values())


def paged(data: Mapping[str, Any]) -> list[Addressee]:
    """An on-call page goes to every contact method the page names (not one with fallbacks)."""
    person = str(data.get("person") or "")
    name = str(data.get("name") or person)
    out = []
    for c in data.get("contacts") or []:
        if isinstance(c, Mapping) and c.get("kind") and c.get("address"):
            target = ChannelTarget(kind=str(c["kind"]), address=str(c["address"]))
            out.append(Addressee(person, name, "responders", target))
    return out


def for_audience(state: CommsIncident, audience: str, directory: Directory) -> list[Addressee]:
    """A status update's recipients: that audience's subscribers and everyone in it told earlier."""
    audiences = list(AUDIENCES) if audience == "all" else [audience]
    out = {a.key: a for a in subscribers(state, directory, audiences)}
    for key, a in state.notified.items():
        if a.audience in audiences:
            out.setdefault(key, a)
    return list(out.values())


def role_holders(state: CommsIncident, role: str, directory: Directory) -> list[Addressee]:
    """Whoever holds `role` on this incident; else the directory's standing holders; else the log."""
    person = state.roles.get(role)
    if person is not None:
        s = directory.find_person(person)
        if s is not None:
            return [_from(s, "responders")]
    holders = [_from(s, "responders") for s in directory.holders_of(role)]
    if holders:
        return holders
    who = person or role
    return [Addressee(f"role:{role}", who, "responders", ChannelTarget(kind="log", address=f"{role}:{who}"))]


@dataclass(frozen=True, slots=True)
class RecipientState:
    """One recipient's recent notifications (id, when planned) and the ones held back for their digest."""

    recent: tuple[tuple[str, datetime], ...] = ()
    pending: Held = field(default_factory=Held)


def recipient_of(event: Event) -> str | None:
    """The recipient key an event counts for, if it is about a recipient."""
    match event:
        case NotificationPlanned() | NotificationCoalesced():
            return recipient_key(event.channel, event.recipient)
        case RecipientNotified():
            return event.recipient
        case _:
            return None


def evolve_recipient(state: RecipientState, event: Event) -> RecipientState:
    """Fold comms' log into one recipient's state. Idempotent per notification id: the same
    notification seen twice (planned here, then read back from the log) counts once. Older logs also
    hold `RecipientNotified` and a copy of each `NotificationCoalesced` on per-recipient streams: the
    former only ends a digest's pending list (the notification itself counts from its
    `NotificationPlanned`), the latter is the same notification again."""
    match event:
        case NotificationPlanned():
            done = set(event.digest_of)
            pending = state.pending.without(done) if done else state.pending
            if any(nid == event.notification_id for nid, _ in state.recent):
                return replace(state, pending=pending)
            return RecipientState((*state.recent, (event.notification_id, event.occurred_at))[-200:], pending)
        case RecipientNotified() if event.digest_of:
            return replace(state, pending=state.pending.without(set(event.digest_of)))
        case NotificationCoalesced():
            if event.notification_id in state.pending:
                return state
            return replace(state, pending=state.pending.added(event))
        case _:
            return state


@dataclass
class Outcome:
    """Events for the incident's stream: the notifications planned or held back."""

    incident: list[Event] = field(default_factory=list)


def held_until(
    rs: RecipientState, notification_id: str, *, kind: str, policy: CommsPolicy, now: datetime
) -> datetime | None:
    """Until when a notification to this recipient is held back (None: it goes out now): past
    `max_per_window` in the window, or while earlier ones wait for their digest. A decision already
    taken for this very notification stands (its commit was retried: the count holds it already)."""
    if any(nid == notification_id for nid, _ in rs.recent):
        return None
    if (held := rs.pending.get(notification_id)) is not None:
        return held.window_ends_at
    if kind in policy.coalesce.exempt:
        return None
    if rs.pending:
        return rs.pending[0].window_ends_at
    window = policy.coalesce.window
    recent = sorted(t for _, t in rs.recent if t > now - window)
    if len(recent) >= policy.coalesce.max_per_window:
        return recent[0] + window
    return None


def notify(
    state: CommsIncident,
    *,
    cause_event_id: str,
    kind: str,
    to: Sequence[Addressee],
    recipients: Mapping[str, RecipientState],
    render: Render,
    policy: CommsPolicy,
    now: datetime,
    event: Mapping[str, Any] | None = None,
    update: Mapping[str, Any] | None = None,
) -> Outcome:
    """A message to each addressee, or, past the coalescing limit, a place in their next digest."""
    out = Outcome()
    seen: set[str] = set()
    for a in to:
        if a.key in seen:
            continue
        seen.add(a.key)
        nid = notification_id(cause_event_id, a.target.kind, a.target.address)
        if nid in state.planned:
            continue
        context = {
            "incident": state.context(),
            "event": dict(event or {}),
            "update": dict(update or {}),
            "recipient": {"id": a.stakeholder, "name": a.name, "audience": a.audience},
        }
        subject, body = render(kind, a.audience, a.target.kind, context)
        ends = held_until(recipients.get(a.key, RecipientState()), nid, kind=kind, policy=policy, now=now)
        common: dict[str, Any] = {
            "incident_id": state.id,
            "notification_id": nid,
            "cause_event_id": cause_event_id,
            "cause_type": kind,
            "recipient": a.target.address,
            "channel": a.target.kind,
            "audience": a.audience,
            "subject": subject,
            "stakeholder": a.stakeholder,
            "fallback_channel": a.fallback.kind if a.fallback else None,
            "fallback_recipient": a.fallback.address if a.fallback else None,
            "occurred_at": now,
        }
        if ends is not None:
            out.incident.append(NotificationCoalesced(window_ends_at=ends, **common))
        else:
            out.incident.append(NotificationPlanned(body=body, **common))
    return out


def digest(rs: RecipientState, *, render: Render, now: datetime) -> Outcome | None:
    """When a recipient's window has ended, one message listing what was held back (`digest_of`)."""
    if not rs.pending or now < rs.pending[0].window_ends_at:
        return None
    first = rs.pending[0]
    nid = notification_id(f"digest|{first.notification_id}", first.channel, first.recipient)
    event = {"count": len(rs.pending), "subjects": [p.subject for p in rs.pending]}
    context = {
        "incident": {"id": first.incident_id, "title": "", "service": "", "priority": ""},
        "event": event,
        "update": {},
        "recipient": {"id": first.stakeholder, "name": first.stakeholder, "audience": first.audience},
    }
    subject, body = render("Digest", first.audience, first.channel, context)
    planned = NotificationPlanned(
        incident_id=first.incident_id,
        notification_id=nid,
        cause_event_id=first.notification_id,
        cause_type="Digest",
        recipient=first.recipient,
        channel=first.channel,
        audience=first.audience,
        subject=subject,
        body=body,
        stakeholder=first.stakeholder,
        fallback_channel=first.fallback_channel,
        fallback_recipient=first.fallback_recipient,
        digest_of=[p.notification_id for p in rs.pending],
        occurred_at=now,
    )
    return Outcome([planned])


@dataclass(frozen=True, slots=True)
class Reaction:
    """What an input event changes (context, cadence) and who must hear of it."""

    events: list[Event]
    state: CommsIncident
    to: list[Addressee]


def react(
    state: CommsIncident, fact: Fact, *, directory: Directory, policy: CommsPolicy, now: datetime
) -> Reaction:
    events: list[Event] = []
    after = state if state.id else replace(state, id=fact.incident_id)
    context = observe(after, fact)
    if context is not None:
        events.append(context)
        after = evolve(after, context)
    tune = cadence.change(after, policy.cadence, incident_id=fact.incident_id, now=now)
    if tune is not None:
        events.append(tune)
        after = evolve(after, tune)
    if fact.kind == "PriorityAssigned" and state.priority:
        return Reaction(events, after, [])  # prioritised again: not a new incident
    if fact.kind == "PageRequested":
        return Reaction(events, after, paged(fact.data))
    return Reaction(events, after, addressees(after, fact.kind, directory, policy))


class UpdateRejected(DomainError):
    status = 422
    title = "Invalid status update"


@dataclass(frozen=True, slots=True)
class UpdateCommand:
    audience: str
    text: str = ""
    template: str = "text"
    fields: Mapping[str, str] = field(default_factory=dict)


def publish(
    state: CommsIncident,
    cmd: UpdateCommand,
    *,
    incident_id: str,
    update_id: str,
    by: str,
    subject: str,
    now: datetime,
) -> StatusUpdatePublished:
    """Record a status update; its latency is measured against the cadence's due time."""
    if not state.id:
        raise NotFound(f"comms knows no incident {incident_id!r} yet")
    if state.status == "closed":
        raise Conflict("the incident is closed: no further updates")
    if not cmd.text.strip() and not any(v.strip() for v in cmd.fields.values()):
        raise UpdateRejected("text: give the update's text or its template fields")
    due = state.next_due_at
    return StatusUpdatePublished(
        incident_id=state.id,
        update_id=update_id,
        audience=cmd.audience,
        template=cmd.template,
        subject=subject,
        text=cmd.text,
        fields=dict(cmd.fields),
        by=by,
        due_at=due,
        latency_seconds=(now - due).total_seconds() if due is not None else None,
        next_due_at=cadence.next_due(state, published_at=now),
        occurred_at=now,
    )


def overdue_event(
    state: CommsIncident,
    level: cadence.Level,
    due_at: datetime,
    *,
    policy: CommsPolicy,
    directory: Directory,
    now: datetime,
) -> tuple[StatusUpdateOverdue, list[Addressee]]:
    role = policy.cadence.remind_role if level == "reminder" else policy.cadence.escalate_role
    to = role_holders(state, role, directory)
    event = StatusUpdateOverdue(
        incident_id=state.id,
        due_at=due_at,
        level=level,
        role=role,
        notified=[a.stakeholder for a in to],
        occurred_at=now,
    )
    return event, to


def overdue_cause(incident_id: str, level: str, due_at: datetime) -> str:
    return f"overdue|{incident_id}|{level}|{due_at.isoformat()}"

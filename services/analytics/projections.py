"""Analytics' pure core: fold facts from every service's log into incident views and timeline entries.

Analytics is a tolerant reader: it folds `Fact`s (an event's type, incident, domain time and fields)
rather than the event classes themselves, so it reads every event in the catalogue by name and field,
keeps working when a producer adds an optional field, and can be tested with any event shape.
Each field of a view is written by one producing service only, so the result does not depend on
how the services' logs interleave: a replay reaches the state that live processing reached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from types import NoneType
from typing import Any

from pydantic import BaseModel

from shared.envelope import Envelope
from shared.events import event_types


@dataclass(slots=True)
class Fact:
    """One event as analytics reads it. Treated as a value (not `frozen`: a frozen dataclass is
    built through `object.__setattr__`, and a rebuild makes one per event)."""

    id: str
    type: str
    incident_id: str | None
    at: datetime
    data: Mapping[str, Any]
    source: str = ""
    position: int = 0

    @classmethod
    def of(cls, env: Envelope) -> Fact:
        data = _fields(env.event)
        incident_id = data.get("incident_id")
        return cls(
            id=env.id,
            type=env.type,
            incident_id=incident_id if isinstance(incident_id, str) and incident_id else None,
            at=_utc(env.occurred_at),
            data=data,
            source=env.source,
            position=env.position,
        )

    def text(self, *names: str, default: str = "") -> str:
        data = self.data
        for name in names:
            value = data.get(name)
            if value is None or value == "":
                continue
            if type(value) is str:  # most are: no enum's `value` to look for
                return value
            return str(getattr(value, "value", value))
        return default

    def time(self, *names: str) -> datetime | None:
        for name in names:
            value = self.data.get(name)
            if isinstance(value, datetime):
                return value
            if isinstance(value, str) and value:
                try:
                    return datetime.fromisoformat(value)
                except ValueError:
                    continue
        return None

    def number(self, *names: str) -> float | None:
        for name in names:
            value = self.data.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        return None


_NOT_DATA = ("type", "occurred_at")
_SCALARS = frozenset({str, int, float, bool, datetime, NoneType})
_ZERO = timedelta(0)


def _utc(at: datetime) -> datetime:
    """The same instant, and the same text, with the standard library's UTC where its offset is
    zero: parsed events carry pydantic's own time zone object, through which every comparison,
    subtraction and `isoformat` of the fold calls back into Python (several times slower)."""
    if at.tzinfo is not None and at.tzinfo is not UTC and at.utcoffset() == _ZERO:
        return at.replace(tzinfo=UTC)
    return at


def _plain(value: Any) -> Any:
    """A field's value as `model_dump(mode="python")` gives it: nested models as dicts."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, list | tuple) and any(isinstance(v, BaseModel) for v in value):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and any(isinstance(v, BaseModel) for v in value.values()):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _fields(event: BaseModel) -> dict[str, Any]:
    """The event's fields but `type` and `occurred_at`, as `model_dump(mode="python")` gives them
    (events are frozen: their values are shared, not copied), at half its cost."""
    data = dict(event.__dict__)
    for name in _NOT_DATA:
        data.pop(name, None)
    for name, value in data.items():
        if type(value) not in _SCALARS:
            data[name] = _plain(value)
    return data


@dataclass(slots=True)
class IncidentView:
    """One incident as operators see it. Treated as a value: the fold never changes one, it returns
    a new one (`replace`). Not `frozen`, because frozen dataclasses are built through
    `object.__setattr__`, which halves the speed of a rebuild."""

    id: str
    title: str = ""
    service: str = ""
    severity: str | None = None
    category: str | None = None
    description: str = ""
    status: str = "open"
    priority: str | None = None
    major: str | None = None
    team: str | None = None
    assignee: str | None = None
    opened_at: datetime | None = None
    detected_at: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    on_hold_since: datetime | None = None
    alert_count: int = 0
    notification_count: int = 0
    notifications_sent: int = 0
    notifications_failed: int = 0
    reopen_count: int = 0
    response_breached: bool = False
    resolution_breached: bool = False
    sla_warnings: int = 0
    next_update_due: datetime | None = None
    holds: tuple[tuple[str, str], ...] = ()
    roles: tuple[dict[str, Any], ...] = ()
    updates: tuple[dict[str, Any], ...] = ()
    feedback: tuple[dict[str, Any], ...] = ()
    actions: tuple[dict[str, Any], ...] = ()
    major_reason: str | None = None
    response_target: float | None = None
    resolution_target: float | None = None
    sla_calendar: str | None = None
    response_met: bool = False
    resolution_met: bool = False
    problem_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored document: field by field (`dataclasses.asdict` deep-copies every value, and
        cost a rebuild a tenth of a millisecond per incident). Keys in field order."""
        return {
            "id": self.id,
            "title": self.title,
            "service": self.service,
            "severity": self.severity,
            "category": self.category,
            "description": self.description,
            "status": self.status,
            "priority": self.priority,
            "major": self.major,
            "team": self.team,
            "assignee": self.assignee,
            "opened_at": _iso_or_none(self.opened_at),
            "detected_at": _iso_or_none(self.detected_at),
            "acknowledged_at": _iso_or_none(self.acknowledged_at),
            "resolved_at": _iso_or_none(self.resolved_at),
            "closed_at": _iso_or_none(self.closed_at),
            "on_hold_since": _iso_or_none(self.on_hold_since),
            "alert_count": self.alert_count,
            "notification_count": self.notification_count,
            "notifications_sent": self.notifications_sent,
            "notifications_failed": self.notifications_failed,
            "reopen_count": self.reopen_count,
            "response_breached": self.response_breached,
            "resolution_breached": self.resolution_breached,
            "sla_warnings": self.sla_warnings,
            "next_update_due": _iso_or_none(self.next_update_due),
            "holds": [list(h) for h in self.holds],
            "roles": [dict(r) for r in self.roles],
            "updates": [dict(u) for u in self.updates],
            "feedback": [dict(f) for f in self.feedback],
            "actions": [dict(a) for a in self.actions],
            "major_reason": self.major_reason,
            "response_target": self.response_target,
            "resolution_target": self.resolution_target,
            "sla_calendar": self.sla_calendar,
            "response_met": self.response_met,
            "resolution_met": self.resolution_met,
            "problem_id": self.problem_id,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> IncidentView:
        """The view a stored document holds; a field it lacks takes its default, a key that is no
        field is ignored. Field by field: metrics and reports read thousands per request."""
        get = doc.get
        return cls(
            id=doc["id"],
            title=get("title", ""),
            service=get("service", ""),
            severity=get("severity"),
            category=get("category"),
            description=get("description", ""),
            status=get("status", "open"),
            priority=get("priority"),
            major=get("major"),
            team=get("team"),
            assignee=get("assignee"),
            opened_at=_time_or_none(get("opened_at")),
            detected_at=_time_or_none(get("detected_at")),
            acknowledged_at=_time_or_none(get("acknowledged_at")),
            resolved_at=_time_or_none(get("resolved_at")),
            closed_at=_time_or_none(get("closed_at")),
            on_hold_since=_time_or_none(get("on_hold_since")),
            alert_count=get("alert_count", 0),
            notification_count=get("notification_count", 0),
            notifications_sent=get("notifications_sent", 0),
            notifications_failed=get("notifications_failed", 0),
            reopen_count=get("reopen_count", 0),
            response_breached=get("response_breached", False),
            resolution_breached=get("resolution_breached", False),
            sla_warnings=get("sla_warnings", 0),
            next_update_due=_time_or_none(get("next_update_due")),
            holds=tuple((str(a), str(b)) for a, b in get("holds", ())),
            roles=tuple(get("roles", ())),
            updates=tuple(get("updates", ())),
            feedback=tuple(get("feedback", ())),
            actions=tuple(get("actions", ())),
            major_reason=get("major_reason"),
            response_target=get("response_target"),
            resolution_target=get("resolution_target"),
            sla_calendar=get("sla_calendar"),
            response_met=get("response_met", False),
            resolution_met=get("resolution_met", False),
            problem_id=get("problem_id"),
        )


def _time_or_none(value: Any) -> Any:
    return datetime.fromisoformat(value) if value else value


def _iso_or_none(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


_VIEW_FIELDS = attrgetter(*(f.name for f in dataclasses.fields(IncidentView)))


def replace(view: IncidentView, /, **changes: Any) -> IncidentView:
    """A copy of `view` with `changes`, as `dataclasses.replace` makes it, at a third of the cost:
    that one looks up the 38 fields one by one in Python, and was half of the fold's time."""
    copy = IncidentView(*_VIEW_FIELDS(view))
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


@dataclass(slots=True)
class TimelineEntry:
    """One line of an incident's timeline. Treated as a value (not `frozen`, as `Fact`)."""

    incident_id: str
    event_id: str
    type: str
    at: datetime
    by: str
    summary: str
    source: str
    position: int = 0
    why: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "at": self.at.isoformat(),
            "by": self.by,
            "summary": self.summary,
            "why": self.why,
            "source": self.source,
        }


# Bookkeeping records that tell a reader nothing the timeline does not already say.
HIDDEN = frozenset(
    {
        "AlertObserved",
        "AlertGrouped",
        "ServiceActivityRecorded",
        "RecipientNotified",
        "IncidentContextUpdated",
    }
)
INPUTS = frozenset(event_types()) - HIDDEN
"""The event types analytics projects. The hidden ones change no view and add no timeline entry:
analytics passes over them, live (`Wiring.inputs`) and in a rebuild alike, with no tracking record."""


def _iso(at: datetime) -> str:
    return at.isoformat()


def project(view: IncidentView | None, fact: Fact) -> IncidentView | None:
    """The incident view after `fact`; None while the incident is unknown."""
    if fact.incident_id is None:
        return None
    if fact.type == "IncidentOpened":
        base = view if view is not None else IncidentView(id=fact.incident_id)
        return replace(
            base,
            title=fact.text("title"),
            service=fact.text("service"),
            severity=fact.text("severity") or None,
            category=fact.text("category", "incident_type", "kind")
            or _label(fact, "category", "type")
            or None,
            description=fact.text("description"),
            opened_at=fact.at,
            detected_at=fact.time("detected_at"),
        )
    if view is None:
        if fact.type in HIDDEN:
            return None
        # Each service's log is followed on its own, so triage's, comms' or analytics' first event
        # about an incident can arrive before intake's IncidentOpened: keep what it says.
        view = IncidentView(id=fact.incident_id)
    return _evolve(view, fact)


def _evolve(v: IncidentView, f: Fact) -> IncidentView:
    match f.type:
        # --- intake -----------------------------------------------------------------------
        case "AlertAttached" | "AlertRepeated":
            return replace(v, alert_count=v.alert_count + 1)
        case "IncidentAcknowledged":
            status = v.status if v.status in ("resolved", "closed") else "acknowledged"
            return replace(v, status=status, acknowledged_at=v.acknowledged_at or f.at)
        case "IncidentAssigned":
            return replace(v, assignee=f.text("assignee", "to", "responder") or v.assignee)
        case "IncidentResolved":
            return replace(_end_hold(v, f.at), status="resolved", resolved_at=f.at)
        case "IncidentClosed":
            v = _end_hold(v, f.at)
            return replace(v, status="closed", closed_at=f.at, resolved_at=v.resolved_at or f.at)
        case "IncidentReopened":
            return replace(
                v,
                status="acknowledged" if v.acknowledged_at else "open",
                resolved_at=None,
                closed_at=None,
                reopen_count=v.reopen_count + 1,
            )
        case "IncidentPutOnHold":
            return replace(v, status="on_hold", on_hold_since=v.on_hold_since or f.at)
        case "IncidentResumed":
            if v.on_hold_since is None:
                return v
            return replace(_end_hold(v, f.at), status="acknowledged" if v.acknowledged_at else "open")
        case "NoteAdded":
            action = _action_item(f)
            return replace(v, actions=(*v.actions, action)) if action else v
        # --- triage -----------------------------------------------------------------------
        case "PriorityAssigned" | "PriorityChanged":
            return replace(
                v,
                priority=f.text("priority", "to") or v.priority,
                title=v.title or f.text("title"),
                service=v.service or f.text("service"),
            )
        case "IncidentRouted":
            return replace(v, team=f.text("team") or v.team)
        case "SlaWarningRaised":
            return replace(v, sla_warnings=v.sla_warnings + 1)
        case "SlaTargetSet":
            target = f.number("target_seconds")
            calendar = f.text("calendar") or None
            if f.text("kind") == "response":
                return replace(v, response_target=target, sla_calendar=calendar)
            return replace(v, resolution_target=target, sla_calendar=calendar)
        case "SlaBreached":
            if f.text("kind") == "response":
                return replace(v, response_breached=True)
            return replace(v, resolution_breached=True)
        case "SlaMet":
            if f.text("kind") == "response":
                return replace(v, response_met=True)
            return replace(v, resolution_met=True)
        case "IncidentLinkedToProblem":
            return replace(v, problem_id=f.text("problem_id") or v.problem_id)
        case "MajorIncidentProposed":
            major = v.major if v.major == "accepted" else "proposed"
            return replace(v, major=major, major_reason=f.text("reason") or v.major_reason)
        case "MajorIncidentAccepted":
            return replace(
                v, major="accepted", major_reason=f.text("business_impact", "reason") or v.major_reason
            )
        case "MajorIncidentRejected":
            return replace(v, major="rejected")
        case "RoleAssigned":
            return replace(v, roles=_assume(v.roles, f))
        case "RoleRelinquished":
            return replace(
                v, roles=_renounce(v.roles, f.text("role"), f.text("who", "person", "assignee"), f.at)
            )
        case "HandoverCompleted":
            role = f.text("role")
            incoming = f.text("to_person", "to", "incoming")
            outgoing = f.text("from_person", "from", "outgoing")
            if not role or not incoming:
                return v
            roles = _renounce(v.roles, role, outgoing, f.at)
            roles = (*roles, {"role": role, "who": incoming, "from": _iso(f.at), "to": None})
            return replace(v, roles=roles)
        # --- comms ------------------------------------------------------------------------
        case "NotificationPlanned":
            return replace(v, notification_count=v.notification_count + 1)
        case "NotificationSent":
            return replace(v, notifications_sent=v.notifications_sent + 1)
        case "NotificationFailed":
            final = bool(f.data.get("final", True))
            return replace(v, notifications_failed=v.notifications_failed + (1 if final else 0))
        case "StatusUpdatePublished":
            due = f.time("due_at", "due")
            latency = f.number("latency_seconds", "latency")
            if latency is None and due is not None:
                latency = (f.at - due).total_seconds()
            update = {
                "at": _iso(f.at),
                "due_at": _iso(due) if due else None,
                "latency_seconds": latency,
                "audience": f.text("audience", "kind") or None,
            }
            nxt = f.time("next_due_at", "next_update_due", "next_due")
            return replace(v, updates=(*v.updates, update), next_update_due=nxt or v.next_update_due)
        case "UpdateCadenceStarted":
            return replace(v, next_update_due=f.time("next_due_at") or v.next_update_due)
        case "UpdateCadenceStopped":
            return replace(v, next_update_due=None)
        # --- analytics ----------------------------------------------------------------------
        case "FeedbackRecorded":
            score = f.number("score")
            if score is None:
                return v
            entry = {"at": _iso(f.at), "score": int(score), "by": f.text("by"), "comment": f.text("comment")}
            return replace(v, feedback=(*v.feedback, entry))
        case _:
            return v


def _end_hold(v: IncidentView, at: datetime) -> IncidentView:
    """Close a hold period (resumed, or resolved while on hold)."""
    if v.on_hold_since is None:
        return v
    return replace(v, on_hold_since=None, holds=(*v.holds, (_iso(v.on_hold_since), _iso(at))))


def _label(f: Fact, *names: str) -> str:
    labels = f.data.get("labels")
    if isinstance(labels, Mapping):
        for name in names:
            if labels.get(name):
                return str(labels[name])
    return ""


def _assume(roles: tuple[dict[str, Any], ...], f: Fact) -> tuple[dict[str, Any], ...]:
    role, who = f.text("role"), f.text("who", "person", "assignee", "user")
    if not role or not who:
        return roles
    # A role has one holder at a time: a new assignment ends the previous holder's tenure.
    roles = _renounce(roles, role, "", f.at)
    return (*roles, {"role": role, "who": who, "from": _iso(f.at), "to": None})


def _renounce(
    roles: tuple[dict[str, Any], ...], role: str, who: str, at: datetime
) -> tuple[dict[str, Any], ...]:
    out = []
    for r in roles:
        if r["role"] == role and r["to"] is None and (not who or r["who"] == who):
            r = {**r, "to": _iso(at)}
        out.append(r)
    return tuple(out)


def _action_item(f: Fact) -> dict[str, Any] | None:
    """A note marked as an action item (`kind: action`, or text starting with "Action:")."""
    text = f.text("text", "note", "body")
    kind = f.text("kind", "category").lower()
    if kind not in ("action", "action_item") and not text.lower().startswith(("action:", "todo:")):
        return None
    body = text.split(":", 1)[1].strip() if ":" in text[:8] else text
    owner = f.text("owner", "assignee") or next((w[1:] for w in body.split() if w.startswith("@")), "")
    return {"text": body, "owner": owner or None, "due": f.text("due", "due_at") or None, "at": _iso(f.at)}


# --- the timeline -------------------------------------------------------------------------------


def summarise(f: Fact) -> tuple[str, str, str | None] | None:
    """Who did it, a sentence for a person reading the timeline, and why (when the event says);
    None for events not shown."""
    why = f.text("reason", "why") or None
    by = f.text("by", "actor", "reporter")
    match f.type:
        case "IncidentOpened":
            detected = f.time("detected_at")
            extra = f"; the sender saw it start at {detected.isoformat()}" if detected else ""
            return (
                f.text("reporter", "source", default="intake"),
                f"Incident opened: {f.text('title')} on {f.text('service')} ({f.text('severity')}){extra}",
                None,
            )
        case "AlertAttached":
            return (
                f.text("source", default="intake"),
                f"Alert {f.text('dedup_key', 'alert_key')!r} attached",
                why,
            )
        case "AlertRepeated":
            return "intake", f"Alert {f.text('alert_key')!r} repeated ({f.text('count')} times in all)", None
        case "AlertResolved":
            return "intake", f"Alert {f.text('alert_key')!r} resolved by its sender", None
        case t if t in HIDDEN:
            return None
        case "IncidentAcknowledged":
            return by or "someone", "Incident acknowledged", None
        case "IncidentAssigned":
            return by or "intake", f"Assigned to {f.text('assignee', 'to', 'responder')}", why
        case "IncidentResolved":
            return by or "intake", "Incident resolved", why
        case "IncidentClosed":
            return by or "intake", "Incident closed", why or f.text("code", "resolution") or None
        case "IncidentReopened":
            return by or "intake", "Incident reopened", why
        case "IncidentPutOnHold":
            return by or "intake", "Incident put on hold", why
        case "IncidentResumed":
            return by or "intake", "Incident resumed", why
        case "NoteAdded":
            return by or "someone", f"Note: {f.text('text', 'note', 'body')}", None
        case "PriorityAssigned":
            return by or "triage", f"Priority {f.text('priority')}", why
        case "PriorityChanged":
            old = f.text("previous", "from_priority", "old_priority")
            return (
                by or "triage",
                f"Priority changed{' from ' + old if old else ''} to {f.text('priority', 'to')}",
                why,
            )
        case "IncidentRouted":
            return by or "triage", f"Routed to team {f.text('team')}", why or f.text("rule") or None
        case "SlaWarningRaised":
            return (
                "triage",
                f"{f.text('kind').capitalize() or 'SLA'} SLA nearly due at {f.text('due_at')}",
                None,
            )
        case "SlaBreached":
            return (
                "triage",
                f"{f.text('kind').capitalize() or 'SLA'} SLA breached (due {f.text('due_at')})",
                None,
            )
        case "MajorIncidentProposed":
            return by or "triage", "Proposed as a major incident", why
        case "MajorIncidentAccepted":
            return by or "triage", "Accepted as a major incident", f.text("business_impact", "reason") or None
        case "MajorIncidentRejected":
            return by or "triage", "Major incident proposal rejected", why
        case "RoleAssigned":
            return by or "triage", f"{f.text('who', 'person', 'assignee')} is {f.text('role')}", why
        case "RoleRelinquished":
            return by or "triage", f"{f.text('who', 'person', 'assignee')} is no longer {f.text('role')}", why
        case "HandoverCompleted":
            briefing = f.data.get("briefing")
            state = briefing.get("current_state") if isinstance(briefing, Mapping) else None
            return (
                by or "triage",
                f"Handover of {f.text('role')} from {f.text('from_person', 'from')} to "
                f"{f.text('to_person', 'to')}",
                f"briefing: {state}" if state else why,
            )
        case "SlaTargetSet":
            kind = f.text("kind")
            clock = f"business hours ({f.text('calendar')})" if f.text("calendar") else "24x7"
            return (
                "triage",
                f"{kind.capitalize()} SLA target {_span(f.number('target_seconds'))}, {clock}, "
                f"due {f.text('due_at')}",
                None,
            )
        case "SlaMet":
            return by or "triage", f"{f.text('kind').capitalize()} SLA met", None
        case "UpdateCadenceStarted":
            return (
                "comms",
                f"Status updates due every {_span(f.number('every_seconds'))}, "
                f"next at {f.text('next_due_at')}",
                why,
            )
        case "StatusUpdateOverdue":
            return (
                "comms",
                f"Status update due at {f.text('due_at')} is overdue: {f.text('level')} to {f.text('role')}",
                None,
            )
        case "EscalationStarted":
            return (
                "triage",
                f"Escalation {f.text('policy_id')} started for team {f.text('team')}"
                f" ({f.text('urgency')} urgency)",
                None,
            )
        case "EscalationStepReached":
            reached = ", ".join(str(p) for p in f.data.get("paged") or []) or "nobody"
            gaps = "; ".join(str(u) for u in f.data.get("unreached") or [])
            verb = "paged" if f.text("mode") == "page" else "notified"
            return (
                "triage",
                f"Escalation step {f.text('step')} (round {f.text('round')}): {verb} {reached}",
                gaps or None,
            )
        case "PageRequested":
            kinds = sorted(
                {str(c.get("kind")) for c in f.data.get("contacts") or [] if isinstance(c, Mapping)}
            )
            return "triage", f"Page to {f.text('name', 'person')} via {', '.join(kinds) or 'nothing'}", None
        case "EscalationStopped":
            return by or "triage", f"Escalation stopped: {f.text('reason')}", None
        case "IncidentLinkedToProblem":
            return by or "triage", f"Linked to problem {f.text('problem_id')}", None
        case "AlertChangeRecorded":
            return (
                f.text("source", default="intake"),
                f"Change on {f.text('service')}: {f.text('summary')}",
                None,
            )
        case "PostIncidentReviewRecorded":
            return by or "triage", f"Post-incident review recorded: {f.text('summary')}", None
        case "NotificationPlanned":
            return (
                "comms",
                f"Notification planned to {f.text('recipient')} via {f.text('channel')}: {f.text('subject')}",
                f"because of {f.text('cause_type')}" if f.text("cause_type") else None,
            )
        case "NotificationSent":
            return "comms", f"Notification delivered to {f.text('recipient')} via {f.text('channel')}", None
        case "NotificationFailed":
            final = "gave up" if f.data.get("final") else "will retry"
            return (
                "comms",
                f"Notification to {f.text('recipient')} failed (attempt {f.text('attempt')}, {final})",
                f.text("error") or None,
            )
        case "StatusUpdatePublished":
            latency = f.number("latency_seconds")
            late = f" ({_span(latency)} after it was due)" if latency is not None and latency > 0 else ""
            return (
                by or "comms",
                f"Status update to {f.text('audience', default='stakeholders')}: {f.text('subject')}{late}",
                None,
            )
        case "FeedbackRecorded":
            return by or "customer", f"Customer satisfaction {f.text('score')}/5", f.text("comment") or None
        case "EventDeadLettered":
            return (
                f.text("consumer", default="lynchpin"),
                f"{f.text('event_type')} {f.text('event_id')} set aside",
                why,
            )
        case _:
            return _generic(f)


def _span(seconds: float | None) -> str:
    """Seconds for a person: 45s, 30m, 4h, 1h 30m, 2d."""
    if seconds is None:
        return "?"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return " ".join(parts) or f"{secs}s"


def _generic(f: Fact) -> tuple[str, str, str | None]:
    """Any other event: its name in words and its own fields, so nothing is left off the timeline."""
    skip = {"incident_id", "reason", "by", "actor"}
    fields = {k: v for k, v in f.data.items() if k not in skip and v not in (None, "", [], {})}
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in f.type).strip().capitalize()
    detail = ", ".join(
        f"{k.replace('_', ' ')}: {getattr(v, 'value', v)}" for k, v in list(fields.items())[:6]
    )
    by = f.text("by", "actor") or f.source or "lynchpin"
    return by, words + (f" ({detail})" if detail else ""), f.text("reason") or None


def timeline_entry(f: Fact) -> TimelineEntry | None:
    said = summarise(f)
    if f.incident_id is None or said is None:
        return None
    by, summary, why = said
    return TimelineEntry(
        incident_id=f.incident_id,
        event_id=f.id,
        type=f.type,
        at=f.at,
        by=by,
        summary=summary,
        source=f.source,
        position=f.position,
        why=why,
    )

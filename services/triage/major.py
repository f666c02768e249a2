"""Major incidents, pure: the automatic rules (P1 on a business-critical service; a storm on one
service) and the propose / accept / reject / review decisions (seed 003; ServiceNow's rules)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from services.triage.activity import ServiceActivity, instant
from services.triage.state import Triage
from shared.errors import Conflict, DomainError, NotFound
from shared.events import (
    Event,
    MajorIncidentAccepted,
    MajorIncidentProposed,
    MajorIncidentRejected,
    PostIncidentReviewRecorded,
    ServiceActivityRecorded,
)
from shared.policy.triage import Criticality, TriagePolicy


class NotProposed(Conflict):
    title = "Not proposed as major"


def criticality(service: str, policy: TriagePolicy) -> Criticality | None:
    entry = policy.services.get(service)
    return entry.criticality if entry is not None else None


def auto_reason(state: Triage, policy: TriagePolicy) -> str | None:
    """Why the policy makes this incident a major-incident candidate (None: it does not)."""
    rules = policy.major
    level = criticality(state.service, policy)
    if state.priority in rules.auto_propose_priorities and level in rules.auto_propose_criticalities:
        assert level is not None and state.priority is not None
        return f"{state.priority.value} on {level.value.replace('_', '-')} service {state.service}"
    return None


def can_be_proposed(state: Triage) -> bool:
    return state.exists and state.major.status in (None, "rejected") and not state.resolved


def auto_propose(state: Triage, now: datetime, policy: TriagePolicy) -> list[Event]:
    reason = auto_reason(state, policy)
    if reason is None or not can_be_proposed(state) or state.major.status == "rejected":
        return []
    return [_proposed(state, reason=reason, by="triage", automatic=True, rule="priority", now=now)]


def _proposed(
    state: Triage, *, reason: str, by: str, automatic: bool, rule: str, now: datetime
) -> MajorIncidentProposed:
    return MajorIncidentProposed(
        incident_id=state.incident_id,
        reason=reason,
        by=by,
        automatic=automatic,
        rule=rule,
        title=state.title,
        service=state.service,
        occurred_at=now,
    )


def propose(state: Triage, *, reason: str, by: str, now: datetime) -> list[Event]:
    """Any responder may propose; once proposed or accepted, it stays so until decided."""
    _must_exist(state)
    if state.major.status in ("proposed", "accepted"):
        raise Conflict(f"incident {state.incident_id} is already {state.major.status} as major")
    if state.resolved:
        raise Conflict(f"incident {state.incident_id} is resolved")
    return [_proposed(state, reason=reason, by=by, automatic=False, rule="manual", now=now)]


def accept(
    state: Triage, *, by: str, business_impact: str, notes: str, now: datetime, policy: TriagePolicy
) -> list[Event]:
    _must_exist(state)
    if state.major.status != "proposed":
        raise NotProposed(f"incident {state.incident_id} is {state.major.status or 'not proposed'}")
    return [
        MajorIncidentAccepted(
            incident_id=state.incident_id,
            by=by,
            business_impact=business_impact,
            notes=notes,
            required_roles=[r.value for r in policy.roles.required],
            review_required=policy.major.review_required,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def reject(state: Triage, *, by: str, reason: str, now: datetime) -> list[Event]:
    _must_exist(state)
    if state.major.status != "proposed":
        raise NotProposed(f"incident {state.incident_id} is {state.major.status or 'not proposed'}")
    return [
        MajorIncidentRejected(
            incident_id=state.incident_id,
            by=by,
            reason=reason,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def record_review(
    state: Triage, *, by: str, summary: str, problem_id: str | None, now: datetime
) -> list[Event]:
    _must_exist(state)
    if state.major.status != "accepted":
        raise DomainError(f"incident {state.incident_id} is not an accepted major incident")
    return [
        PostIncidentReviewRecorded(
            incident_id=state.incident_id,
            by=by,
            summary=summary,
            problem_id=problem_id,
            title=state.title,
            service=state.service,
            occurred_at=now,
        )
    ]


def review_status(state: Triage) -> str:
    """not_required | pending | done: a major incident's post-incident review, needed before close."""
    if state.major.status != "accepted" or not state.major.review_required:
        return "not_required"
    return "done" if state.major.reviewed_at is not None else "pending"


def _must_exist(state: Triage) -> None:
    if not state.exists:
        raise NotFound("no such incident in triage (yet)")


# --- the storm rule -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Storm:
    activity: Literal["incident", "alert"]
    count: int
    window_minutes: float

    def reason(self, service: str) -> str:
        what = "incidents" if self.activity == "incident" else "alerts"
        return f"storm: {self.count} {what} on service {service} within {self.window_minutes:g} minutes"


def _counts(activity: ServiceActivity, now: datetime, policy: TriagePolicy) -> tuple[int, int]:
    start, end = instant(now - timedelta(minutes=policy.major.storm.window_minutes)), instant(now)
    return activity.incidents.count_between(start, end), activity.alert_times.count_between(start, end)


def _storm(incidents: int, alerts: int, policy: TriagePolicy) -> Storm | None:
    rule = policy.major.storm
    if incidents >= rule.incidents:
        return Storm("incident", incidents, rule.window_minutes)
    if alerts >= rule.alerts:
        return Storm("alert", alerts, rule.window_minutes)
    return None


def storm(activity: ServiceActivity, now: datetime, policy: TriagePolicy) -> Storm | None:
    """A new storm on a service, given its activity including the newest signal (at `now`).

    A storm is `incidents` incidents or `alerts` alerts within the window. It is reported once:
    a later storm needs the service to have been below both thresholds in between (`calm`)."""
    found = _storm(*_counts(activity, now, policy), policy)
    return found if activity.storm_at is None or activity.calm else None


def notice(
    activity: ServiceActivity,
    *,
    service: str,
    kind: Literal["incident", "alert"],
    incident_id: str,
    fingerprint: str,
    at: datetime,
    policy: TriagePolicy,
) -> tuple[ServiceActivityRecorded, Storm | None]:
    """Count one incident or alert on a service: the event to record and the storm it starts, if
    any, decided from the activity before it (the window's counts plus this signal), without
    making the activity after it: folding the recorded event does that, once."""
    at = activity.at_or_after_last(at)
    seen = ServiceActivityRecorded(
        service=service, activity=kind, incident_id=incident_id, fingerprint=fingerprint, occurred_at=at
    )
    incidents, alerts = _counts(activity, at, policy)
    incidents += kind == "incident"
    alerts += kind == "alert"
    rule = policy.major.storm
    calm = activity.calm
    if activity.storm_at is not None and not calm and incidents < rule.incidents and alerts < rule.alerts:
        seen = seen.model_copy(update={"calm": True})
        calm = True
    found = _storm(incidents, alerts, policy)
    return seen, found if activity.storm_at is None or calm else None


def storm_proposal(state: Triage, found: Storm, now: datetime, policy: TriagePolicy) -> list[Event]:
    """The proposal a storm makes, on the incident that tipped it (none if it is already major)."""
    allowed = policy.major.storm_criticalities
    if allowed and criticality(state.service, policy) not in allowed:
        return []
    if not can_be_proposed(state) or state.major.status == "rejected":
        return []
    return [
        _proposed(
            state, reason=found.reason(state.service), by="triage", automatic=True, rule="storm", now=now
        )
    ]

"""A realistic event log, written fast: whole incident lifecycles in every service's log.

Each incident is what the services record for it in the embedded mode: intake's alert, opening,
repeats, acknowledgement, notes, resolution and closing; triage's priority, routing, SLA clocks and
escalation; comms' notifications and, for P1 and P2, the status-update cadence; sometimes a
customer's feedback in analytics' own log. Durations follow each priority's usual pace (log-normal
around a median), incidents are spread evenly over `span` ending at `now`, and nothing is recorded
after `now`: the latest incidents are still open, as in a live system. About 20 events per incident.

The events go through the store's own `commit` (the SQLite store, one file per service, as
`LYNCHPIN_DATA_DIR` lays them out), a thousand incidents per transaction, so the log is the one the
services would have written, only without waiting for them.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from services.analytics import feedback
from services.analytics.rebuild import events_url
from shared.events import (
    AlertAttached,
    AlertObserved,
    AlertRepeated,
    AlertResolved,
    EscalationStarted,
    EscalationStepReached,
    EscalationStopped,
    Event,
    FeedbackRecorded,
    IncidentAcknowledged,
    IncidentAssigned,
    IncidentClosed,
    IncidentContextUpdated,
    IncidentOpened,
    IncidentPutOnHold,
    IncidentReopened,
    IncidentResolved,
    IncidentResumed,
    IncidentRouted,
    MajorIncidentAccepted,
    MajorIncidentProposed,
    NoteAdded,
    NotificationFailed,
    NotificationPlanned,
    NotificationSent,
    PriorityAssigned,
    RoleAssigned,
    ServiceActivityRecorded,
    SlaBreached,
    SlaMet,
    SlaTargetSet,
    StatusUpdatePublished,
    UpdateCadenceStarted,
    UpdateCadenceStopped,
)
from shared.events.base import AlertStatus, Level, Severity
from shared.settings import Settings
from shared.store import EventStore, Write, open_store

SOURCES: Final = ("intake", "triage", "comms", "analytics")
SERVICES: Final = tuple(
    f"{name}-{region}"
    for name in ("payments", "checkout", "search", "auth", "catalogue", "db", "queue", "cdn", "api", "mail")
    for region in ("eu", "us", "ap", "sa")
)
SERVICE_WEIGHTS: Final = tuple(itertools.accumulate(1 / k for k in range(1, len(SERVICES) + 1)))
"""Zipf: a few services have most of the incidents (the busiest about a quarter), many have few."""
TEAMS: Final = ("platform", "payments", "storefront", "identity", "data", "network", "sre", "mobile")
PEOPLE: Final = ("ann", "bob", "carol", "dev", "erin", "farid", "gita", "hugo", "ines", "jon")
PRIORITIES: Final = ("P1", "P2", "P3", "P4", "P5")
PRIORITY_WEIGHTS: Final = (2, 8, 25, 40, 25)
SEVERITY: Final = {
    "P1": (Severity.CRITICAL,),
    "P2": (Severity.CRITICAL, Severity.HIGH),
    "P3": (Severity.HIGH, Severity.WARNING),
    "P4": (Severity.WARNING,),
    "P5": (Severity.INFO, Severity.LOW),
}
ACK_MEDIAN_MINUTES: Final = {"P1": 3, "P2": 6, "P3": 20, "P4": 60, "P5": 180}
RESOLVE_MEDIAN_MINUTES: Final = {"P1": 60, "P2": 120, "P3": 480, "P4": 1440, "P5": 4320}
RESPONSE_TARGET: Final = {"P1": 900, "P2": 1800, "P3": 14400, "P4": 28800, "P5": 86400}
RESOLUTION_TARGET: Final = {"P1": 14400, "P2": 28800, "P3": 86400, "P4": 259200, "P5": 604800}

Recorded = dict[str, list[tuple[str, Event]]]
"""Per source, (stream, event) in the order that service would have appended them."""


def minutes(rnd: random.Random, median: float, spread: float = 0.9) -> float:
    """A log-normal duration: most near the median, a long tail of slow ones."""
    return median * rnd.lognormvariate(0, spread)


def incident(n: int, rnd: random.Random, opened: datetime, now: datetime) -> Recorded:
    """Everything the services record about one incident opened at `opened`, up to `now`."""
    iid = f"{rnd.getrandbits(64):016x}"
    priority = rnd.choices(PRIORITIES, PRIORITY_WEIGHTS)[0]
    severity = rnd.choice(SEVERITY[priority])
    service = rnd.choices(SERVICES, cum_weights=SERVICE_WEIGHTS)[0]
    team = TEAMS[SERVICES.index(service) // 4 % len(TEAMS)]
    title = (
        f"{rnd.choice(('High error rate', 'Latency', 'Disk full', 'Pod restarts', 'Timeouts'))} on {service}"
    )
    key = f"alertmanager:{iid}"
    raw = {  # what intake keeps of an Alertmanager alert
        "status": "firing",
        "labels": {"alertname": title.split(" on ")[0].replace(" ", ""), "service": service, "team": team},
        "annotations": {"summary": title, "runbook_url": f"https://runbooks.example.org/{service}"},
        "startsAt": opened.isoformat(),
        "generatorURL": f"https://prometheus.example.org/graph?service={service}",
        "fingerprint": iid,
    }

    def at(after_minutes: float) -> datetime:
        return opened + timedelta(minutes=after_minutes)

    acked = minutes(rnd, ACK_MEDIAN_MINUTES[priority])
    resolved = max(acked + 1, minutes(rnd, RESOLVE_MEDIAN_MINUTES[priority], 1.0))
    forgotten = rnd.random() < 0.003  # never resolved: the odd incident everyone forgot
    observed = AlertObserved(incident_id=iid, alert_key=key, status=AlertStatus.FIRING, occurred_at=opened)
    intake: list[Event] = [
        IncidentOpened(
            incident_id=iid,
            title=title,
            description=f"Alertmanager: {title.lower()} (incident {n})",
            service=service,
            severity=severity,
            source="alertmanager",
            reporter="alertmanager",
            detected_at=at(-rnd.uniform(0, 10)) if rnd.random() < 0.7 else None,
            labels={"region": service.rsplit("-", 1)[1], "team": team},
            occurred_at=opened,
        ),
        AlertAttached(
            incident_id=iid,
            alert_key=key,
            dedup_key=iid,
            title=title,
            severity=severity,
            source="alertmanager",
            reason="alert key had no open incident; opened a new incident",
            raw=raw,
            occurred_at=opened,
        ),
    ]
    repeats = 0
    while rnd.random() < 0.55 and repeats < 8:
        repeats += 1
        intake.append(
            AlertRepeated(
                incident_id=iid, alert_key=key, count=repeats + 1, raw=raw, occurred_at=at(repeats * 5)
            )
        )
    who = rnd.choice(PEOPLE)
    intake.append(IncidentAcknowledged(incident_id=iid, by=who, occurred_at=at(acked)))
    if rnd.random() < 0.4:
        intake.append(
            IncidentAssigned(incident_id=iid, assignee=rnd.choice(PEOPLE), by=who, occurred_at=at(acked + 1))
        )
    if rnd.random() < 0.25:
        text = (
            f"Action: add an alert on {service} saturation @{rnd.choice(PEOPLE)}"
            if rnd.random() < 0.4
            else "Rolled back the last deploy; watching."
        )
        intake.append(NoteAdded(incident_id=iid, text=text, by=who, occurred_at=at(acked + 2)))
    if rnd.random() < 0.03:
        intake.append(
            IncidentPutOnHold(incident_id=iid, by=who, reason="waiting on vendor", occurred_at=at(acked + 3))
        )
        intake.append(IncidentResumed(incident_id=iid, by=who, occurred_at=at(acked + 3 + resolved / 4)))
        resolved += resolved / 4
    if not forgotten:
        intake.append(AlertResolved(incident_id=iid, alert_key=key, occurred_at=at(resolved - 0.5)))
        intake.append(IncidentResolved(incident_id=iid, by=who, reason="fixed", occurred_at=at(resolved)))
        if rnd.random() < 0.02:
            intake.append(
                IncidentReopened(incident_id=iid, by=who, reason="came back", occurred_at=at(resolved + 30))
            )
            resolved += 60 + minutes(rnd, 60)
            intake.append(
                IncidentResolved(incident_id=iid, by=who, reason="fixed again", occurred_at=at(resolved))
            )
        if rnd.random() < 0.6:
            intake.append(IncidentClosed(incident_id=iid, by=who, occurred_at=at(resolved + 1440)))

    triage: list[Event] = [
        ServiceActivityRecorded(service=service, activity="incident", incident_id=iid, occurred_at=opened),
        PriorityAssigned(
            incident_id=iid,
            priority=priority,
            impact=Level.HIGH if priority in ("P1", "P2") else Level.MEDIUM,
            urgency=Level.HIGH if priority == "P1" else Level.LOW,
            reason=f"severity {severity.value} on {service}",
            by="triage",
            title=title,
            service=service,
            occurred_at=at(0.01),
        ),
        IncidentRouted(
            incident_id=iid, team=team, rule=f"service:{service}", title=title, occurred_at=at(0.01)
        ),
    ]
    for kind, targets, done in (
        ("response", RESPONSE_TARGET, acked),
        ("resolution", RESOLUTION_TARGET, None if forgotten else resolved),
    ):
        target = targets[priority]
        triage.append(
            SlaTargetSet(
                incident_id=iid,
                kind=kind,
                priority=priority,
                target_seconds=target,
                started_at=opened,
                due_at=at(target / 60),
                occurred_at=at(0.01),
            )
        )
        due = at(target / 60)
        if done is not None and done * 60 <= target:
            triage.append(
                SlaMet(incident_id=iid, kind=kind, due_at=due, priority=priority, occurred_at=at(done))
            )
        else:
            triage.append(
                SlaBreached(incident_id=iid, kind=kind, due_at=due, priority=priority, occurred_at=due)
            )
    if priority in ("P1", "P2", "P3"):
        policy = f"escalate-{team}"
        urgency = "high" if priority != "P3" else "low"
        triage += [
            EscalationStarted(
                incident_id=iid,
                policy_id=policy,
                team=team,
                priority=priority,
                urgency=urgency,
                steps=2,
                first_due_at=at(0.02),
                occurred_at=at(0.02),
            ),
            EscalationStepReached(
                incident_id=iid,
                policy_id=policy,
                step=1,
                due_at=at(0.02),
                mode="page",
                paged=[who],
                occurred_at=at(0.02),
            ),
            EscalationStopped(
                incident_id=iid,
                policy_id=policy,
                reason="acknowledged",
                by=who,
                step=1,
                occurred_at=at(acked),
            ),
        ]
    if priority == "P1" and rnd.random() < 0.3:
        triage.append(
            MajorIncidentProposed(
                incident_id=iid,
                reason="P1 on a customer-facing service",
                by="triage",
                automatic=True,
                occurred_at=at(0.05),
            )
        )
        if rnd.random() < 0.7:
            triage += [
                MajorIncidentAccepted(
                    incident_id=iid,
                    by=who,
                    business_impact="checkout unavailable",
                    notes="",
                    occurred_at=at(acked + 2),
                ),
                RoleAssigned(
                    incident_id=iid, role="incident_commander", person=who, by=who, occurred_at=at(acked + 2)
                ),
                RoleAssigned(
                    incident_id=iid,
                    role="communications_lead",
                    person=rnd.choice(PEOPLE),
                    by=who,
                    occurred_at=at(acked + 3),
                ),
            ]

    comms: list[Event] = [
        IncidentContextUpdated(
            incident_id=iid, title=title, service=service, priority=priority, team=team, occurred_at=at(0.01)
        )
    ]
    for k in range(rnd.randint(1, 3) if priority in ("P1", "P2", "P3") else 1):
        nid = f"{iid}-n{k}"
        recipient = f"{rnd.choice(PEOPLE)}@example.org"
        comms.append(
            NotificationPlanned(
                incident_id=iid,
                notification_id=nid,
                cause_event_id=iid,
                cause_type="PriorityAssigned",
                recipient=recipient,
                channel="email",
                audience="responders",
                subject=f"[{priority}] {title}",
                body=f"{title}: {priority}, team {team}",
                occurred_at=at(0.02),
            )
        )
        if rnd.random() < 0.97:
            comms.append(
                NotificationSent(
                    incident_id=iid,
                    notification_id=nid,
                    channel="email",
                    recipient=recipient,
                    attempt=1,
                    occurred_at=at(0.03),
                )
            )
        else:
            comms.append(
                NotificationFailed(
                    incident_id=iid,
                    notification_id=nid,
                    channel="email",
                    recipient=recipient,
                    attempt=3,
                    error="550 mailbox unavailable",
                    final=True,
                    occurred_at=at(5),
                )
            )
    if priority in ("P1", "P2"):
        every = 30 if priority == "P1" else 60
        comms.append(
            UpdateCadenceStarted(
                incident_id=iid,
                every_seconds=every * 60,
                next_due_at=at(every),
                reason=f"{priority} cadence",
                occurred_at=at(0.02),
            )
        )
        k = 1
        while k * every < resolved and k <= 4:
            late = rnd.uniform(-120, 600)
            comms.append(
                StatusUpdatePublished(
                    incident_id=iid,
                    update_id=f"{iid}-u{k}",
                    audience="stakeholders",
                    template="update",
                    subject=f"Update on {title}",
                    text="Mitigation in progress.",
                    by=who,
                    due_at=at(k * every),
                    latency_seconds=late,
                    next_due_at=at((k + 1) * every),
                    occurred_at=at(k * every + late / 60),
                )
            )
            k += 1
        if not forgotten:
            comms.append(UpdateCadenceStopped(incident_id=iid, reason="resolved", occurred_at=at(resolved)))

    out: Recorded = {
        "intake": [(f"alert-{key}", observed), *((f"incident-{iid}", e) for e in intake)],
        "triage": [(f"triage-{iid}", e) for e in triage],
        "comms": [(f"comms-{iid}", e) for e in comms],
        "analytics": [],
    }
    if not forgotten and rnd.random() < 0.15:
        out["analytics"].append(
            (
                feedback.stream_for(iid),
                FeedbackRecorded(
                    incident_id=iid,
                    feedback_id=f"{iid}-f",
                    score=rnd.choices((1, 2, 3, 4, 5), (5, 5, 15, 35, 40))[0],
                    by="customer",
                    occurred_at=at(resolved + 120),
                ),
            )
        )
    for source, items in out.items():
        items.sort(key=lambda item: item[1].occurred_at)
        out[source] = [(s, e) for s, e in items if e.occurred_at <= now]
    return out


def mean_per_incident(now: datetime, samples: int = 2000) -> float:
    rnd = random.Random(-1)
    old = now - timedelta(days=365)
    return sum(sum(map(len, incident(n, rnd, old, now).values())) for n in range(samples)) / samples


def incidents(events: int, *, now: datetime, span: timedelta, seed: int) -> Iterator[Recorded]:
    """Incidents spread over [now - span, now) until they hold at least `events` events, or the
    span is full (the latest incidents have only their events up to `now`: a few short at most)."""
    rnd = random.Random(seed)
    planned = max(1, round(events / mean_per_incident(now)))
    gap = span / planned
    start = now - span
    total = n = 0
    while total < events and (opened := start + gap * n + gap * rnd.random()) < now:
        got = incident(n, rnd, opened, now)
        total += sum(map(len, got.values()))
        n += 1
        yield got


def embedded(data_dir: Path) -> Settings:
    """The embedded layout under `data_dir` (one SQLite file per service), whatever LYNCHPIN_* says."""
    return Settings(
        data_dir=data_dir,
        **{f"{s}_store_url": None for s in ("intake", "triage", "comms", "analytics")},
        store_url=None,
        kafka_bootstrap=None,
    )


def write_log(
    data_dir: Path,
    events: int,
    *,
    now: datetime,
    span: timedelta = timedelta(weeks=12),
    seed: int = 1,
    parallel: bool = True,
) -> dict[str, int]:
    """Write the services' logs into `data_dir`; returns the events written per source.

    One process per store (analytics' small log rides with intake's): SQLite has one writer per file,
    and a store's writer thread shares the GIL with everything else in its process. Each process
    draws the same incidents from the same seed and keeps its own sources' events."""
    groups = (("intake", "analytics"), ("triage",), ("comms",))
    if not parallel:
        return asyncio.run(_write(data_dir, events, now, span, seed, SOURCES))
    counts: dict[str, int] = {}
    with ProcessPoolExecutor(len(groups)) as pool:
        for done in pool.map(_run, [(data_dir, events, now, span, seed, g) for g in groups]):
            counts.update(done)
    return {s: counts[s] for s in SOURCES}


def _run(args: tuple[Path, int, datetime, timedelta, int, tuple[str, ...]]) -> dict[str, int]:
    return asyncio.run(_write(*args))


async def _write(
    data_dir: Path,
    events: int,
    now: datetime,
    span: timedelta,
    seed: int,
    sources: tuple[str, ...],
    batch: int = 1000,
) -> dict[str, int]:
    settings = embedded(data_dir)
    counts = dict.fromkeys(sources, 0)
    async with AsyncExitStack() as stack:
        stores: dict[str, EventStore] = {}
        for source in sources:
            url = events_url(settings) if source == "analytics" else settings.store_url_for(source)
            stores[source] = await stack.enter_async_context(open_store(url, source=source))
        pending: Recorded = {s: [] for s in sources}

        async def flush() -> None:
            await asyncio.gather(*(commit(stores[s], pending[s]) for s in sources))
            for s in sources:
                counts[s] += len(pending[s])
                pending[s] = []

        for n, recorded in enumerate(incidents(events, now=now, span=span, seed=seed), start=1):
            for source in sources:
                pending[source] += recorded[source]
            if n % batch == 0:
                await flush()
        await flush()
    return counts


async def commit(store: EventStore, items: list[tuple[str, Event]]) -> None:
    """One transaction: one write per stream (new streams, so expected version 0)."""
    streams: dict[str, list[Event]] = {}
    for stream, event in items:
        streams.setdefault(stream, []).append(event)
    if streams:
        await store.commit([Write(stream, evs, 0) for stream, evs in streams.items()])

"""What the fault tests check afterwards, computed independently from the services' own logs.

Everything here reads the stores directly (each service's `read_all`, and the tracking tables where a
consumer records what it handled): the figures do not depend on the services' own accounts of themselves.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.analytics.projections import INPUTS as ANALYTICS_INPUTS
from services.analytics.readstore import ReadStore
from services.analytics.rebuild import read_store_path, rebuild
from services.comms.domain import inputs as comms_inputs
from services.triage.handlers import INPUTS as TRIAGE_INPUTS
from shared.bus.base import tracking_name
from shared.envelope import Checkpoint, Envelope
from shared.events import (
    AlertAttached,
    AlertRepeated,
    IncidentClosed,
    IncidentOpened,
    IncidentReopened,
    IncidentResolved,
    NotificationCoalesced,
    NotificationFailed,
    NotificationPlanned,
    NotificationSent,
    PriorityAssigned,
)
from shared.policy import load_policy
from shared.service import taken
from shared.settings import Settings
from shared.store import START, open_store, sqlite_path
from tests.faults.cluster import ADMIN
from tests.faults.stream import Answer

PRODUCERS = ("intake", "triage", "comms")
FOLLOWS = {"triage": ("intake",), "comms": ("intake", "triage"), "analytics": ("intake", "triage", "comms")}
FIRING = (AlertAttached, AlertRepeated)
NOTIFICATIONS = (NotificationPlanned, NotificationCoalesced)
"""A notification is planned (sent now) or coalesced (held for the recipient's digest): one per cause."""


def dedup_key(alert_key: str) -> str:
    return alert_key.rsplit(":", 1)[-1]


# ------------------------------------------------------------------------------------------ reading


async def read_logs(settings: Settings) -> dict[str, list[Envelope]]:
    """Every producing service's whole log, through its own store's `read_all`."""
    logs: dict[str, list[Envelope]] = {}
    for source in PRODUCERS:
        events: list[Envelope] = []
        async with open_store(settings.store_url_for(source), source=source) as store:
            at: Checkpoint = START
            while page := await store.read_all(after=at, limit=5000):
                events.extend(page)
                at = page[-1].checkpoint
        logs[source] = events
    return logs


@dataclass
class Tracking:
    """What each consumer recorded as handled: event ids, and the checkpoint per consumer name."""

    handled: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    checkpoints: dict[str, tuple[int, int]] = field(default_factory=dict)

    def covers(self, name: str, env: Envelope) -> bool:
        at = self.checkpoints.get(name)
        return env.id in self.handled[name] or (at is not None and env.checkpoint <= at)


def _sqlite_tracking(path: str, into: Tracking) -> None:
    if not Path(path).exists():
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        for consumer, event_id in conn.execute("SELECT consumer, event_id FROM handled"):
            into.handled[consumer].add(event_id)
        for consumer, tx, position in conn.execute("SELECT consumer, tx, position FROM checkpoints"):
            into.checkpoints[consumer] = (int(tx), int(position))
    finally:
        conn.close()


async def read_tracking(settings: Settings) -> Tracking:
    out = Tracking()
    for consumer in ("triage", "comms"):
        url = settings.store_url_for(consumer)
        if url.startswith("sqlite:"):
            _sqlite_tracking(sqlite_path(url), out)
            continue
        conn = await asyncpg.connect(url, timeout=10)
        try:
            schema = '"' + consumer + '"'
            for r in await conn.fetch(f"SELECT consumer, event_id FROM {schema}.handled"):
                out.handled[r[0]].add(r[1])
            for r in await conn.fetch(f"SELECT consumer, tx, position FROM {schema}.checkpoints"):
                out.checkpoints[r[0]] = (int(r[1]), int(r[2]))
        finally:
            await conn.close()
    _sqlite_tracking(read_store_path(settings), out)
    return out


def inputs(settings: Settings) -> dict[str, Collection[str]]:
    """The event types each consumer takes, as its app declares them; the bus passes the others
    over without a tracking record."""
    policy = load_policy(settings.policy)
    return {
        "triage": taken(TRIAGE_INPUTS),
        "comms": taken(comms_inputs(policy.comms)),
        "analytics": taken(ANALYTICS_INPUTS),
    }


def behind(
    logs: Mapping[str, list[Envelope]], tracking: Tracking, takes: Mapping[str, Collection[str]]
) -> dict[str, int]:
    """Per consumer name (`comms<-intake`...), how many of the source's events it takes it has not
    handled yet."""
    out: dict[str, int] = {}
    for consumer, sources in FOLLOWS.items():
        types = takes[consumer]
        for source in sources:
            name = tracking_name(consumer, source)
            out[name] = sum(not tracking.covers(name, env) for env in logs[source] if env.type in types)
    return out


def undelivered(logs: Mapping[str, list[Envelope]]) -> int:
    """Planned notifications with no recorded outcome yet (sent, or finally failed)."""
    events = [env.event for env in logs["comms"]]
    planned = {e.notification_id for e in events if isinstance(e, NotificationPlanned)}
    done = {
        e.notification_id
        for e in events
        if isinstance(e, NotificationSent) or (isinstance(e, NotificationFailed) and e.final)
    }
    return len(planned - done)


async def settled(settings: Settings) -> tuple[bool, dict[str, int]]:
    """Every consumer has handled every event of its sources, and every notification has an outcome."""
    logs = await read_logs(settings)
    lag = {f"{s}_events": len(events) for s, events in logs.items()}
    waiting = behind(logs, await read_tracking(settings), inputs(settings))
    waiting["undelivered"] = undelivered(logs)
    return not any(waiting.values()), {**lag, **waiting}


# ------------------------------------------------------------------------------------------ checking


@dataclass
class Report:
    mode: str
    figures: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 40:
            self.problems.append(text)
        self.figures["problems"] = self.figures.get("problems", 0) + 1

    def line(self) -> str:
        return f"[{self.mode}] " + ", ".join(f"{k} {v}" for k, v in self.figures.items())


def check_alerts(report: Report, answers: Iterable[Answer], intake_log: list[Envelope]) -> None:
    """Every 202 is in the incident it was answered with; nothing beyond what may have been stored."""
    answers = list(answers)
    accepted: Counter[tuple[str, str]] = Counter()
    uncertain: Counter[str] = Counter()
    for a in answers:
        if a.status != "firing":
            continue
        if a.outcome == "accepted" and a.incident_id is not None:
            accepted[a.key, a.incident_id] += 1
        elif a.outcome == "unknown" or a.code in (503, 429):
            uncertain[a.key] += 1
    stored: Counter[tuple[str, str]] = Counter()
    opened: set[str] = set()
    for env in intake_log:
        e = env.event
        if isinstance(e, IncidentOpened):
            opened.add(e.incident_id)
        if isinstance(e, FIRING):
            stored[dedup_key(e.alert_key), e.incident_id] += 1
    lost = sum(max(0, n - stored[pair]) for pair, n in accepted.items())
    extra: Counter[str] = Counter()
    for (key, incident), n in stored.items():
        extra[key] += max(0, n - accepted[key, incident])
    duplicated = sum(max(0, n - uncertain[key]) for key, n in extra.items())
    for (key, incident), n in accepted.items():
        if stored[key, incident] < n:
            report.problem(
                f"lost: {n} alert(s) of key {key} answered 202 with incident {incident}, "
                f"{stored[key, incident]} in the log"
            )
    for key, n in extra.items():
        if n > uncertain[key]:
            report.problem(
                f"duplicated: key {key} has {n} alert(s) beyond its 202s, "
                f"only {uncertain[key]} request(s) had an unknown outcome"
            )
    answered = {a.incident_id for a in answers if a.outcome == "accepted" and a.incident_id}
    for incident in sorted(answered - opened):
        report.problem(f"incident {incident} was answered with a 202 but never opened")
    report.figures.update(
        sent=len(answers),
        accepted=sum(a.outcome == "accepted" for a in answers),
        refused=sum(a.outcome == "refused" for a in answers),
        unknown=sum(a.outcome == "unknown" for a in answers),
        lost=lost,
        duplicated=duplicated,
        uncertain_stored=sum(min(n, uncertain[k]) for k, n in extra.items()),
    )
    bad = [a for a in answers if a.code is not None and a.code not in (202, 503, 429)]
    for a in bad[:5]:
        report.problem(f"answered {a.code} to {a.status} alert {a.key}: {a.error}")
    report.figures["server_errors"] = len(bad)
    no_retry = [a for a in answers if a.code in (503, 429) and not a.retry_after]
    for a in no_retry[:5]:
        report.problem(f"{a.code} without Retry-After for {a.key}")


def check_order(report: Report, logs: Mapping[str, list[Envelope]]) -> None:
    """Each stream's events come in the global log in version order 1, 2, 3...: none reordered or missing."""
    reordered = 0
    for source, events in logs.items():
        versions: dict[str, int] = {}
        for env in events:
            if env.version != versions.get(env.stream, 0) + 1:
                reordered += 1
                report.problem(
                    f"{source} {env.stream}: version {env.version} after {versions.get(env.stream, 0)}"
                )
            versions[env.stream] = env.version
    report.figures["out_of_order"] = reordered


def check_incidents(report: Report, answers: Iterable[Answer], intake_log: list[Envelope]) -> None:
    """One open incident per key at a time, in intake's log and in the answers."""
    current: dict[str, str] = {}
    closed: set[str] = set()
    duplicates = 0
    for env in intake_log:
        match env.event:
            case AlertAttached(alert_key=alert_key, incident_id=incident):
                key = dedup_key(alert_key)
                before = current.get(key)
                if before is not None and before != incident and before not in closed:
                    duplicates += 1
                    report.problem(f"key {key} opened {incident} while {before} was open")
                current[key] = incident
            case IncidentResolved(incident_id=incident) | IncidentClosed(incident_id=incident):
                closed.add(incident)
            case IncidentReopened(incident_id=incident):
                closed.discard(incident)
    # In the answers: firing 202s of one key with no resolve attempt between them name one incident.
    last: dict[str, str] = {}
    for a in answers:
        if a.status == "resolved":
            last.pop(a.key, None)
        elif a.outcome == "accepted" and a.incident_id is not None:
            if a.key in last and last[a.key] != a.incident_id:
                duplicates += 1
                report.problem(f"key {a.key} answered {a.incident_id} after {last[a.key]}, with no resolve")
            last[a.key] = a.incident_id
    report.figures["incidents"] = sum(isinstance(env.event, IncidentOpened) for env in intake_log)
    report.figures["duplicate_incidents"] = duplicates


def check_notifications(
    report: Report,
    comms_log: list[Envelope],
    deliveries: Iterable[str],
    *,
    comms_crashes: int,
    incidents: Iterable[str] = (),
) -> None:
    """One planned notification per (cause, recipient), and none missing: every incident's responders
    hear of it over the webhook; every webhook notification delivered, at most once more."""
    planned = [env.event for env in comms_log if isinstance(env.event, NOTIFICATIONS)]
    told = {n.incident_id for n in planned if n.channel == "webhook"}
    silent = sorted(set(incidents) - told)
    for incident in silent[:5]:
        report.problem(f"incident {incident} has no webhook notification planned")
    report.figures["incidents_without_notification"] = len(silent)
    per_cause = Counter((n.cause_event_id, n.recipient) for n in planned)
    dup_planned = sum(n - 1 for n in per_cause.values() if n > 1)
    for (cause, recipient), n in per_cause.items():
        if n > 1:
            report.problem(f"{n} notifications planned for cause {cause} and {recipient}")
    webhook = {
        n.notification_id for n in planned if isinstance(n, NotificationPlanned) and n.channel == "webhook"
    }
    received = Counter(deliveries)
    never = webhook - set(received)
    for nid in sorted(never)[:5]:
        report.problem(f"webhook notification {nid} was planned but never delivered")
    strangers = set(received) - webhook
    for nid in sorted(strangers)[:5]:
        report.problem(f"a delivery with Idempotency-Key {nid} matches no planned notification")
    dup_deliveries = sum(n - 1 for n in received.values() if n > 1)
    if any(n > 2 for n in received.values()):
        report.problem(f"a notification was delivered more than twice: {received.most_common(3)}")
    if dup_deliveries and not comms_crashes:
        report.problem(f"{dup_deliveries} duplicate deliveries although comms never crashed")
    report.figures.update(
        notifications_planned=sum(isinstance(n, NotificationPlanned) for n in planned),
        notifications_coalesced=sum(isinstance(n, NotificationCoalesced) for n in planned),
        duplicate_planned=dup_planned,
        webhook_deliveries=sum(received.values()),
        undelivered=len(never),
        duplicate_deliveries_after_crash=dup_deliveries,
    )


async def _analytics_items(base: str) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as client:
        while True:
            params: dict[str, Any] = {"limit": 500}
            if cursor:
                params["cursor"] = cursor
            r = await client.get(f"{base}/v1/incidents", params=params)
            r.raise_for_status()
            body = r.json()
            items.update({i["id"]: i for i in body["items"]})
            cursor = body["next"]
            if not cursor:
                return items


async def check_analytics(report: Report, base: str, logs: Mapping[str, list[Envelope]]) -> None:
    """Analytics' incident list against a fold of the three logs done here."""
    items = await _analytics_items(base)
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for source in PRODUCERS:
        for env in logs[source]:
            e, incident = env.event, env.event.partition_key or ""
            if isinstance(e, IncidentOpened):
                expected[incident]["opened"] += 1
            elif isinstance(e, FIRING):
                expected[incident]["alert_count"] += 1
            elif isinstance(e, NotificationPlanned):
                expected[incident]["notification_count"] += 1
            elif isinstance(e, NotificationSent):
                expected[incident]["notifications_sent"] += 1
            elif isinstance(e, PriorityAssigned):
                expected[incident]["prioritised"] += 1
    incidents = {i for i, c in expected.items() if c["opened"]}
    mismatched = 0
    for incident in sorted(incidents | set(items)):
        item, want = items.get(incident), expected[incident]
        if item is None or incident not in incidents:
            mismatched += 1
            report.problem(
                f"incident {incident}: in analytics {item is not None}, in intake's log "
                f"{incident in incidents}"
            )
            continue
        got = {k: item[k] for k in ("alert_count", "notification_count", "notifications_sent")}
        wanted = {k: want[k] for k in got}
        if got != wanted or bool(item["priority"]) != bool(want["prioritised"]):
            mismatched += 1
            report.problem(
                f"incident {incident}: analytics {got} priority {item['priority']!r}, "
                f"logs {wanted} prioritised {want['prioritised']}"
            )
    report.figures["analytics_mismatches"] = mismatched


async def check_comms_api(report: Report, base: str, comms_log: list[Envelope], sample: int = 25) -> None:
    """Comms' own answer for some incidents: the planned notifications of its log, each once."""
    by_incident: dict[str, list[str]] = defaultdict(list)
    for env in comms_log:
        if isinstance(env.event, NOTIFICATIONS):
            by_incident[env.event.incident_id].append(env.event.notification_id)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as client:
        for incident in sorted(by_incident)[:sample]:
            r = await client.get(f"{base}/v1/incidents/{incident}/notifications")
            if r.status_code != 200:
                report.problem(f"comms notifications of {incident}: {r.status_code} {r.text[:200]}")
                continue
            ids = [n["notification_id"] for n in r.json()]
            if len(ids) != len(set(ids)) or set(ids) != set(by_incident[incident]):
                report.problem(f"comms lists {ids} for {incident}, its log {by_incident[incident]}")


async def check_rebuild(report: Report, settings: Settings, work: Path) -> None:
    """Analytics' live read model (its process stopped) equals one rebuilt from the start of every log."""
    fresh = work / "rebuilt-analytics.db"
    rebuilt_settings = settings.model_copy(update={"analytics_store_url": f"sqlite://{fresh}"})
    await rebuild(rebuilt_settings)
    async with ReadStore(read_store_path(settings)) as live, ReadStore(str(fresh)) as clean:
        a, b = await live.dump(), await clean.dump()
    differ = 0
    for part in ("incidents", "timeline"):
        left = {row[0]: row for row in a[part]}
        right = {row[0]: row for row in b[part]}
        for key in sorted(set(left) | set(right)):
            if left.get(key) != right.get(key):
                differ += 1
                report.problem(
                    f"analytics {part} {key}: live {left.get(key)!r:.300} rebuilt {right.get(key)!r:.300}"
                )
    report.figures["rebuild_differences"] = differ

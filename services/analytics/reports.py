"""Reports for people: a status report of the open incidents, and a post-incident review draft.

Each report is built once as a small document (sections of paragraphs, lists and tables) by pure
functions, then rendered as Markdown or HTML, so the two formats always say the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from services.analytics.metrics import sla_outcome
from services.analytics.projections import IncidentView
from shared.policy.analytics import AnalyticsPolicy

COMMS = ("NotificationSent", "NotificationFailed", "StatusUpdatePublished")


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


Block = str | Table | Bullets


@dataclass(frozen=True)
class Section:
    title: str
    blocks: Sequence[Block] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    title: str
    sections: Sequence[Section]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts) or f"{secs}s"


def when(at: datetime | str | None) -> str:
    if at is None:
        return "n/a"
    at = datetime.fromisoformat(at) if isinstance(at, str) else at
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _since(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a is not None and b is not None else None


# --- the status report -------------------------------------------------------------------------


def status_report(views: Sequence[IncidentView], *, policy: AnalyticsPolicy, now: datetime) -> Document:
    """All open incidents, most urgent first, for management."""
    open_ = sorted(
        (v for v in views if v.status not in ("resolved", "closed")),
        key=lambda v: (v.major != "accepted", v.priority or "P9", v.opened_at or now),
    )
    by_priority = Counter(v.priority or "none" for v in open_)
    majors = [v for v in open_ if v.major == "accepted"]
    overview = [
        f"{len(open_)} open incident{'s' * (len(open_) != 1)} at {when(now)}; {len(majors)} major.",
        Bullets([f"{p}: {n}" for p, n in sorted(by_priority.items())]) if open_ else "Nothing is open.",
    ]
    rows = []
    for v in open_:
        sla = sla_outcome(v, policy, now=now)
        rows.append(
            [
                v.id,
                v.priority or "-",
                ("MAJOR " if v.major == "accepted" else "") + v.title,
                v.service,
                v.status,
                v.team or "-",
                v.assignee or "-",
                duration(_since(v.opened_at, now)),
                f"response {sla.response or '-'}, resolution {sla.resolution or '-'}",
                when(v.next_update_due) if v.next_update_due else "-",
            ]
        )
    headers = [
        "Incident",
        "Priority",
        "Title",
        "Service",
        "Status",
        "Team",
        "Assignee",
        "Age",
        "SLA",
        "Next update",
    ]
    sections = [Section("Overview", overview)]
    if rows:
        sections.append(Section("Open incidents", [Table(headers, rows)]))
    return Document("Status report: open incidents", sections)


# --- the post-incident review ------------------------------------------------------------------


def review(
    v: IncidentView, timeline: Sequence[dict[str, Any]], *, policy: AnalyticsPolicy, now: datetime
) -> Document:
    """A post-incident review draft for one incident, from its log."""
    ttr = _since(v.opened_at, v.resolved_at)
    tta = _since(v.opened_at, v.acknowledged_at)
    held = sum(_since(datetime.fromisoformat(a), datetime.fromisoformat(b)) or 0 for a, b in v.holds)
    summary: list[Block] = [
        f"{v.title or v.id} on {v.service or 'an unknown service'}: priority {v.priority or 'not set'}, "
        f"{'a major incident' if v.major == 'accepted' else 'not a major incident'}, now {v.status}.",
        Bullets(
            [
                f"Opened: {when(v.opened_at)}",
                f"Problem started (sender's time): {when(v.detected_at)}",
                f"Acknowledged: {when(v.acknowledged_at)} (after {duration(tta)})",
                f"Resolved: {when(v.resolved_at)} (after {duration(ttr)})"
                if v.resolved_at
                else "Not resolved yet",
                f"Team: {v.team or 'n/a'}; assignee: {v.assignee or 'n/a'}",
            ]
        ),
    ]
    impact: list[Block] = [
        Bullets(
            [
                f"Service: {v.service or 'n/a'}; severity: {v.severity or 'n/a'}",
                f"Alerts received: {v.alert_count}",
                f"Time to detect: {duration(_since(v.detected_at, v.opened_at))}",
                f"Time on hold: {duration(held) if v.holds else 'none'}",
                f"Reopened: {v.reopen_count} time{'s' * (v.reopen_count != 1)}",
            ]
            + ([f"Business impact: {v.major_reason}"] if v.major_reason else [])
        )
    ]
    if v.description:
        impact.insert(0, v.description)
    events = Table(
        ["When", "Who", "What", "Why", "Source"],
        [[when(e["at"]), e["by"], e["summary"], e.get("why") or "", e["source"]] for e in timeline],
    )
    roles: Block = (
        Table(
            ["Role", "Who", "From", "To", "Tenure"],
            [
                [
                    r["role"],
                    r["who"],
                    when(r["from"]),
                    when(r["to"]) if r["to"] else "still holds it",
                    duration(
                        _since(
                            datetime.fromisoformat(r["from"]),
                            datetime.fromisoformat(r["to"]) if r["to"] else now,
                        )
                    ),
                ]
                for r in v.roles
            ],
        )
        if v.roles
        else "No roles were assigned."
    )
    sent = [e for e in timeline if e["type"] in COMMS]
    comms: list[Block] = [
        f"{v.notification_count} notifications planned, {v.notifications_sent} delivered, "
        f"{v.notifications_failed} given up; {len(v.updates)} status updates published."
    ]
    if sent:
        comms.append(
            Table(
                ["When", "What", "Detail"], [[when(e["at"]), e["summary"], e.get("why") or ""] for e in sent]
            )
        )
    sla = sla_outcome(v, policy, now=now)
    targets = (policy.response_targets.get(v.priority or ""), policy.resolution_targets.get(v.priority or ""))
    clock = "business hours" if v.priority in policy.business_hours_priorities else "24x7"
    sla_blocks: list[Block] = [
        Table(
            ["Target", "Allowed", "Taken", "Outcome"],
            [
                [
                    "Response",
                    duration(targets[0]),
                    duration(sla.response_seconds),
                    sla.response or "no target",
                ],
                [
                    "Resolution",
                    duration(targets[1]),
                    duration(sla.resolution_seconds),
                    sla.resolution or "no target",
                ],
            ],
        ),
        f"Measured {clock}; time on hold does not count towards resolution. SLA warnings: {v.sla_warnings}.",
    ]
    actions: Block = (
        Table(
            ["Action", "Owner", "Due"],
            [[a["text"], a.get("owner") or "unassigned", a.get("due") or "-"] for a in v.actions],
        )
        if v.actions
        else 'No action items yet: add notes starting with "Action:" (owner as @name).'
    )
    sections = [
        Section("Summary", summary),
        Section("Impact", impact),
        Section("Timeline", [events]),
        Section("Roles and tenure", [roles]),
        Section("Communications", comms),
        Section("SLA outcome", sla_blocks),
        Section("Action items", [actions]),
    ]
    if v.feedback:
        scores = [f["score"] for f in v.feedback]
        sections.append(
            Section("Customer satisfaction", [f"Latest score {scores[-1]}/5 ({len(scores)} responses)."])
        )
    return Document(f"Post-incident review (draft): {v.title or v.id}", sections)


# --- rendering ---------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(doc: Document) -> str:
    out = [f"# {doc.title}", ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("| " + " | ".join(block.headers) + " |")
                out.append("|" + "---|" * len(block.headers))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            elif isinstance(block, Bullets):
                out += [f"- {item}" for item in block.items]
            else:
                out.append(block)
            out.append("")
    return "\n".join(out)


def html_fragment(doc: Document) -> str:
    out = []
    for section in doc.sections:
        out.append(f"<section><h2>{escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                head = "".join(f"<th>{escape(h)}</th>" for h in block.headers)
                body = "".join(
                    "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in block.rows
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(block, Bullets):
                out.append("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in block.items) + "</ul>")
            else:
                out.append(f"<p>{escape(block)}</p>")
        out.append("</section>")
    return "\n".join(out)


def html(doc: Document) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(doc.title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.3em .5em;"
        "text-align:left;vertical-align:top}th{background:#f3f3f3}</style></head><body>"
        f"<h1>{escape(doc.title)}</h1>\n{html_fragment(doc)}</body></html>"
    )

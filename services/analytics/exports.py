"""Formats for people and spreadsheets: content negotiation, CSV of incidents and of metrics."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import Request

from shared.errors import DomainError

INCIDENT_COLUMNS = (
    "id",
    "title",
    "service",
    "category",
    "severity",
    "status",
    "priority",
    "major",
    "team",
    "assignee",
    "opened_at",
    "detected_at",
    "acknowledged_at",
    "resolved_at",
    "closed_at",
    "alert_count",
    "notification_count",
    "notifications_sent",
    "reopen_count",
    "response_breached",
    "resolution_breached",
)
FORMATS = {
    "md": "markdown",
    "markdown": "markdown",
    "html": "html",
    "json": "json",
    "csv": "csv",
}
MEDIA = {
    "markdown": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
}


def negotiate(request: Request, fmt: str | None, *, offered: tuple[str, ...]) -> str:
    """`?format=` wins; else the first offered format the Accept header names; else the first offered."""
    if fmt is not None:
        chosen = FORMATS.get(fmt.lower())
        if chosen not in offered:
            raise DomainError(f"format: {fmt!r} is not one of {', '.join(offered)}")
        return chosen
    accept = request.headers.get("accept", "").lower()
    for kind in offered:
        if MEDIA[kind].split(";")[0] in accept:
            return kind
    return offered[0]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def incidents_csv(items: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INCIDENT_COLUMNS)
    for item in items:
        writer.writerow([_cell(item.get(c)) for c in INCIDENT_COLUMNS])
    return out.getvalue()


def flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """Nested metrics as (dotted name, value) rows; lists get their index."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield from flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from flatten(inner, f"{prefix}.{i}")
    else:
        yield prefix, _cell(value)


def metrics_csv(metrics: Mapping[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("metric", "value"))
    writer.writerows(flatten(metrics))
    return out.getvalue()

"""Any JSON object that is not a known format (a custom payload template, a CloudEvent's data):
the usual field names are looked for; the identity is `dedup_key`/`fingerprint`/`id`, or a hash."""

from __future__ import annotations

from typing import Any

from services.intake.domain import Alert
from services.intake.parsers import BadPayload, Context
from shared.events import AlertStatus

RESOLVED = {"resolved", "ok", "recovered", "closed", "inactive", "normal", "resolve"}


def _text(body: dict[str, Any], *names: str) -> str:
    for name in names:
        value = body.get(name)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    return ""


def parse(
    body: Any, ctx: Context, *, dedup_key: str = "", title: str = "", replay_id: str = ""
) -> list[Alert]:
    if not isinstance(body, dict):
        raise BadPayload("body", "expected a JSON object")
    labels_in = body.get("labels")
    labels = (
        {str(k): v for k, v in labels_in.items() if isinstance(v, str)} if isinstance(labels_in, dict) else {}
    )
    status = _text(body, "status", "state").lower()
    return [
        ctx.alert(
            dedup_key=dedup_key or _text(body, "dedup_key", "fingerprint", "alert_uid", "id", "key"),
            title=_text(body, "title", "summary", "name", "alertname", "message") or title or "Alert",
            service=ctx.service(_text(body, "service"), labels.get("service")),
            severity=ctx.severity(_text(body, "severity", "priority", "level") or labels.get("severity")),
            status=AlertStatus.RESOLVED if status in RESOLVED else AlertStatus.FIRING,
            raw=body,
            sender_group=_text(body, "group_key", "groupKey"),
            description=_text(body, "description", "message", "text", "body"),
            labels=labels,
            replay_id=replay_id,
        )
    ]

"""Native alert formats in, `domain.Alert`s out: one module per sender format.

Every parser is a pure function of the decoded JSON body and a `Context` (the integration it came
through and the policy). Bad input raises `BadPayload`, which names the field (HTTP 422).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from services.intake.domain import Alert
from services.intake.registry import DEFAULT_ID, Integration
from shared.errors import DomainError
from shared.events import AlertStatus, Severity
from shared.policy.intake import GroupBy, Grouping, IntakePolicy

ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


class BadPayload(DomainError):
    status = 422
    title = "Invalid alert payload"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Malformed(DomainError):
    status = 400
    title = "Malformed request body"


def invalid(error: ValidationError, prefix: str = "") -> BadPayload:
    """The first validation error, as a BadPayload naming its field."""
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid"}
    loc = ".".join(str(p) for p in first.get("loc", ()))
    field = ".".join(p for p in (prefix, loc) if p) or "body"
    return BadPayload(field, str(first.get("msg", "invalid")))


def decode(body: bytes) -> Any:
    """The JSON body, or Malformed (400)."""
    if not body.strip():
        raise Malformed("the request body is empty; expected JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise Malformed(f"the request body is not valid JSON: {e}") from None


def clean(text: str, limit: int) -> str:
    """No NUL characters (PostgreSQL refuses them), bounded length."""
    return text.replace("\x00", "")[:limit]


def bounded(raw: Any, max_bytes: int) -> dict[str, Any]:
    """The raw payload as kept with the event: itself when small enough, else a digest and a prefix."""
    data = orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS).replace(b"\\u0000", b"\\ufffd")
    if len(data) <= max_bytes:
        kept = orjson.loads(data)
        return kept if isinstance(kept, dict) else {"value": kept}
    return {
        "truncated": True,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "head": data[: max(max_bytes - 200, 64)].decode("utf-8", "replace"),
    }


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC; the zero time (Alertmanager's 'still firing') is None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        if value <= ZERO_TIME:
            return None
        return value.astimezone(UTC)
    except OverflowError:
        return None


def epoch_ms(value: str | int | float | None) -> datetime | None:
    """Datadog's `$DATE`/`$LAST_UPDATED`: epoch milliseconds, as a string; None when unusable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        ms = float(value)
        return datetime.fromtimestamp(ms / 1000, tz=UTC) if 0 < ms < 4.1e15 else None
    except (ValueError, OverflowError, OSError):
        return None


@dataclass(frozen=True, slots=True)
class Context:
    integration: Integration
    policy: IntakePolicy
    source: str

    @property
    def grouping(self) -> Grouping:
        if self.integration.grouping is not None:
            return self.integration.grouping
        return self.policy.grouping_for(self.source)

    def severity(self, raw: str | None, default: Severity | None = None) -> Severity:
        if raw:
            name = raw.strip().lower()
            found = self.integration.severity_map.get(name) or self.policy.severity.get(name)
            if found is not None:
                return found
        return default or self.policy.default_severity

    def service(self, *candidates: str | None) -> str:
        for c in candidates:
            if c and c.strip():
                return clean(c.strip(), 255)
        return self.integration.default_service

    def key(self, dedup_key: str) -> str:
        scope = self.source if self.integration.id == DEFAULT_ID else f"{self.source}:{self.integration.id}"
        return f"{scope}:{dedup_key}"

    def group_key(self, service: str, sender_group: str, labels: Mapping[str, str]) -> str:
        g = self.grouping
        match g.by:
            case GroupBy.SENDER if sender_group:
                return f"{service}|{self.integration.id}:{clean(sender_group, 512)}"
            case GroupBy.LABELS if g.labels:
                values = ",".join(f"{name}={labels.get(name, '')}" for name in g.labels)
                return f"{service}|{self.integration.id}:labels:{clean(values, 512)}"
            case GroupBy.SERVICE:
                return f"{service}|service"
            case _:
                return ""

    def alert(
        self,
        *,
        dedup_key: str,
        title: str,
        service: str,
        severity: Severity,
        status: AlertStatus,
        raw: Any,
        sender_group: str = "",
        description: str = "",
        labels: Mapping[str, str] | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        acknowledge: bool = False,
        replay_id: str = "",
    ) -> Alert:
        labels = {clean(k, 255): clean(v, 1024) for k, v in (labels or {}).items()}
        dedup = clean(dedup_key, 255) or hashlib.sha256(orjson.dumps(raw)).hexdigest()[:32]
        return Alert(
            key=self.key(dedup),
            dedup_key=dedup,
            title=clean(title, 1024) or "(untitled alert)",
            service=service,
            severity=severity,
            status=status,
            source=self.source,
            description=clean(description, 65536),
            labels=labels,
            starts_at=utc(starts_at),
            ends_at=utc(ends_at),
            integration_id=self.integration.id,
            group_key=self.group_key(service, sender_group, labels),
            acknowledge=acknowledge,
            raw=bounded(raw, self.policy.raw_max_bytes),
            resolve_rule=self.integration.resolve_rule,
            window_seconds=self.grouping.window_seconds,
            replay_id=replay_id,
        )

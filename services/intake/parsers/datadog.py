"""Datadog webhooks, in the template our docs publish (every value a string Datadog fills in).

Identity: `cycle_key` ($ALERT_CYCLE_KEY, one trigger-to-recovery episode), else monitor id + scope,
else the event id. Status from `transition`; severity from `priority` (P1..P5), a Warn transition is
a warning; times from `date` (epoch milliseconds)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.intake.domain import Alert
from services.intake.parsers import BadPayload, Context, epoch_ms, invalid
from shared.events import AlertStatus, Severity

Value = Field(default="", max_length=65536)

TYPE_SEVERITY = {"error": Severity.HIGH, "warning": Severity.WARNING, "info": Severity.INFO}


class Org(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(default="", max_length=255)
    name: str = Field(default="", max_length=1024)


class Webhook(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str = Field(default="", max_length=255)
    alert_id: str = Field(default="", max_length=255)
    cycle_key: str = Field(default="", max_length=255)
    aggreg_key: str = Field(default="", max_length=1024)
    transition: str = Field(default="", max_length=64)
    alert_type: str = Field(default="", max_length=64)
    priority: str = Field(default="", max_length=64)
    title: str = Field(default="", max_length=4096)
    body: str = Value
    text: str = Value
    scope: str = Field(default="", max_length=8192)
    tags: str = Field(default="", max_length=16384)
    host: str = Field(default="", max_length=1024)
    link: str = Field(default="", max_length=4096)
    snapshot: str = Field(default="", max_length=4096)
    query: str = Value
    metric: str = Field(default="", max_length=1024)
    event_type: str = Field(default="", max_length=255)
    date: str = Field(default="", max_length=64)
    last_updated: str = Field(default="", max_length=64)
    org: Org = Field(default_factory=Org)

    @field_validator("*", mode="before")
    @classmethod
    def _unfilled_is_empty(cls, value: Any) -> Any:
        """A `$VARIABLE` left as is (a test notification, a variable Datadog does not know) is empty."""
        if isinstance(value, str) and value.startswith("$") and value[1:].replace("_", "").isalnum():
            return ""
        return value


def _tags(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in text.split(","):
        name, sep, value = tag.strip().partition(":")
        if name:
            out[name[:255]] = value[:1024] if sep else ""
    return dict(list(out.items())[:128])


def parse(body: Any, ctx: Context) -> Alert:
    if not isinstance(body, dict):
        raise BadPayload("body", "expected a JSON object (the Datadog webhook template in our docs)")
    try:
        hook = Webhook.model_validate(body)
    except ValidationError as e:
        raise invalid(e) from None
    transition = hook.transition.strip().lower()
    resolved = transition == "recovered" or hook.alert_type.lower() == "success"
    if not (hook.cycle_key or hook.alert_id or hook.id or hook.aggreg_key):
        raise BadPayload(
            "cycle_key", "one of cycle_key, alert_id, id or aggreg_key is needed to identify the alert"
        )
    tags = _tags(hook.tags)
    when = epoch_ms(hook.date) or epoch_ms(hook.last_updated)
    if "warn" in transition or hook.alert_type.lower() == "warning":
        severity = ctx.severity(None, Severity.WARNING) if not hook.priority else Severity.WARNING
    else:
        severity = ctx.severity(hook.priority, TYPE_SEVERITY.get(hook.alert_type.lower()))
    labels = {**tags, **{k: v for k, v in (("host", hook.host), ("monitor_id", hook.alert_id)) if v}}
    if hook.transition:
        labels["transition"] = hook.transition
    return ctx.alert(
        dedup_key=hook.cycle_key
        or (f"{hook.alert_id}:{hook.scope}" if hook.alert_id else hook.id or hook.aggreg_key),
        title=hook.title or hook.text[:200] or "Datadog alert",
        service=ctx.service(tags.get("service")),
        severity=severity,
        status=AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
        raw=body,
        sender_group=hook.aggreg_key,
        description=hook.text or hook.body,
        labels=labels,
        starts_at=None if resolved else when,
        ends_at=when if resolved else None,
    )

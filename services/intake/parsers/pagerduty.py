"""PagerDuty Events API v2 (`/v2/enqueue`) and change events (`/v2/change/enqueue`).

`routing_key` selects the integration; `dedup_key` is the identity on that routing key. A trigger
without one gets a fresh key (returned). Acknowledge and resolve apply only while the alert's
incident is open; sent on another routing key they find nothing, as on PagerDuty."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.intake.domain import Alert
from services.intake.parsers import BadPayload, Context, bounded, clean, invalid, utc
from shared.events import AlertChangeRecorded, AlertStatus, Severity

URGENCY_DEFAULT = Severity.HIGH  # PagerDuty: a missing severity is high urgency


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1, max_length=1024)
    severity: Literal["critical", "error", "warning", "info"]
    timestamp: datetime | None = None
    component: str | None = Field(default=None, max_length=1024)
    group: str | None = Field(default=None, max_length=1024)
    class_: str | None = Field(default=None, alias="class", max_length=1024)
    custom_details: Any = None

    @field_validator("summary", "source")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Link(BaseModel):
    model_config = ConfigDict(extra="ignore")

    href: str = Field(min_length=1, max_length=4096)
    text: str | None = Field(default=None, max_length=1024)


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    routing_key: str = Field(min_length=1, max_length=255)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, max_length=255)
    payload: Payload | None = None
    client: str | None = Field(default=None, max_length=1024)
    client_url: str | None = Field(default=None, max_length=4096)
    links: list[Link] = Field(default_factory=list, max_length=100)
    images: list[dict[str, Any]] = Field(default_factory=list, max_length=100)


class ChangePayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1, max_length=1024)
    source: str | None = Field(default=None, max_length=1024)
    timestamp: datetime | None = None
    custom_details: dict[str, Any] = Field(default_factory=dict)


class ChangeEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    routing_key: str = Field(min_length=1, max_length=255)
    payload: ChangePayload
    links: list[Link] = Field(default_factory=list, max_length=100)


def _details(details: Any) -> str:
    if details is None or details == {}:
        return ""
    return clean(orjson.dumps(details, option=orjson.OPT_NON_STR_KEYS).decode(), 65536)


def routing_key(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("routing_key"), str) or not body["routing_key"]:
        raise BadPayload("routing_key", "is missing or not a string")
    return str(body["routing_key"])


def parse(body: Any, ctx: Context) -> Alert:
    if not isinstance(body, dict):
        raise BadPayload("body", "expected a JSON object (a PagerDuty Events API v2 event)")
    try:
        event = Event.model_validate(body)
    except ValidationError as e:
        raise invalid(e) from None
    if event.event_action == "trigger":
        if event.payload is None:
            raise BadPayload("payload", "is required for a trigger")
        p = event.payload
        details = p.custom_details if isinstance(p.custom_details, dict) else {}
        labels = {k: str(v)[:1024] for k, v in details.items() if isinstance(v, str | int | float | bool)}
        labels.update({k: v for k, v in (("component", p.component), ("group", p.group)) if v})
        labels["source"] = p.source
        return ctx.alert(
            dedup_key=event.dedup_key or uuid.uuid4().hex,
            title=p.summary,
            service=ctx.service(),
            severity=ctx.severity(p.severity, URGENCY_DEFAULT),
            status=AlertStatus.FIRING,
            raw=body,
            sender_group=p.group or "",
            description=_details(p.custom_details),
            labels=labels,
            starts_at=p.timestamp,
        )
    if not event.dedup_key:
        raise BadPayload("dedup_key", f"is required for {event.event_action}")
    return ctx.alert(
        dedup_key=event.dedup_key,
        title=event.dedup_key,
        service=ctx.service(),
        severity=URGENCY_DEFAULT,
        status=AlertStatus.RESOLVED if event.event_action == "resolve" else AlertStatus.FIRING,
        raw=body,
        acknowledge=event.event_action == "acknowledge",
    )


def parse_change(body: Any, ctx: Context, *, now: datetime) -> AlertChangeRecorded:
    if not isinstance(body, dict):
        raise BadPayload("body", "expected a JSON object (a PagerDuty change event)")
    try:
        change = ChangeEvent.model_validate(body)
    except ValidationError as e:
        raise invalid(e) from None
    p = change.payload
    return AlertChangeRecorded(
        service=ctx.integration.default_service,
        summary=clean(p.summary, 1024),
        source=clean(p.source or "", 1024),
        integration_id=ctx.integration.id,
        custom_details=bounded(p.custom_details, ctx.policy.raw_max_bytes),
        links=[bounded(link.model_dump(exclude_none=True), 8192) for link in change.links],
        occurred_at=utc(p.timestamp) or now,
    )

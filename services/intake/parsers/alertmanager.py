"""Prometheus Alertmanager webhooks (version 4) and Grafana alerting webhooks (version 1, the same
shape plus extensions; and the legacy pre-unified shape). One request is one aggregation group;
each alert's `fingerprint` is its identity, the group's `groupKey` its sender group."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.intake.domain import Alert
from services.intake.parsers import BadPayload, Context, generic, invalid, utc
from shared.events import AlertStatus

Text = Field(default="", max_length=65536)


class WireAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"] | None = None
    labels: dict[str, str] = Field(default_factory=dict, max_length=256)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=256)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    generatorURL: str = Text
    fingerprint: str | None = Field(default=None, max_length=255)


class Webhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str | None = Field(default=None, max_length=16)
    groupKey: str = Field(default="", max_length=4096)
    status: Literal["firing", "resolved"] | None = None
    receiver: str = Field(default="", max_length=1024)
    groupLabels: dict[str, str] = Field(default_factory=dict, max_length=256)
    commonLabels: dict[str, str] = Field(default_factory=dict, max_length=256)
    commonAnnotations: dict[str, str] = Field(default_factory=dict, max_length=256)
    externalURL: str = Text
    truncatedAlerts: int = Field(default=0, ge=0)
    alerts: list[WireAlert] = Field(max_length=10_000)
    # Grafana's extensions
    title: str = Text
    message: str = Text
    state: str | None = Field(default=None, max_length=64)


class LegacyGrafana(BaseModel):
    """Grafana's pre-unified alerting webhook."""

    model_config = ConfigDict(extra="ignore")

    ruleId: int | str | None = None
    ruleName: str = Field(default="", max_length=1024)
    ruleUrl: str = Text
    state: str = Field(max_length=64)
    title: str = Field(default="", max_length=1024)
    message: str = Text
    tags: dict[str, str] = Field(default_factory=dict, max_length=256)


def _status(alert: WireAlert, group: Webhook) -> AlertStatus:
    if alert.status is not None:
        return AlertStatus(alert.status)
    if alert.endsAt is not None and utc(alert.endsAt) is not None:
        return AlertStatus.RESOLVED  # a real end time: resolved; the zero time means still firing
    return AlertStatus(group.status or "firing")


def _fingerprint(alert: WireAlert) -> str:
    if alert.fingerprint:
        return alert.fingerprint
    labels = orjson.dumps(alert.labels, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(labels).hexdigest()[:16]


def parse(body: Any, ctx: Context) -> list[Alert]:
    """Alertmanager (and Grafana unified) webhooks; a custom `payload` template falls back to generic."""
    if not isinstance(body, dict):
        raise BadPayload("body", "expected a JSON object (an Alertmanager/Grafana webhook)")
    if "alerts" not in body:
        if ctx.source == "grafana" and "state" in body and ("ruleId" in body or "ruleName" in body):
            return [_legacy(body, ctx)]
        return generic.parse(body, ctx)
    try:
        hook = Webhook.model_validate(body)
    except ValidationError as e:
        raise invalid(e) from None
    out = []
    for index, alert in enumerate(hook.alerts):
        labels = {**hook.commonLabels, **alert.labels}
        annotations = {**hook.commonAnnotations, **alert.annotations}
        status = _status(alert, hook)
        title = (
            annotations.get("summary") or annotations.get("title") or labels.get("alertname") or hook.title
        )
        raw = {
            k: v
            for k, v in body.items()
            if k not in ("alerts", "commonLabels", "commonAnnotations", "message")
        }
        raw["alert"] = body["alerts"][index]
        out.append(
            ctx.alert(
                dedup_key=_fingerprint(alert),
                title=title or "Alert",
                service=ctx.service(labels.get("service"), labels.get("job")),
                severity=ctx.severity(labels.get("severity") or labels.get("priority")),
                status=status,
                raw=raw,
                sender_group=hook.groupKey,
                description=annotations.get("description") or annotations.get("message") or "",
                labels=labels,
                starts_at=alert.startsAt,
                ends_at=alert.endsAt if status is AlertStatus.RESOLVED else None,
            )
        )
    return out


def _legacy(body: dict[str, Any], ctx: Context) -> Alert:
    try:
        legacy = LegacyGrafana.model_validate(body)
    except ValidationError as e:
        raise invalid(e) from None
    state = legacy.state.lower()
    return ctx.alert(
        dedup_key=str(legacy.ruleId if legacy.ruleId is not None else legacy.ruleUrl or legacy.ruleName),
        title=legacy.title or legacy.ruleName or "Grafana alert",
        service=ctx.service(legacy.tags.get("service")),
        severity=ctx.severity(legacy.tags.get("severity")),
        status=AlertStatus.RESOLVED if state == "ok" else AlertStatus.FIRING,
        raw=body,
        description=legacy.message,
        labels=legacy.tags,
    )

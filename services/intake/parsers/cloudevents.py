"""CloudEvents 1.0 over HTTP: structured (`application/cloudevents+json`), batch
(`application/cloudevents-batch+json`) and binary (`ce-*` headers, the body is `data`) modes.

`type` picks the mapper for `data` (an Alertmanager, Grafana, PagerDuty or Datadog payload, or any
object through the generic mapper). The (`source`, `id`) pair is the exact-replay guard: a second
delivery of one CloudEvent records nothing."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.intake.domain import Alert
from services.intake.parsers import (
    BadPayload,
    Context,
    Malformed,
    alertmanager,
    bounded,
    datadog,
    decode,
    generic,
    invalid,
    utc,
)
from services.intake.parsers import pagerduty as pd
from shared.events import AlertStatus

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    specversion: str = Field(pattern=r"^1\.0$")
    id: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1, max_length=4096)
    type: str = Field(min_length=1, max_length=1024)
    subject: str | None = Field(default=None, max_length=1024)
    time: datetime | None = None
    datacontenttype: str | None = Field(default=None, max_length=255)
    dataschema: str | None = Field(default=None, max_length=4096)
    data: Any = None
    data_base64: str | None = None


def events(body: bytes, headers: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Each CloudEvent in the request with its field prefix ('' or 'N.'), as a dict of attributes."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if "ce-specversion" in headers and content_type not in (STRUCTURED, BATCH):
        attrs: dict[str, Any] = {
            k.removeprefix("ce-"): v for k, v in headers.items() if k.startswith("ce-") and len(k) > 3
        }
        if content_type:
            attrs["datacontenttype"] = content_type
        if body.strip():
            if content_type.endswith("json") or content_type == "":
                try:
                    attrs["data"] = orjson.loads(body)
                except orjson.JSONDecodeError as e:
                    raise Malformed(
                        f"binary-mode body is not valid JSON ({content_type or 'no type'}): {e}"
                    ) from None
            else:
                attrs["data"] = body.decode("utf-8", "replace")
        return [("", attrs)]
    decoded = decode(body)
    if isinstance(decoded, list):
        if content_type == STRUCTURED:
            raise BadPayload("body", f"{STRUCTURED} carries one event; a JSON array is {BATCH}")
        if not decoded:
            raise BadPayload("body", "the batch is empty")
        if len(decoded) > 1000:
            raise BadPayload("body", "at most 1000 events in a batch")
        out = []
        for i, item in enumerate(decoded):
            if not isinstance(item, dict):
                raise BadPayload(str(i), "each event in a batch is a JSON object")
            out.append((f"{i}.", item))
        return out
    if not isinstance(decoded, dict):
        raise BadPayload("body", "expected a CloudEvent (a JSON object), or a JSON array in batch mode")
    return [("", decoded)]


def _data(ce: CloudEvent, prefix: str) -> Any:
    if ce.data is not None and ce.data_base64 is not None:
        raise BadPayload(f"{prefix}data", "data and data_base64 are exclusive")
    if ce.data_base64 is None:
        return ce.data
    try:
        raw = base64.b64decode(ce.data_base64, validate=True)
    except (binascii.Error, ValueError):
        raise BadPayload(f"{prefix}data_base64", "is not valid base64") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"text": raw.decode("utf-8", "replace")}


def parse(prefix: str, attrs: dict[str, Any], ctx: Context) -> list[Alert]:
    try:
        ce = CloudEvent.model_validate(attrs)
    except ValidationError as e:
        raise invalid(e, prefix.rstrip(".")) from None
    data = _data(ce, prefix)
    kind = ce.type.lower()
    replay_id = f"{ce.source}\n{ce.id}"
    if isinstance(data, dict) and (
        "alertmanager" in kind or "grafana" in kind or isinstance(data.get("alerts"), list)
    ):
        fmt = Context(ctx.integration, ctx.policy, "grafana" if "grafana" in kind else "alertmanager")
        parsed = alertmanager.parse(data, fmt)
    elif isinstance(data, dict) and ("pagerduty" in kind or "event_action" in data):
        parsed = [pd.parse({"routing_key": "-", **data}, Context(ctx.integration, ctx.policy, "pagerduty"))]
    elif isinstance(data, dict) and "datadog" in kind:
        parsed = [datadog.parse(data, Context(ctx.integration, ctx.policy, "datadog"))]
    else:
        body = data if isinstance(data, dict) else {"value": data}
        extensions = {k: v for k, v in (ce.model_extra or {}).items() if isinstance(v, str)}
        if "severity" not in body and extensions.get("severitytext"):
            body = {**body, "severity": extensions["severitytext"]}
        if "status" not in body and kind.endswith((".resolved", ".recovered", ".ok")):
            body = {**body, "status": "resolved"}
        parsed = generic.parse(
            body,
            ctx,
            dedup_key=str(body.get("dedup_key") or ce.subject or ce.id),
            title=ce.subject or ce.type,
        )
    raw = bounded(attrs, ctx.policy.raw_max_bytes)
    return [
        replace(
            alert,
            starts_at=alert.starts_at or (utc(ce.time) if alert.status is AlertStatus.FIRING else None),
            ends_at=alert.ends_at or (utc(ce.time) if alert.status is AlertStatus.RESOLVED else None),
            raw=raw,
            replay_id=f"{replay_id}\n{i}" if i else replay_id,
        )
        for i, alert in enumerate(parsed)
    ]

"""Integrations (admin), maintenance windows and heartbeats: records in intake's own log.

An integration's key is shown once, when it is created; only its SHA-256 is stored."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.intake.handlers import Intake, heartbeat_stream
from services.intake.heartbeats import Heartbeat
from services.intake.parsers import BadPayload, invalid
from services.intake.registry import Failure, Integration, Stats, integration_of
from services.intake.senders import Senders
from shared.auth import hash_secret
from shared.errors import NotFound
from shared.events import IntegrationCreated, MaintenanceWindowScheduled, Severity
from shared.policy.intake import Grouping, IntakePolicy, ResolveRule
from shared.store import ConcurrencyError
from shared.web import Admin, Responder, Viewer

SourceType = Literal[
    "alertmanager", "grafana", "pagerduty", "datadog", "cloudevents", "canonical", "heartbeat"
]
Name = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")


class NewIntegration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Name
    source_type: SourceType
    default_service: str = Name
    severity_map: dict[str, Severity] = Field(default_factory=dict, max_length=256)
    resolve_rule: ResolveRule = ResolveRule.ALL
    grouping: Grouping | None = Field(
        default=None, description="Omitted: the policy's default for the format"
    )
    hmac_secret: str | None = Field(default=None, min_length=8, max_length=1024)
    signature_header: str | None = Field(default=None, max_length=255, pattern=r"^[A-Za-z0-9-]+$")
    timestamp_header: str | None = Field(default=None, max_length=255, pattern=r"^[A-Za-z0-9-]+$")


class IntegrationOut(BaseModel):
    id: str
    name: str
    source_type: str
    default_service: str
    severity_map: dict[str, str]
    resolve_rule: str
    grouping: dict[str, Any] | None
    hmac: bool
    signature_header: str | None
    timestamp_header: str | None
    created_at: str | None
    created_by: str
    key: str | None = Field(default=None, description="Shown only in the answer that created it")


class IntegrationDetail(IntegrationOut):
    last_received_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    counts: dict[str, int]


class NewWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = Name
    starts_at: datetime
    ends_at: datetime
    reason: str = Field(default="", max_length=4096)

    @model_validator(mode="after")
    def _ordered(self) -> NewWindow:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("starts_at and ends_at need a UTC offset")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class WindowOut(BaseModel):
    id: str
    service: str
    starts_at: datetime
    ends_at: datetime
    reason: str


class Beat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_seconds: int | None = Field(default=None, ge=1, le=7 * 86400)
    service: str | None = Field(default=None, min_length=1, max_length=255)


class HeartbeatOut(BaseModel):
    name: str
    service: str
    timeout_seconds: int
    last_beat: datetime | None
    due_at: datetime | None
    status: Literal["ok", "expired"]
    incident_id: str | None


def _heartbeat_out(hb: Heartbeat) -> HeartbeatOut:
    return HeartbeatOut(
        name=hb.name,
        service=hb.service,
        timeout_seconds=hb.timeout_seconds,
        last_beat=hb.last_beat,
        due_at=hb.due_at,
        status="expired" if hb.expired else "ok",
        incident_id=hb.incident_id,
    )


def _derived_id(who: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return secrets.token_hex(8)
    return hashlib.sha256(f"{who}\n{idempotency_key}".encode()).hexdigest()[:16]


def routes(intake: Intake, senders: Senders, policy: IntakePolicy) -> APIRouter:
    router = APIRouter()
    registry = intake.registry

    def out(integration: Integration, key: str | None = None) -> IntegrationOut:
        return IntegrationOut(**integration.public(), key=key)

    @router.post("/v1/integrations", status_code=201, response_model=IntegrationOut, tags=["integrations"])
    async def create_integration(
        body: NewIntegration,
        who: Admin,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> IntegrationOut:
        integration_id = _derived_id(who.subject, idempotency_key)
        existing = registry.integrations.get(integration_id)
        if existing is not None:
            response.status_code = 200  # a replay: the key was shown once and is not kept
            return out(existing)
        key = "lpk_" + secrets.token_urlsafe(24)
        g = body.grouping
        event = IntegrationCreated(
            integration_id=integration_id,
            name=body.name,
            source_type=body.source_type,
            default_service=body.default_service,
            key_hash=hash_secret(key),
            by=who.subject,
            severity_map={k.lower(): v for k, v in body.severity_map.items()},
            resolve_rule=body.resolve_rule.value,
            group_by="policy" if g is None else g.by.value,
            group_labels=[] if g is None else list(g.labels),
            group_window_seconds=policy.grouping_for(body.source_type).window_seconds
            if g is None
            else g.window_seconds,
            hmac_secret=body.hmac_secret,
            signature_header=body.signature_header,
            timestamp_header=body.timestamp_header,
            occurred_at=intake.clock(),
        )
        try:
            await intake.record(f"integration-{integration_id}", [event], 0)
        except ConcurrencyError:
            response.status_code = 200
            return out(integration_of(event))
        return out(registry.integrations[integration_id], key)

    @router.get("/v1/integrations", response_model=list[IntegrationOut], tags=["integrations"])
    async def list_integrations(who: Admin) -> list[IntegrationOut]:
        return [
            out(senders.default),
            *(out(i) for i in sorted(registry.integrations.values(), key=lambda i: i.name)),
        ]

    @router.get("/v1/integrations/{integration_id}", response_model=IntegrationDetail, tags=["integrations"])
    async def get_integration(integration_id: str, who: Admin) -> IntegrationDetail:
        integration = senders.integration(integration_id)
        if integration is None:
            raise NotFound(f"no integration {integration_id}")
        stats = registry.stats.get(integration.id, Stats())
        failure = registry.failures.get(integration.id, Failure())
        counts = {
            "alerts": stats.alerts,
            "incidents_opened": stats.incidents_opened,
            "grouped": stats.grouped,
            "repeats": stats.repeats,
            "resolved": stats.resolved,
            "suppressed": stats.suppressed,
            "changes": stats.changes,
            "errors": failure.count,
        }
        return IntegrationDetail(
            **out(integration).model_dump(),
            last_received_at=stats.last_received_at,
            last_error=failure.last_error,
            last_error_at=failure.last_error_at,
            counts=counts,
        )

    @router.post("/v1/maintenance-windows", status_code=201, response_model=WindowOut, tags=["maintenance"])
    async def schedule_window(
        body: NewWindow,
        who: Responder,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> WindowOut:
        window_id = _derived_id(who.subject, idempotency_key)
        if window_id not in registry.windows:
            event = MaintenanceWindowScheduled(
                window_id=window_id,
                service=body.service,
                starts_at=body.starts_at,
                ends_at=body.ends_at,
                reason=body.reason,
                by=who.subject,
                occurred_at=intake.clock(),
            )
            with contextlib.suppress(ConcurrencyError):
                await intake.record(f"maintenance-{window_id}", [event], 0)
        w = registry.windows[window_id]
        return WindowOut(
            id=w.id, service=w.service, starts_at=w.starts_at, ends_at=w.ends_at, reason=w.reason
        )

    @router.get("/v1/maintenance-windows", response_model=list[WindowOut], tags=["maintenance"])
    async def list_windows(who: Viewer) -> list[WindowOut]:
        return [
            WindowOut(id=w.id, service=w.service, starts_at=w.starts_at, ends_at=w.ends_at, reason=w.reason)
            for w in intake.windows()
        ]

    @router.post("/v1/heartbeats/{name}", status_code=202, response_model=HeartbeatOut, tags=["heartbeats"])
    async def heartbeat(name: str, request: Request) -> HeartbeatOut:
        integration = await senders.of(request)
        if len(name) > 255 or "\x00" in name:
            raise BadPayload("name", "a heartbeat name is 1 to 255 characters, no NUL")
        raw = await request.body()
        try:
            beat = Beat.model_validate_json(raw) if raw.strip() else Beat()
        except ValidationError as e:
            raise invalid(e) from None
        known = registry.heartbeats.get(name)
        timeout = beat.timeout_seconds or (known.timeout_seconds if known and known.timeout_seconds else None)
        state = await intake.heartbeat(
            name,
            timeout_seconds=timeout or policy.heartbeat_timeout_seconds,
            service=beat.service
            or (known.service if known and known.service else integration.default_service),
            integration_id=integration.id,
        )
        return _heartbeat_out(state)

    @router.get("/v1/heartbeats", response_model=list[HeartbeatOut], tags=["heartbeats"])
    async def list_heartbeats(who: Viewer) -> list[HeartbeatOut]:
        return [
            _heartbeat_out(hb) for _, hb in sorted(registry.heartbeats.items()) if hb.last_beat is not None
        ]

    @router.get("/v1/heartbeats/{name}", response_model=HeartbeatOut, tags=["heartbeats"])
    async def get_heartbeat(name: str, who: Viewer) -> HeartbeatOut:
        state, version = await intake.beats.load(heartbeat_stream(name))
        if version == 0:
            raise NotFound(f"no heartbeat {name}")
        return _heartbeat_out(state)

    return router

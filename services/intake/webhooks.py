"""The alert endpoints, at fixed paths users configure their tools with (docs/integrations.md).

202 only after the alerts' events are durably appended. Bad input: 400 (not JSON) or 422 naming the
field; unknown key 401. Store down or overloaded: 503 + Retry-After here (Alertmanager, Grafana and
Datadog retry only 5xx), 429 on the PagerDuty-compatible `/v2/` paths (their clients retry 429)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.intake.domain import Alert, Decision
from services.intake.examples import AM_EXAMPLE, CE_EXAMPLE, DATADOG_EXAMPLE, PD_EXAMPLE, body_of
from services.intake.handlers import Intake
from services.intake.parsers import Context, Malformed, alertmanager, cloudevents, datadog, decode
from services.intake.parsers import pagerduty as pd
from services.intake.parsers.cloudevents import STRUCTURED
from services.intake.registry import Integration
from services.intake.senders import Senders, check_signature
from shared.errors import DomainError
from shared.events import AlertStatus, Severity
from shared.policy.intake import IntakePolicy
from shared.store import ConcurrencyError, StoreUnavailable

MAX_IN_FLIGHT = 5000
Action = Literal[
    "opened", "attached", "repeated", "resolved", "acknowledged", "suppressed", "duplicate", "recorded"
]


class Overloaded(StoreUnavailable):
    """Too many alerts waiting to be written: shed load, the sender retries."""


class CanonicalAlert(BaseModel):
    """Lynchpin's own alert format."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=1024)
    service: str = Field(min_length=1, max_length=255)
    severity: Severity
    status: AlertStatus = AlertStatus.FIRING
    dedup_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Same key, same alert; omitted: every post is a new alert",
    )
    group_key: str | None = Field(
        default=None, max_length=1024, description="Alerts with one group key join one open incident"
    )
    description: str = Field(default="", max_length=65536)
    labels: dict[str, str] = Field(default_factory=dict, max_length=128)
    starts_at: datetime | None = Field(default=None, description="When the sender saw it start")
    ends_at: datetime | None = Field(default=None, description="When the sender saw it end (resolved)")


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    incident_id: str
    dedup_key: str
    action: Action


class AlertOutcome(BaseModel):
    alert_key: str
    dedup_key: str
    incident_id: str
    action: Action


class AcceptedMany(BaseModel):
    status: Literal["accepted"] = "accepted"
    alerts: list[AlertOutcome]


def _action(decision: Decision) -> Action:
    outcome = decision.outcome
    allowed: tuple[Action, ...] = (
        "opened", "attached", "repeated", "resolved", "acknowledged", "suppressed", "duplicate", "recorded"
    )  # fmt: skip
    for a in allowed:
        if a == outcome:
            return a
    return "recorded"


def pd_reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def pd_invalid(*errors: str) -> JSONResponse:
    return pd_reply(
        400, {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    )


PD_UNRECOGNISED = {
    "status": "Unrecognized object",
    "message": "Event object format is unrecognized",
    "errors": ["JSON parse error"],
}
PD_THROTTLED = {
    "status": "throttle event",
    "message": "Requests for this service are arriving too quickly. Please retry later.",
}


def routes(intake: Intake, senders: Senders, policy: IntakePolicy) -> APIRouter:
    router = APIRouter(tags=["alerts"])

    async def accept(alerts: list[Alert]) -> list[Decision]:
        if intake.in_flight + len(alerts) > MAX_IN_FLIGHT:
            raise Overloaded(f"{intake.in_flight} alerts are waiting to be written")
        try:
            return list(await asyncio.gather(*(intake.receive(a) for a in alerts)))
        except ConcurrencyError as e:
            raise Overloaded(f"could not settle concurrent writers: {e}") from None

    async def failed(integration: Integration, error: DomainError) -> None:
        await intake.refused(integration.id, error.status, str(error))

    async def native(
        request: Request, source: str, parse: Callable[[Any, Context], list[Alert]], *, signed: bool = False
    ) -> AcceptedMany:
        integration = await senders.of(request)
        body = await request.body()
        try:
            if signed:
                check_signature(integration, request, body)
            alerts = parse(decode(body), Context(integration, policy, source))
        except DomainError as e:
            await failed(integration, e)
            raise
        decisions = await accept(alerts)
        return AcceptedMany(alerts=[_outcome(a, d) for a, d in zip(alerts, decisions, strict=True)])

    async def pd_sender(payload: Any) -> Integration | JSONResponse:
        try:
            key = pd.routing_key(payload)
        except DomainError as e:
            return pd_invalid(str(e))
        try:
            return await senders.by_key(key)
        except DomainError as e:
            return pd_reply(e.status, {"status": "unauthorized", "message": str(e), "errors": [str(e)]})

    @router.post(
        "/v1/alerts/alertmanager",
        status_code=202,
        response_model=AcceptedMany,
        summary="Prometheus Alertmanager webhook (version 4)",
        openapi_extra=body_of("An Alertmanager webhook notification", AM_EXAMPLE),
    )
    async def alertmanager_webhook(request: Request) -> AcceptedMany:
        return await native(request, "alertmanager", alertmanager.parse)

    @router.post(
        "/v1/alerts/grafana",
        status_code=202,
        response_model=AcceptedMany,
        summary="Grafana alerting webhook contact point (version 1); HMAC-signed when configured",
        openapi_extra=body_of(
            "A Grafana webhook notification", {**AM_EXAMPLE, "version": "1", "state": "alerting"}
        ),
    )
    async def grafana_webhook(request: Request) -> AcceptedMany:
        return await native(request, "grafana", alertmanager.parse, signed=True)

    @router.post(
        "/v1/alerts/datadog",
        status_code=202,
        response_model=AcceptedMany,
        summary="Datadog webhook, with the payload template from docs/integrations.md",
        openapi_extra=body_of("Our Datadog template (see docs/integrations.md), filled in", DATADOG_EXAMPLE),
    )
    async def datadog_webhook(request: Request) -> AcceptedMany:
        return await native(request, "datadog", lambda body, ctx: [datadog.parse(body, ctx)])

    @router.post(
        "/v1/alerts/cloudevents",
        status_code=202,
        response_model=AcceptedMany,
        summary="CloudEvents 1.0: structured, batch or binary mode",
        openapi_extra=body_of("A CloudEvent (or a JSON array of them in batch mode)", CE_EXAMPLE, STRUCTURED),
    )
    async def cloudevents_webhook(request: Request) -> AcceptedMany:
        integration = await senders.of(request)
        body = await request.body()
        ctx = Context(integration, policy, "cloudevents")
        try:
            alerts = [
                alert
                for prefix, attrs in cloudevents.events(body, request.headers)
                for alert in cloudevents.parse(prefix, attrs, ctx)
            ]
        except DomainError as e:
            await failed(integration, e)
            raise
        decisions = await accept(alerts)
        return AcceptedMany(alerts=[_outcome(a, d) for a, d in zip(alerts, decisions, strict=True)])

    @router.post(
        "/v1/alerts",
        status_code=202,
        response_model=Accepted,
        summary="Post an alert in Lynchpin's canonical JSON",
    )
    async def post_alert(body: CanonicalAlert, request: Request) -> Accepted:
        integration = await senders.of(request)
        ctx = Context(integration, policy, "canonical")
        alert = ctx.alert(
            dedup_key=body.dedup_key or uuid.uuid4().hex,
            title=body.title,
            service=ctx.service(body.service),
            severity=body.severity,
            status=body.status,
            raw=body.model_dump(mode="json", exclude_defaults=True),
            sender_group=body.group_key or "",
            description=body.description,
            labels=body.labels,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
        )
        [decision] = await accept([alert])
        return Accepted(incident_id=decision.incident_id, dedup_key=alert.dedup_key, action=_action(decision))

    @router.post(
        "/v2/enqueue",
        status_code=202,
        summary="PagerDuty Events API v2 drop-in: trigger, acknowledge, resolve",
        openapi_extra=body_of("A PagerDuty Events API v2 event", PD_EXAMPLE),
        responses={400: {}, 401: {}, 429: {}},
    )
    async def pagerduty_enqueue(request: Request) -> JSONResponse:
        try:
            payload = decode(await request.body())
        except Malformed:
            return pd_reply(400, PD_UNRECOGNISED)
        found = await pd_sender(payload)
        if isinstance(found, JSONResponse):
            return found
        integration = found
        try:
            alert = pd.parse(payload, Context(integration, policy, "pagerduty"))
        except DomainError as e:
            await failed(integration, e)
            return pd_invalid(str(e))
        try:
            await accept([alert])
        except StoreUnavailable:
            return pd_reply(429, PD_THROTTLED, {"Retry-After": "5"})
        return pd_reply(
            202, {"status": "success", "message": "Event processed", "dedup_key": alert.dedup_key}
        )

    @router.post(
        "/v2/change/enqueue",
        status_code=202,
        summary="PagerDuty change events: recorded on the timeline, they open nothing",
        openapi_extra=body_of(
            "A PagerDuty change event", {"routing_key": "lpk_...", "payload": {"summary": "Deployed v2"}}
        ),
        responses={400: {}, 401: {}, 429: {}},
    )
    async def pagerduty_change(request: Request) -> JSONResponse:
        try:
            payload = decode(await request.body())
        except Malformed:
            return pd_reply(400, PD_UNRECOGNISED)
        found = await pd_sender(payload)
        if isinstance(found, JSONResponse):
            return found
        integration = found
        try:
            change = pd.parse_change(payload, Context(integration, policy, "pagerduty"), now=intake.clock())
        except DomainError as e:
            await failed(integration, e)
            return pd_invalid(str(e))
        change_id = uuid.uuid4().hex
        try:
            await intake.record_change(change_id, change)
        except StoreUnavailable:
            return pd_reply(429, PD_THROTTLED, {"Retry-After": "5"})
        return pd_reply(202, {"status": "success", "message": "Change event processed", "id": change_id})

    return router


def _outcome(alert: Alert, decision: Decision) -> AlertOutcome:
    return AlertOutcome(
        alert_key=alert.key,
        dedup_key=alert.dedup_key,
        incident_id=decision.incident_id,
        action=_action(decision),
    )

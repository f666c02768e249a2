"""Comms' HTTP routes: the directory, templates preview, status updates, notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.comms import directory, domain
from services.comms.channels import DeliveryFailed, Outbound
from services.comms.delivery import NotificationIndex, comms_stream, notification_stream, progress
from services.comms.handlers import CommsHandlers
from shared.auth import Principal, Role
from shared.errors import DomainError, NotFound
from shared.events import (
    ChannelTarget,
    DistributionListRemoved,
    DistributionListSaved,
    Event,
    NotificationCoalesced,
    NotificationPlanned,
    StakeholderRemoved,
    StakeholderSaved,
    SubscriptionRemoved,
    SubscriptionSaved,
)
from shared.policy.comms import Audience, ListSpec, StakeholderSpec, SubscriptionSpec
from shared.store import Write
from shared.web import Viewer, authenticate

Line = Annotated[str, StringConstraints(max_length=4000)]
AudienceOrAll = Literal["responders", "end_users", "management", "all"]


def communicator(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Communications managers, incident managers and admins speak for the incident."""
    if principal.role in (Role.COMMUNICATIONS_MANAGER, Role.INCIDENT_MANAGER, Role.ADMIN):
        return principal
    raise HTTPException(
        403, f"this needs the communications or incident manager role; you are {principal.role.value}"
    )


Communicator = Annotated[Principal, Depends(communicator)]


class Invalid(DomainError):
    status = 422
    title = "Invalid request"


class UpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audience: AudienceOrAll = "all"
    text: Line = ""
    template: Literal["text", "tactical", "executive"] = "text"
    fields: dict[
        Literal["conditions", "actions", "needs", "current_status", "overview", "next_steps"], Line
    ] = Field(default_factory=dict)


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    incident_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    event: Annotated[str, StringConstraints(min_length=1, max_length=100)] = "PriorityAssigned"
    audience: Audience = Audience.RESPONDERS
    channel: Literal["email", "webhook", "slack", "teams", "log"] = "email"
    subject: Annotated[str, StringConstraints(max_length=2000)] | None = None
    body: Annotated[str, StringConstraints(max_length=20000)] | None = None
    data: dict[str, Line] = Field(default_factory=dict, description="the event's fields")
    fields: dict[str, Line] = Field(default_factory=dict, description="status update fields")


class RenderedOut(BaseModel):
    subject: str
    body: str


class NotificationOut(BaseModel):
    notification_id: str
    recipient: str
    channel: str
    audience: str
    subject: str
    cause_type: str
    stakeholder: str = ""
    status: str = "planned"
    attempts: int = 0
    error: str | None = None
    delivered_via: str | None = None
    fallback_channel: str | None = None


class CommsStateOut(BaseModel):
    incident_id: str
    priority: str | None
    major: str | None
    status: str
    roles: dict[str, str]
    cadence_seconds: float | None
    next_update_due: datetime | None
    notified: list[str]


def redact(address: str) -> str:
    """Webhook URLs often carry their secret in the path (Slack, Teams): show only the host."""
    parts = urlsplit(address)
    if parts.scheme in ("http", "https") and parts.hostname:
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/..."
    return address


def _stakeholder(s: directory.Stakeholder) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "audience": s.audience,
        "channels": [c.model_dump() for c in s.channels],
        "roles": list(s.roles),
    }


def _list(x: directory.DistributionList) -> dict[str, Any]:
    return {"id": x.id, "name": x.name, "members": list(x.members)}


def _subscription(s: directory.Subscription) -> dict[str, Any]:
    return {
        "id": s.id,
        "stakeholder": s.stakeholder_id,
        "list": s.list_id,
        "audience": s.audience,
        "services": list(s.services),
        "priorities": list(s.priorities),
        "major_only": s.major_only,
        "incident_id": s.incident_id,
    }


def routes(handlers: CommsHandlers, index: NotificationIndex, outbound: Outbound) -> APIRouter:
    router = APIRouter()
    store = handlers.store

    async def book() -> tuple[directory.Directory, int]:
        return await handlers.directory.load(directory.DIRECTORY_STREAM)

    async def record(event: Event, version: int) -> None:
        await store.commit([Write(directory.DIRECTORY_STREAM, [event], version)])

    # --- stakeholders ---------------------------------------------------------------------------

    @router.get("/v1/stakeholders", tags=["directory"])
    async def list_stakeholders(who: Viewer) -> list[dict[str, Any]]:
        d, _ = await book()
        return [_stakeholder(s) for s in sorted(d.stakeholders.values(), key=lambda s: s.id)]

    @router.get("/v1/stakeholders/{stakeholder_id}", tags=["directory"])
    async def get_stakeholder(stakeholder_id: str, who: Viewer) -> dict[str, Any]:
        d, _ = await book()
        if stakeholder_id not in d.stakeholders:
            raise NotFound(f"no stakeholder {stakeholder_id!r}")
        return _stakeholder(d.stakeholders[stakeholder_id])

    async def save_stakeholder(spec: StakeholderSpec, who: Principal, response: Response) -> dict[str, Any]:
        for c in spec.channels:
            if c.kind.value in ("webhook", "slack", "teams"):
                try:
                    outbound.check_url(c.address)
                except DeliveryFailed as e:
                    raise Invalid(f"channels: {e}") from None
        d, version = await book()
        event = StakeholderSaved(
            stakeholder_id=spec.id,
            name=spec.name or spec.id,
            audience=spec.audience.value,
            channels=[ChannelTarget(kind=c.kind.value, address=c.address) for c in spec.channels],
            roles=list(spec.roles),
            by=who.subject,
            occurred_at=handlers.clock(),
        )
        await record(event, version)
        response.status_code = 200 if spec.id in d.stakeholders else 201
        return _stakeholder(directory.evolve(d, event).stakeholders[spec.id])

    @router.post("/v1/stakeholders", tags=["directory"], status_code=201)
    async def create_stakeholder(
        spec: StakeholderSpec, who: Communicator, response: Response
    ) -> dict[str, Any]:
        d, _ = await book()
        if spec.id in d.stakeholders:
            raise HTTPException(
                409, f"stakeholder {spec.id!r} exists; PUT /v1/stakeholders/{spec.id} replaces it"
            )
        return await save_stakeholder(spec, who, response)

    @router.put("/v1/stakeholders/{stakeholder_id}", tags=["directory"])
    async def put_stakeholder(
        stakeholder_id: str, spec: StakeholderSpec, who: Communicator, response: Response
    ) -> dict[str, Any]:
        if spec.id != stakeholder_id:
            raise Invalid("id: must match the path")
        return await save_stakeholder(spec, who, response)

    @router.delete("/v1/stakeholders/{stakeholder_id}", tags=["directory"], status_code=204)
    async def delete_stakeholder(stakeholder_id: str, who: Communicator) -> Response:
        d, version = await book()
        if stakeholder_id not in d.stakeholders:
            raise NotFound(f"no stakeholder {stakeholder_id!r}")
        await record(
            StakeholderRemoved(stakeholder_id=stakeholder_id, by=who.subject, occurred_at=handlers.clock()),
            version,
        )
        return Response(status_code=204)

    # --- lists ----------------------------------------------------------------------------------

    @router.get("/v1/lists", tags=["directory"])
    async def list_lists(who: Viewer) -> list[dict[str, Any]]:
        d, _ = await book()
        return [_list(x) for x in sorted(d.lists.values(), key=lambda x: x.id)]

    @router.get("/v1/lists/{list_id}", tags=["directory"])
    async def get_list(list_id: str, who: Viewer) -> dict[str, Any]:
        d, _ = await book()
        if list_id not in d.lists:
            raise NotFound(f"no list {list_id!r}")
        return _list(d.lists[list_id])

    async def save_list(spec: ListSpec, who: Principal, response: Response) -> dict[str, Any]:
        d, version = await book()
        missing = [m for m in spec.members if m not in d.stakeholders]
        if missing:
            raise Invalid(f"members: unknown stakeholders {missing}")
        event = DistributionListSaved(
            list_id=spec.id,
            name=spec.name or spec.id,
            members=list(spec.members),
            by=who.subject,
            occurred_at=handlers.clock(),
        )
        await record(event, version)
        response.status_code = 200 if spec.id in d.lists else 201
        return _list(directory.evolve(d, event).lists[spec.id])

    @router.post("/v1/lists", tags=["directory"], status_code=201)
    async def create_list(spec: ListSpec, who: Communicator, response: Response) -> dict[str, Any]:
        d, _ = await book()
        if spec.id in d.lists:
            raise HTTPException(409, f"list {spec.id!r} exists; PUT /v1/lists/{spec.id} replaces it")
        return await save_list(spec, who, response)

    @router.put("/v1/lists/{list_id}", tags=["directory"])
    async def put_list(list_id: str, spec: ListSpec, who: Communicator, response: Response) -> dict[str, Any]:
        if spec.id != list_id:
            raise Invalid("id: must match the path")
        return await save_list(spec, who, response)

    @router.delete("/v1/lists/{list_id}", tags=["directory"], status_code=204)
    async def delete_list(list_id: str, who: Communicator) -> Response:
        d, version = await book()
        if list_id not in d.lists:
            raise NotFound(f"no list {list_id!r}")
        await record(
            DistributionListRemoved(list_id=list_id, by=who.subject, occurred_at=handlers.clock()), version
        )
        return Response(status_code=204)

    # --- subscriptions --------------------------------------------------------------------------

    @router.get("/v1/subscriptions", tags=["directory"])
    async def list_subscriptions(who: Viewer) -> list[dict[str, Any]]:
        d, _ = await book()
        return [_subscription(s) for s in sorted(d.subscriptions.values(), key=lambda s: s.id)]

    @router.post("/v1/subscriptions", tags=["directory"], status_code=201)
    async def create_subscription(
        spec: SubscriptionSpec, who: Communicator, response: Response
    ) -> dict[str, Any]:
        d, version = await book()
        if spec.stakeholder is not None and spec.stakeholder not in d.stakeholders:
            raise Invalid(f"stakeholder: no stakeholder {spec.stakeholder!r}")
        if spec.list_id is not None and spec.list_id not in d.lists:
            raise Invalid(f"list: no list {spec.list_id!r}")
        event = SubscriptionSaved(
            subscription_id=spec.id,
            stakeholder_id=spec.stakeholder,
            list_id=spec.list_id,
            audience=spec.audience.value if spec.audience else None,
            services=list(spec.services),
            priorities=list(spec.priorities),
            major_only=spec.major_only,
            incident_id=spec.incident_id,
            by=who.subject,
            occurred_at=handlers.clock(),
        )
        await record(event, version)
        response.status_code = 200 if spec.id in d.subscriptions else 201
        return _subscription(directory.evolve(d, event).subscriptions[spec.id])

    @router.delete("/v1/subscriptions/{subscription_id}", tags=["directory"], status_code=204)
    async def delete_subscription(subscription_id: str, who: Communicator) -> Response:
        d, version = await book()
        if subscription_id not in d.subscriptions:
            raise NotFound(f"no subscription {subscription_id!r}")
        await record(
            SubscriptionRemoved(
                subscription_id=subscription_id, by=who.subject, occurred_at=handlers.clock()
            ),
            version,
        )
        return Response(status_code=204)

    # --- templates, updates, notifications ------------------------------------------------------

    @router.post("/v1/templates/preview", tags=["templates"], response_model=RenderedOut)
    async def preview(body: PreviewIn, who: Viewer) -> RenderedOut:
        state, _ = await handlers.incidents.load(comms_stream(body.incident_id))
        if not state.id:
            raise NotFound(f"comms knows no incident {body.incident_id!r}")
        context = {
            "incident": state.context(),
            "event": dict(body.data),
            "update": dict(body.fields),
            "recipient": {"id": who.subject, "name": who.subject, "audience": body.audience.value},
        }
        r = handlers.templates.render(
            body.event, body.audience.value, body.channel, context, subject=body.subject, body=body.body
        )
        return RenderedOut(subject=r.subject, body=r.body)

    @router.post("/v1/incidents/{incident_id}/updates", tags=["updates"], status_code=201)
    async def publish_update(
        incident_id: str,
        body: UpdateIn,
        who: Communicator,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:
        cmd = domain.UpdateCommand(
            body.audience, body.text, body.template, {k: v for k, v in body.fields.items()}
        )
        event = await handlers.publish_update(
            incident_id, cmd, by=who.subject, idempotency_key=idempotency_key
        )
        return event.model_dump(mode="json")

    @router.get("/v1/incidents/{incident_id}/comms", tags=["updates"], response_model=CommsStateOut)
    async def comms_state(incident_id: str, who: Viewer) -> CommsStateOut:
        state, _ = await handlers.incidents.load(comms_stream(incident_id))
        if not state.id:
            raise NotFound(f"comms knows no incident {incident_id!r}")
        return CommsStateOut(
            incident_id=incident_id,
            priority=state.priority,
            major=state.major,
            status=state.status,
            roles=dict(state.roles),
            cadence_seconds=state.cadence_every,
            next_update_due=state.next_due_at,
            notified=sorted(a.stakeholder for a in state.notified.values()),
        )

    @router.get(
        "/v1/incidents/{incident_id}/notifications",
        response_model=list[NotificationOut],
        tags=["notifications"],
    )
    async def incident_notifications(incident_id: str, who: Viewer) -> list[NotificationOut]:
        out = []
        for env in await store.read(comms_stream(incident_id)):
            e = env.event
            if not isinstance(e, NotificationPlanned | NotificationCoalesced):
                continue
            item = NotificationOut(
                notification_id=e.notification_id,
                recipient=redact(e.recipient),
                channel=e.channel,
                audience=e.audience,
                subject=e.subject,
                cause_type=e.cause_type,
                stakeholder=e.stakeholder,
                fallback_channel=e.fallback_channel,
            )
            if isinstance(e, NotificationCoalesced):
                item.status = "coalesced"
            else:
                history = [h.event for h in await store.read(notification_stream(e.notification_id))]
                p = progress(history, attempts=handlers.policy.retry.attempts)
                item.attempts, item.error = p.attempts, p.last_error
                item.status = (
                    "sent" if p.sent else "failed" if p.dead else "retrying" if history else "planned"
                )
                if p.sent:
                    item.delivered_via = next((getattr(h, "channel", None) for h in reversed(history)), None)
            out.append(item)
        return out

    @router.get("/v1/notifications", response_model=list[NotificationOut], tags=["notifications"])
    async def notifications(
        who: Viewer,
        status: Annotated[
            Literal["planned", "retrying", "sent", "failed", "coalesced"] | None, Query()
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[NotificationOut]:
        items = [s for s in index.items.values() if status is None or s.status == status]
        return [
            NotificationOut(
                notification_id=s.notification_id,
                recipient=redact(s.recipient),
                channel=s.channel,
                audience=s.audience,
                subject=s.subject,
                cause_type=s.cause_type,
                stakeholder=s.stakeholder,
                status=s.status,
                attempts=s.attempts,
                error=s.error,
                delivered_via=s.delivered_via,
            )
            for s in items[-limit:]
        ]

    @router.post("/v1/notifications/{notification_id}/retry", tags=["notifications"], status_code=202)
    async def retry(notification_id: str, who: Communicator) -> dict[str, Any]:
        event = await handlers.retry(notification_id, by=who.subject, attempts=handlers.policy.retry.attempts)
        return event.model_dump(mode="json")

    return router

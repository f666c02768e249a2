"""Comms' HTTP API."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from services.comms import domain
from services.comms.channels import Channel, LogChannel, WebhookChannel
from services.comms.handlers import CommsHandlers, Delivery, comms_stream
from shared.bus.base import Bus
from shared.clock import Clock, system_clock
from shared.events import NotificationPlanned
from shared.service import Wiring, build_app
from shared.settings import Settings
from shared.store import EventStore, open_store
from shared.web import Viewer


class NotificationOut(BaseModel):
    notification_id: str
    recipient: str
    channel: str
    audience: str
    subject: str
    cause_type: str


def routes(handlers: CommsHandlers) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/v1/incidents/{incident_id}/notifications",
        response_model=list[NotificationOut],
        tags=["notifications"],
    )
    async def notifications(incident_id: str, who: Viewer) -> list[NotificationOut]:
        history = await handlers.store.read(comms_stream(incident_id))
        return [
            NotificationOut(
                notification_id=e.notification_id,
                recipient=e.recipient,
                channel=e.channel,
                audience=e.audience,
                subject=e.subject,
                cause_type=e.cause_type,
            )
            for e in (env.event for env in history)
            if isinstance(e, NotificationPlanned)
        ]

    return router


def responders_from(settings: Settings) -> list[domain.Recipient]:
    recipients = [domain.Recipient("responders", "log")]
    if settings.webhook_url:
        recipients.append(domain.Recipient(settings.webhook_url, "webhook"))
    return recipients


def create_app(
    settings: Settings, *, store: EventStore | None = None, bus: Bus | None = None, clock: Clock | None = None
) -> FastAPI:
    if store is None:
        store = open_store(settings.store_url_for("comms"), source="comms")
    if bus is None:
        from shared.bus import open_bus

        bus = open_bus(settings, sources=["intake", "triage"])
    if clock is None:
        clock = system_clock
    handlers = CommsHandlers(store, responders_from(settings))
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
    channels: dict[str, Channel] = {
        "log": LogChannel(),
        "webhook": WebhookChannel(client, settings.webhook_secret),
    }
    delivery = Delivery(store, channels, clock)
    wiring = Wiring(
        name="comms",
        settings=settings,
        store=store,
        clock=clock,
        bus=bus,
        sources=["intake", "triage"],
        handler=handlers.on_event,
        workers={"delivery": delivery.run},
        resources=[client],
    )
    app = build_app(
        wiring,
        title="Lynchpin comms",
        description="Stakeholder notifications over email, webhooks and chat-style webhooks.",
    )
    app.include_router(routes(handlers))
    return app

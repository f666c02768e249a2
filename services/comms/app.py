"""Comms' app: explicit wiring of the directory, templates, channels, delivery and timers."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from fastapi import FastAPI

from services.comms import directory
from services.comms.api import routes
from services.comms.channels import (
    Channel,
    EmailChannel,
    HttpClient,
    LogChannel,
    Outbound,
    SlackChannel,
    TeamsChannel,
    WebhookChannel,
)
from services.comms.delivery import Delivery, NotificationIndex
from services.comms.domain import inputs
from services.comms.handlers import CommsHandlers
from services.comms.templates import Templates
from services.comms.timers import Timers
from shared.bus.base import Bus
from shared.clock import Clock, system_clock
from shared.events import ChannelTarget
from shared.policy import Policy, load_policy
from shared.service import Wiring, build_app
from shared.settings import Settings
from shared.store import EventStore, open_store

SOURCES = ["intake", "triage"]


def builtin_recipients(settings: Settings) -> list[tuple[directory.Stakeholder, directory.Subscription]]:
    """The responders' log, and `Settings.webhook_url` when set: responders for every incident."""
    out = [
        (
            directory.Stakeholder(
                "responders", "responders", "responders", (ChannelTarget(kind="log", address="responders"),)
            ),
            directory.Subscription("responders", stakeholder_id="responders", audience="responders"),
        )
    ]
    if settings.webhook_url:
        out.append(
            (
                directory.Stakeholder(
                    "responders-webhook",
                    "responders webhook",
                    "responders",
                    (ChannelTarget(kind="webhook", address=settings.webhook_url),),
                ),
                directory.Subscription(
                    "responders-webhook", stakeholder_id="responders-webhook", audience="responders"
                ),
            )
        )
    return out


def create_app(
    settings: Settings,
    *,
    store: EventStore | None = None,
    bus: Bus | None = None,
    clock: Clock | None = None,
    policy: Policy | None = None,
) -> FastAPI:
    if policy is None:
        policy = load_policy(settings.policy)
    if store is None:
        store = open_store(settings.store_url_for("comms"), source="comms")
    if bus is None:
        from shared.bus import open_bus

        bus = open_bus(settings, sources=SOURCES)
    if clock is None:
        clock = system_clock
    comms = policy.comms
    templates = Templates(comms.templates)
    handlers = CommsHandlers(store, comms, clock, builtin_recipients(settings), templates)
    operator_hosts = [h for h in [urlsplit(settings.webhook_url or "").hostname] if h]
    outbound = Outbound(comms.outbound, operator_hosts)
    client = HttpClient(comms.outbound.timeout.total_seconds(), outbound)
    password = os.environ.get(comms.email.password_env) if comms.email.password_env else None
    channels: dict[str, Channel] = {
        "log": LogChannel(),
        "webhook": WebhookChannel(client, outbound, settings.webhook_secret),
        "slack": SlackChannel(client, outbound),
        "teams": TeamsChannel(client, outbound),
        "email": EmailChannel(comms.email, password),
    }
    delivery = Delivery(store, channels, clock, comms.retry)
    index = NotificationIndex(comms.retry.attempts)
    handlers.log.add(index.fold)
    timers = Timers(
        store, clock, comms, handlers.fire_overdue, handlers.flush_digest, handlers.log, handlers.recipients
    )
    wiring = Wiring(
        name="comms",
        settings=settings,
        store=store,
        clock=clock,
        bus=bus,
        sources=SOURCES,
        handler=handlers.on_event,
        inputs=inputs(comms),
        workers={"delivery": delivery.run, "views": handlers.log.run, "timers": timers.run},
        exclusive=frozenset({"delivery"}),  # one sender per notification across instances
        resources=[client],
    )
    app = build_app(
        wiring,
        title="Lynchpin comms",
        description="Stakeholder notifications over email, webhooks and chat-style webhooks; status updates "
        "and their cadence.",
    )
    app.state.handlers = handlers
    app.state.timers = timers
    app.include_router(routes(handlers, index, outbound))
    return app

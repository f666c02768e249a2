"""Triage's wiring: policy, store, bus, clock, the timer worker and the routers."""

from __future__ import annotations

from fastapi import FastAPI

from services.triage.handlers import INPUTS, TriageHandlers
from services.triage.incidents_api import routes
from services.triage.oncall_api import oncall_routes
from services.triage.paging import paging_for
from services.triage.problems_api import problem_routes
from services.triage.timers import Timers, TriageIndex
from shared.bus.base import Bus
from shared.clock import Clock, system_clock
from shared.logviews import LogViews
from shared.policy import Policy, load_policy
from shared.service import Wiring, build_app
from shared.settings import Settings
from shared.store import EventStore, open_store


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
        store = open_store(settings.store_url_for("triage"), source="triage")
    if bus is None:
        from shared.bus import open_bus

        bus = open_bus(settings, sources=["intake"])
    if clock is None:
        clock = system_clock
    handlers = TriageHandlers(store, policy.triage, clock)
    log = LogViews(store)  # triage's own log, read once for the timers' index and paging
    index = TriageIndex(handlers, log)
    timers = Timers(index)
    paging = paging_for(settings, policy.oncall, handlers, clock, log)  # on-call: escalations and pages
    wiring = Wiring(
        name="triage",
        settings=settings,
        store=store,
        clock=clock,
        bus=bus,
        sources=["intake"],
        handler=paging.on_event,  # triage's handler, then escalations start and stop
        inputs=INPUTS,
        workers={"timers": timers.run, "paging": paging.run},
    )
    app = build_app(
        wiring,
        title="Lynchpin triage",
        description="Priority, routing, SLA clocks, major incidents, roles and problems.",
    )
    app.state.timers = timers
    app.state.paging = paging
    app.include_router(routes(handlers, index, policy))
    app.include_router(problem_routes(handlers, index))
    app.include_router(oncall_routes(paging))
    return app

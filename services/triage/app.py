"""Triage's HTTP API."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from services.triage.handlers import TriageHandlers, triage_stream
from shared.bus.base import Bus
from shared.clock import Clock, system_clock
from shared.service import Wiring, build_app
from shared.settings import Settings
from shared.store import EventStore, open_store
from shared.web import Viewer


class TriageOut(BaseModel):
    incident_id: str
    priority: str | None
    version: int


def routes(handlers: TriageHandlers) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/incidents/{incident_id}/triage", response_model=TriageOut, tags=["triage"])
    async def get_triage(incident_id: str, who: Viewer) -> TriageOut:
        state, version = await handlers.triages.load(triage_stream(incident_id))
        return TriageOut(incident_id=incident_id, priority=state.priority, version=version)

    return router


def create_app(
    settings: Settings, *, store: EventStore | None = None, bus: Bus | None = None, clock: Clock | None = None
) -> FastAPI:
    if store is None:
        store = open_store(settings.store_url_for("triage"), source="triage")
    if bus is None:
        from shared.bus import open_bus

        bus = open_bus(settings, sources=["intake"])
    if clock is None:
        clock = system_clock
    handlers = TriageHandlers(store)
    wiring = Wiring(
        name="triage",
        settings=settings,
        store=store,
        clock=clock,
        bus=bus,
        sources=["intake"],
        handler=handlers.on_event,
    )
    app = build_app(
        wiring,
        title="Lynchpin triage",
        description="Priority, routing, SLA clocks, major incidents, roles and problems.",
    )
    app.include_router(routes(handlers))
    return app

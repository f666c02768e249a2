"""Acknowledge from a page: `/v1/ack/{token}`, no login (the signed token is the credential).

`GET` shows what the link acknowledges and a button; `POST` acknowledges (`IncidentAcknowledged`
with `by` = the paged person). GET changes nothing, so mail scanners that open links cannot
acknowledge on someone's behalf. A link works once: an acknowledgement recorded since it was issued
spends it, and a second use answers 409 saying who acknowledged and when. A forged link is 401,
an expired one 410.
"""

from __future__ import annotations

import html
from datetime import datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from services.intake import lifecycle
from services.intake.domain import Status
from services.intake.handlers import Intake, incident_stream
from shared.acklinks import AckClaim, AckLinkError, verify_ack
from shared.auth import Credentials
from shared.clock import Clock
from shared.errors import Conflict, NotFound
from shared.events import IncidentAcknowledged


class AlreadyUsed(Conflict):
    title = "Acknowledge link already used"


def ack_routes(intake: Intake, credentials: Credentials, clock: Clock) -> APIRouter:
    router = APIRouter(tags=["acknowledge links"])

    def claim_of(token: str) -> AckClaim:
        try:
            return verify_ack(credentials.secret, token, now=clock())
        except AckLinkError as e:
            raise HTTPException(e.status, str(e)) from None

    async def spent_by(claim: AckClaim) -> IncidentAcknowledged | None:
        for env in await intake.store.read(incident_stream(claim.incident_id)):
            if isinstance(env.event, IncidentAcknowledged) and env.event.occurred_at >= claim.issued_at:
                return env.event
        return None

    def used(claim: AckClaim, ack: IncidentAcknowledged) -> str:
        when = ack.occurred_at.isoformat()
        if ack.by == claim.person:
            return (
                f"this link was already used: incident {claim.incident_id} acknowledged by {ack.by} at {when}"
            )
        return (
            f"incident {claim.incident_id} was already acknowledged by {ack.by} at {when}; this link is spent"
        )

    @router.get("/v1/ack/{token}", summary="What an acknowledge link acknowledges (changes nothing)")
    async def show(token: str, request: Request) -> Response:
        claim = claim_of(token)
        state, _ = await intake.load(claim.incident_id)
        if not state.exists:
            raise NotFound(f"no incident {claim.incident_id}")
        ack = await spent_by(claim)
        body = {
            "incident_id": claim.incident_id,
            "title": state.title,
            "service": state.service,
            "status": str(state.status),
            "person": claim.person,
            "expires_at": claim.expires_at.isoformat(),
            "usable": ack is None and state.status is Status.OPEN,
            "detail": used(claim, ack) if ack is not None else "POST to this URL to acknowledge",
        }
        if "text/html" not in request.headers.get("accept", ""):
            return JSONResponse(body)
        return HTMLResponse(_page(body, str(request.url.path)))

    @router.post("/v1/ack/{token}", summary="Acknowledge the incident, once")
    async def acknowledge(token: str) -> dict[str, str]:
        claim = claim_of(token)
        ack = await spent_by(claim)
        if ack is not None:
            raise AlreadyUsed(used(claim, ack))
        now: datetime = clock()
        await intake.change(
            claim.incident_id, lambda s: lifecycle.acknowledge(s, by=claim.person, now=now), None
        )
        return {
            "incident_id": claim.incident_id,
            "status": "acknowledged",
            "by": claim.person,
            "at": now.isoformat(),
        }

    return router


def _page(body: dict[str, object], action: str) -> str:
    e = {k: html.escape(str(v)) for k, v in body.items()}
    button = (
        f'<form method="post" action="{html.escape(action)}"><button>Acknowledge</button></form>'
        if body["usable"]
        else f"<p>{e['detail']}</p>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Acknowledge incident</title></head><body>"
        f"<h1>{e['title']}</h1><p>Incident {e['incident_id']} on {e['service']} is {e['status']}.</p>"
        f"<p>Paged: {e['person']}. This link works until {e['expires_at']}.</p>{button}</body></html>"
    )

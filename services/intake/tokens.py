"""Bearer tokens for people and systems: issued by intake, honoured by every service.

A token is signed (shared.auth) with the secret every service holds, so verifying it needs no call
to intake. Intake records TokenIssued and TokenRevoked on its `tokens` stream; the other services
learn revocations from intake's log (shared.service) and refuse a revoked token from then on.
The token itself is shown once and never stored.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import Credentials, Role, sign_token
from shared.clock import Clock
from shared.errors import NotFound
from shared.events import Event, TokenIssued, TokenRevoked
from shared.store import EventStore, Write
from shared.web import Admin

STREAM = "tokens"


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=255, description="Who or what holds the token")
    role: Role = Field(description="What the holder may do; see docs/security.md")
    expires_in_days: int | None = Field(default=90, ge=1, le=3650, description="None: never expires")


class TokenOut(BaseModel):
    token_id: str
    subject: str
    role: str
    expires_at: str | None
    revoked: bool


class IssuedToken(TokenOut):
    token: str = Field(description="Shown once: store it now")


def tokens_router(store: EventStore, credentials: Credentials, clock: Clock) -> APIRouter:
    router = APIRouter(tags=["tokens"])

    async def history() -> dict[str, dict[str, Any]]:
        tokens: dict[str, dict[str, Any]] = {}
        for env in await store.read(STREAM):
            match env.event:
                case TokenIssued() as issued:
                    tokens[issued.token_id] = {
                        "token_id": issued.token_id,
                        "subject": issued.subject,
                        "role": issued.role,
                        "expires_at": issued.expires_at.isoformat() if issued.expires_at else None,
                        "revoked": False,
                    }
                case TokenRevoked(token_id=token_id) if token_id in tokens:
                    tokens[token_id]["revoked"] = True
        return tokens

    @router.post("/v1/tokens", status_code=201, response_model=IssuedToken, summary="Issue a bearer token")
    async def issue(body: NewToken, who: Admin) -> IssuedToken:
        now = clock()
        token_id = uuid.uuid4().hex
        expires = now + timedelta(days=body.expires_in_days) if body.expires_in_days is not None else None
        issued: Event = TokenIssued(
            token_id=token_id,
            subject=body.subject,
            role=body.role.value,
            expires_at=expires,
            by=who.subject,
            occurred_at=now,
        )
        await store.commit([Write(STREAM, [issued], None)])
        token = sign_token(credentials.secret, body.subject, body.role, expires=expires, token_id=token_id)
        return IssuedToken(
            token_id=token_id,
            subject=body.subject,
            role=body.role.value,
            expires_at=expires.isoformat() if expires else None,
            revoked=False,
            token=token,
        )

    @router.get("/v1/tokens", response_model=list[TokenOut], summary="Issued tokens (never the secrets)")
    async def list_tokens(who: Admin) -> list[dict[str, Any]]:
        return list((await history()).values())

    @router.delete("/v1/tokens/{token_id}", status_code=204, summary="Revoke a token, in every service")
    async def revoke(token_id: str, who: Admin) -> Response:
        known = await history()
        if token_id not in known:
            raise NotFound(f"no token {token_id}")
        if not known[token_id]["revoked"]:
            revoked: Event = TokenRevoked(token_id=token_id, by=who.subject, occurred_at=clock())
            await store.commit([Write(STREAM, [revoked], None)])
        credentials.revoked.add(token_id)
        return Response(status_code=204)

    return router

"""Events about credentials, recorded by intake (which issues tokens) and honoured by every service."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared.events.base import Event


class TokenIssued(Event):
    """A signed bearer token was issued; the token itself is never stored, only its id."""

    type: Literal["TokenIssued"] = "TokenIssued"
    token_id: str
    subject: str
    role: str
    expires_at: datetime | None = None
    by: str


class TokenRevoked(Event):
    """Every service refuses the token from now on."""

    type: Literal["TokenRevoked"] = "TokenRevoked"
    token_id: str
    by: str
    reason: str = ""


EVENTS: tuple[type[Event], ...] = (TokenIssued, TokenRevoked)

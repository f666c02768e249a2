"""Acknowledge links: a page carries a signed, expiring token that acknowledges one incident as
one person, without logging in.

`ack1.<base64url payload>.<base64url HMAC-SHA256>`, signed with the secret every service holds
(shared.auth). The MAC covers the prefix as well as the payload, so an acknowledge token is never
accepted as a bearer token, nor a bearer token as an acknowledge token. Single use is enforced by
intake: the token's `iat` is when it was issued, and an acknowledgement recorded since then
spends it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

PREFIX = "ack1"


class AckLinkError(Exception):
    status = 401
    title = "Invalid acknowledge link"


class AckLinkExpired(AckLinkError):
    status = 410
    title = "Acknowledge link expired"


@dataclass(frozen=True, slots=True)
class AckClaim:
    incident_id: str
    person: str
    issued_at: datetime
    expires_at: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, body: str) -> bytes:
    return hmac.new(secret.encode(), f"{PREFIX}.{body}".encode(), hashlib.sha256).digest()


def sign_ack(secret: str, claim: AckClaim) -> str:
    payload = {
        "inc": claim.incident_id,
        "sub": claim.person,
        "iat": claim.issued_at.timestamp(),
        "exp": claim.expires_at.timestamp(),
    }
    body = _b64(orjson.dumps(payload))
    return f"{PREFIX}.{body}.{_b64(_mac(secret, body))}"


def verify_ack(secret: str, token: str, *, now: datetime) -> AckClaim:
    """The claim, or AckLinkError (forged, malformed) / AckLinkExpired."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise AckLinkError("this is not an acknowledge link")
    try:
        valid = hmac.compare_digest(_mac(secret, parts[1]), _unb64(parts[2]))
        payload = orjson.loads(_unb64(parts[1])) if valid else None
        if payload is None:
            raise AckLinkError("the acknowledge link's signature does not match")
        claim = AckClaim(
            incident_id=str(payload["inc"]),
            person=str(payload["sub"]),
            issued_at=datetime.fromtimestamp(float(payload["iat"]), UTC),
            expires_at=datetime.fromtimestamp(float(payload["exp"]), UTC),
        )
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise AckLinkError("the acknowledge link is malformed") from None
    if now >= claim.expires_at:
        raise AckLinkExpired(f"the acknowledge link expired at {claim.expires_at.isoformat()}")
    return claim

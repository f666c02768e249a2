"""Credentials: roles, static tokens from settings, and signed tokens any service can verify.

A signed token is `lp1.<base64url payload>.<base64url HMAC-SHA256>`; every service holds the
same secret, so no service calls another to check a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import orjson


class Role(StrEnum):
    VIEWER = "viewer"
    RESPONDER = "responder"
    COMMUNICATIONS_MANAGER = "communications_manager"
    INCIDENT_MANAGER = "incident_manager"
    ADMIN = "admin"
    INTEGRATION = "integration"


RANK = {
    Role.VIEWER: 0,
    Role.RESPONDER: 1,
    Role.COMMUNICATIONS_MANAGER: 2,
    Role.INCIDENT_MANAGER: 2,
    Role.ADMIN: 3,
}


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    token_id: str | None = None

    def may(self, role: Role) -> bool:
        """Whether this principal holds `role` or one above it (admin holds every role)."""
        if self.role is Role.ADMIN:
            return True
        if self.role is role:
            return True
        return role in RANK and self.role in RANK and RANK[self.role] > RANK[role]


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(
    secret: str, subject: str, role: Role, *, expires: datetime | None = None, token_id: str | None = None
) -> str:
    """A bearer token any service can verify; `token_id` is what revocation names."""
    expiry = expires.timestamp() if expires else None
    payload = {"sub": subject, "role": role.value, "exp": expiry, "jti": token_id}
    body = _b64(orjson.dumps(payload))
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"lp1.{body}.{_b64(mac)}"


def verify_token(secret: str, token: str, *, now: datetime) -> Principal | None:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "lp1":
        return None
    expected = hmac.new(secret.encode(), parts[1].encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(parts[2])):
            return None
        payload = orjson.loads(_unb64(parts[1]))
        role = Role(payload["role"])
    except (ValueError, KeyError, orjson.JSONDecodeError):
        return None
    exp = payload.get("exp")
    if exp is not None and now.timestamp() >= float(exp):
        return None
    jti = payload.get("jti")
    return Principal(str(payload["sub"]), role, str(jti) if jti else None)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a service accepts: the operator's static admin token, integration keys, signed tokens."""

    secret: str
    admin_token_hash: str | None = None
    integration_key_hashes: frozenset[str] = frozenset()
    revoked: set[str] = field(default_factory=set)
    """Ids of revoked signed tokens. Each service fills it from intake's TokenRevoked events."""

    def authenticate(self, token: str, *, now: datetime) -> Principal | None:
        digest = hash_secret(token)
        if self.admin_token_hash is not None and hmac.compare_digest(digest, self.admin_token_hash):
            return Principal("admin", Role.ADMIN)
        if digest in self.integration_key_hashes:
            return Principal(f"integration:{digest[:8]}", Role.INTEGRATION)
        principal = verify_token(self.secret, token, now=now)
        if principal is not None and principal.token_id in self.revoked:
            return None
        return principal

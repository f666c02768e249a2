"""Who is posting: an integration key (stored hashed) as `Authorization: Bearer`, an `X-Lynchpin-Key`
header, a `key` query parameter or a PagerDuty `routing_key`; and Grafana's optional HMAC signature.

`LYNCHPIN_INTEGRATION_KEY`, operators' admin token and signed tokens with the integration role post
through the built-in `default` integration."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request

from services.intake.registry import DEFAULT_ID, Integration, Registry
from shared.auth import Credentials, Role, hash_secret
from shared.clock import Clock
from shared.errors import DomainError
from shared.web import bearer

GRAFANA_SIGNATURE_HEADERS = ("x-grafana-alert-signature", "x-grafana-alerting-signature")


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


def token_of(request: Request) -> str | None:
    return bearer(request) or request.headers.get("x-lynchpin-key") or request.query_params.get("key") or None


class Senders:
    def __init__(
        self,
        registry: Registry,
        credentials: Credentials,
        clock: Clock,
        default: Integration,
        refresh: Callable[[], Awaitable[None]],
    ) -> None:
        self.registry = registry
        self.credentials = credentials
        self.clock = clock
        self.default = default
        self.refresh = refresh

    def _find(self, token: str) -> Integration | None:
        found = self.registry.by_hash.get(hash_secret(token))
        if found is not None:
            return self.registry.integrations[found]
        principal = self.credentials.authenticate(token, now=self.clock())
        if principal is not None and principal.may(Role.INTEGRATION):
            return self.default
        return None

    async def by_key(self, token: str | None) -> Integration:
        if not token:
            raise Unauthorized(
                "an integration key is required: Authorization: Bearer <key>, X-Lynchpin-Key or ?key="
            )
        found = self._find(token)
        if found is None:
            # Created a moment ago on another instance, or this one is just starting: read the log.
            await self.refresh()
            found = self._find(token)
        if found is None:
            raise Unauthorized("unknown integration key")
        return found

    async def of(self, request: Request) -> Integration:
        return await self.by_key(token_of(request))

    def integration(self, integration_id: str) -> Integration | None:
        if integration_id == DEFAULT_ID:
            return self.default
        return self.registry.integrations.get(integration_id)


def check_signature(integration: Integration, request: Request, body: bytes) -> None:
    """Grafana's webhook HMAC: hex HMAC-SHA256 of the body, or of "<timestamp>:" + body when the
    integration names a timestamp header."""
    if integration.hmac_secret is None:
        return
    names = (
        (integration.signature_header.lower(),) if integration.signature_header else GRAFANA_SIGNATURE_HEADERS
    )
    given = next((request.headers[n] for n in names if n in request.headers), None)
    if given is None:
        raise Unauthorized(f"the signature header {names[0]} is missing")
    message = body
    if integration.timestamp_header:
        stamp = request.headers.get(integration.timestamp_header.lower())
        if stamp is None:
            raise Unauthorized(f"the timestamp header {integration.timestamp_header} is missing")
        message = stamp.encode() + b":" + body
    expected = hmac.new(integration.hmac_secret.encode(), message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.strip().lower().removeprefix("sha256=")):
        raise Unauthorized("the signature does not match the body")

"""The canonical alert route without the framework around it: the hottest path in intake.

`POST /v1/alerts` with a small body that arrived in one piece and passes validation and auth is
answered here, in front of FastAPI's routing, dependency solving and middleware, with the same
decision (`webhooks.canonical_alert`, `webhooks.accept_alerts`), the same 202 body, the same metrics
and log context, and 202 only once the alert is durably appended. Everything else goes to the app
unchanged: other paths, bodies in several chunks or over the limit, and any request that fails
validation or auth, which is replayed to the app (nothing was written) so that every error answer
is the one the documented route gives. A store failure after the write began is answered here with
the app's 503 problem, never retried: a write whose outcome is unknown must not be made twice.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.handlers import Intake
from services.intake.senders import Senders
from services.intake.webhooks import accept_alerts, accepted, action_of, canonical_alert
from shared.errors import DomainError
from shared.logging import service_var
from shared.policy.intake import IntakePolicy
from shared.store import StoreUnavailable
from shared.web import Metrics, problem

PATH = "/v1/alerts"


class CanonicalFastPath:
    def __init__(
        self,
        app: ASGIApp,
        *,
        intake: Intake,
        senders: Senders,
        policy: IntakePolicy,
        metrics: Metrics,
        limit: int,
        read_timeout: float,
    ) -> None:
        self.app = app
        self.intake = intake
        self.senders = senders
        self.policy = policy
        self.metrics = metrics
        self.limit = limit
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or not self._small(scope)
        ):
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.read_timeout):
                first = await receive()
        except TimeoutError:  # the app's BodyLimit answers a slow body (408)
            await self._replay(scope, None, receive, send)
            return
        if first["type"] != "http.request" or first.get("more_body", False):
            await self._replay(scope, first, receive, send)
            return
        start = time.perf_counter()
        bound = service_var.set(self.metrics.service)
        try:
            request = Request(scope, receive)
            try:
                alert = await canonical_alert(request, first.get("body", b""), self.senders, self.policy)
            except (RequestValidationError, DomainError):
                await self._replay(scope, first, receive, send)
                return
            response: Response
            try:
                [decision] = await accept_alerts(self.intake, [alert])
            except DomainError as e:  # as the app's handler answers it
                response = problem(e.status, e.title, str(e))
            except StoreUnavailable:
                response = problem(
                    503,
                    "Service unavailable",
                    "the event store is unavailable; retry later",
                    headers={"Retry-After": "5"},
                )
            else:
                response = accepted(decision.incident_id, alert.dedup_key, action_of(decision))
            await response(scope, receive, send)
            m = self.metrics
            m.requests.labels(m.service, PATH, str(response.status_code)).inc()
            m.latency.labels(m.service, PATH).observe(time.perf_counter() - start)
        finally:
            service_var.reset(bound)

    def _small(self, scope: Scope) -> bool:
        """A Content-Length within the limit: the body may be read in one go."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                return bool(value.isdigit()) and int(value) <= self.limit
        return False

    async def _replay(self, scope: Scope, first: Message | None, receive: Receive, send: Send) -> None:
        """Hand the request to the app as if nothing had been read."""
        pending = [first] if first is not None else []

        async def again() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, again, send)

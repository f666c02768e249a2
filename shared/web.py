"""Web helpers every service shares: problem+json errors, auth, health, metrics, body limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Credentials, Principal, Role
from shared.clock import Clock
from shared.errors import DomainError
from shared.logging import uvicorn_log_config
from shared.store import ConcurrencyError, StoreUnavailable

PROBLEM = "application/problem+json"


def problem(
    status: int, title: str, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc if p not in ("body",)) or "body"


def install_errors(app: FastAPI, *, overload_status: Callable[[Request], int] | None = None) -> None:
    """Map every error to RFC 9457 problem+json. StoreUnavailable is 503 + Retry-After (or the
    sender-specific status chosen by `overload_status`)."""

    async def validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"field": _field(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return problem(422, "Invalid request", f"{first['field']}: {first['message']}", errors=errors)

    async def http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail), headers=exc.headers)

    async def domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return problem(exc.status, exc.title, str(exc))

    async def conflict(request: Request, exc: Exception) -> Response:
        return problem(409, "Conflict", f"{exc}; reload and retry")

    async def unavailable(request: Request, exc: Exception) -> Response:
        status = overload_status(request) if overload_status is not None else 503
        return problem(
            status,
            "Service unavailable",
            "the event store is unavailable; retry later",
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(DomainError, domain)
    app.add_exception_handler(ConcurrencyError, conflict)
    app.add_exception_handler(StoreUnavailable, unavailable)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, before anyone parses them, and bodies that
    trickle in slower than one chunk per `read_timeout` seconds with 408 (slow clients hold no worker)."""

    def __init__(self, app: ASGIApp, limit: int, read_timeout: float = 10.0) -> None:
        self.app = app
        self.limit = limit
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            try:
                async with asyncio.timeout(self.read_timeout):  # no task per chunk, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body did not arrive within {self.read_timeout:g}s"
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, f"request body is over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, "Payload too large", f"request body is over {self.limit} bytes")
        await response(scope, receive, send)


class Metrics:
    """Per-app Prometheus registry: request counts and latency by route."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        self.requests = Counter(
            "lynchpin_http_requests", "HTTP requests", ["service", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "lynchpin_http_request_seconds",
            "HTTP request latency",
            ["service", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count and time one request; a route's labelled children are looked up once, not per request."""
        children = self._children.get((route, status))
        if children is None:
            children = (
                self.requests.labels(self.service, route, str(status)),
                self.latency.labels(self.service, route),
            )
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def middleware(self, app: FastAPI) -> None:
        app.add_middleware(MeasureRequests, metrics=self)


class MeasureRequests:
    """Count requests and time them by route template (a plain ASGI middleware: cheap per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(route, status, time.perf_counter() - start)


def install_health(app: FastAPI, metrics: Metrics, ready: Callable[[], Awaitable[None]]) -> None:
    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the store answers", responses={503: {}})
    async def readyz() -> Response:
        try:
            await ready()
        except StoreUnavailable as e:
            return problem(503, "Not ready", str(e), headers={"Retry-After": "5"})
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


# A browser's credential after it opened a page with `?key=` once (the dashboard moves the key there).
# Read only on GET and HEAD: a cookie is sent by the browser on its own, so it must not change anything.
KEY_COOKIE = "lynchpin_key"


def cookie_key(request: Request) -> str | None:
    return request.cookies.get(KEY_COOKIE) if request.method in ("GET", "HEAD") else None


async def authenticate(request: Request) -> Principal:
    """(async so that FastAPI runs it inline, not in its thread pool: it is on every request's path)"""
    credentials: Credentials = request.app.state.credentials
    clock: Clock = request.app.state.clock
    token = (
        bearer(request)
        or request.headers.get("x-lynchpin-key")
        or request.query_params.get("key")
        or cookie_key(request)
    )
    if not token:
        raise HTTPException(
            401, "credentials required: Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"}
        )
    principal = credentials.authenticate(token, now=clock())
    if principal is None:
        raise HTTPException(
            401, "unknown, revoked or expired credentials", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(role):
            raise HTTPException(
                403, f"this action needs the {role.value} role; you are {principal.role.value}"
            )
        return principal

    return check


Authenticated = Annotated[Principal, Depends(authenticate)]
Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Responder = Annotated[Principal, Depends(require(Role.RESPONDER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


KEEP_ALIVE_SECONDS = 75
"""How long an idle client connection stays open: longer than most clients keep one (httpx: 5 s), so
that the client, not the server, closes it. A request sent just as the server closes the connection
fails with a connection error, unread; with uvicorn's default of 5 s a busy event loop made that
race likely for senders that keep connections open."""


def server_options(fmt: Literal["text", "json"]) -> dict[str, Any]:
    """The uvicorn options every service is served with, embedded or on its own."""
    return {
        "log_level": "warning",
        "log_config": uvicorn_log_config(fmt),
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
    }

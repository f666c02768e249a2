"""Logs: plain text by default, or one JSON object per line (LYNCHPIN_LOG_FORMAT=json).

Each JSON line has `time`, `level`, `logger`, `message` and `service`, plus the context that is
known where the line was logged: the incident's `correlation_id` and `incident_id`, and the `event_id`
being handled. Context lives in contextvars, so it follows a request or a delivery through every
`await` without being passed around: `shared.consumer.deliver` binds the event it delivers, and a
request to `/v1/incidents/{id}/...` binds that incident.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

service_var: ContextVar[str | None] = ContextVar("lynchpin_service", default=None)
correlation_var: ContextVar[str | None] = ContextVar("lynchpin_correlation_id", default=None)
incident_var: ContextVar[str | None] = ContextVar("lynchpin_incident_id", default=None)
event_var: ContextVar[str | None] = ContextVar("lynchpin_event_id", default=None)

_CONTEXT: Mapping[str, ContextVar[str | None]] = {
    "correlation_id": correlation_var,
    "incident_id": incident_var,
    "event_id": event_var,
}

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged too.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


@contextmanager
def log_context(**values: str | None) -> Iterator[None]:
    """Bind correlation_id / incident_id / event_id for the lines logged inside the block."""
    tokens = [(_CONTEXT[name], _CONTEXT[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line. `service` is the service bound in the context (one process can run
    all four), else the process's own."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": service_var.get() or self.service,
        }
        for name, var in _CONTEXT.items():
            value = var.get()
            if value is not None:
                line[name] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def configure(service: str, *, level: str = "INFO", fmt: Literal["text", "json"] = "text") -> None:
    """Set up the root logger once for the process (called from `__main__` and `lynchpin up`)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def uvicorn_log_config(fmt: Literal["text", "json"]) -> dict[str, Any] | None:
    """What to pass as uvicorn's `log_config`: None in JSON mode, so that uvicorn's own loggers
    propagate to the root handler and come out as JSON too; uvicorn's default otherwise."""
    if fmt == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


_INCIDENT_PATH = re.compile(r"/incidents/([A-Za-z0-9_.:-]{1,128})(?:/|$)")


class LogContext:
    """ASGI middleware: bind the service, and the incident named in the path, for a request's logs."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = service_var.set(self.service)
        match = _INCIDENT_PATH.search(scope.get("path", ""))
        if match is None:
            try:
                await self.app(scope, receive, send)
            finally:
                service_var.reset(service)
            return
        # An incident's events carry its id as their correlation id unless a cause says otherwise.
        with log_context(incident_id=match.group(1), correlation_id=match.group(1)):
            try:
                await self.app(scope, receive, send)
            finally:
                service_var.reset(service)

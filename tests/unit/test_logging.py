"""JSON logs: one object per line, carrying the service and the incident's correlation id."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from shared.consumer import deliver
from shared.envelope import Envelope
from shared.events import IncidentAcknowledged
from shared.logging import JsonFormatter, LogContext, log_context, service_var, uvicorn_log_config
from shared.store import Write
from shared.store.memory import MemoryStore


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Capture the `lynchpin.test` logger's output as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("intake"))
    logger = logging.getLogger("lynchpin.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def parsed(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_time_level_logger_message_and_service(lines: io.StringIO) -> None:
    logging.getLogger("lynchpin.test").info("alert %s accepted", "disk-db-1")
    [line] = parsed(lines)
    assert line["level"] == "INFO"
    assert line["logger"] == "lynchpin.test"
    assert line["message"] == "alert disk-db-1 accepted"
    assert line["service"] == "intake"
    assert datetime.fromisoformat(str(line["time"])).tzinfo is not None
    assert "correlation_id" not in line


def test_the_bound_incident_and_correlation_id_are_on_every_line_inside_the_block(lines: io.StringIO) -> None:
    log = logging.getLogger("lynchpin.test")
    with log_context(correlation_id="inc-1", incident_id="inc-1"):
        log.warning("inside")
    log.warning("outside")
    inside, outside = parsed(lines)
    assert (inside["correlation_id"], inside["incident_id"]) == ("inc-1", "inc-1")
    assert "correlation_id" not in outside and "incident_id" not in outside


def test_the_service_bound_in_the_context_wins_over_the_process_default(lines: io.StringIO) -> None:
    token = service_var.set("triage")
    try:
        logging.getLogger("lynchpin.test").info("from triage's task")
    finally:
        service_var.reset(token)
    assert parsed(lines)[0]["service"] == "triage"


def test_extras_and_exceptions_are_fields_and_a_multiline_message_stays_on_one_line(
    lines: io.StringIO,
) -> None:
    log = logging.getLogger("lynchpin.test")
    try:
        raise ValueError("bad\ninput")
    except ValueError:
        log.exception("handler failed\nbadly", extra={"attempt": 3})
    text = lines.getvalue()
    assert text.count("\n") == 1
    [line] = parsed(lines)
    assert line["attempt"] == 3
    assert line["message"] == "handler failed\nbadly"
    assert "ValueError: bad" in str(line["exception"])


async def test_deliver_logs_a_failing_handler_with_the_event_s_correlation_id() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("triage"))
    consumer_log = logging.getLogger("lynchpin.consumer")
    consumer_log.addHandler(handler)
    event = IncidentAcknowledged(incident_id="inc-7", by="alice", occurred_at=datetime.now(UTC))
    env = Envelope(
        id="ev-1",
        stream="incident-inc-7",
        version=1,
        position=1,
        event=event,
        recorded_at=datetime.now(UTC),
        source="intake",
        correlation_id="corr-7",
    )
    calls = 0

    async def flaky(e: Envelope) -> Sequence[Write]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("transient")
        return []

    try:
        await deliver(env, consumer="triage", handler=flaky, store=MemoryStore(source="triage"))
    finally:
        consumer_log.removeHandler(handler)
    [line] = parsed(out)
    assert line["level"] == "WARNING"
    assert (line["correlation_id"], line["incident_id"], line["event_id"]) == ("corr-7", "inc-7", "ev-1")
    assert line["service"] == "triage"


async def test_a_request_about_an_incident_logs_its_id() -> None:
    app = FastAPI()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("lynchpin"))
    log = logging.getLogger("lynchpin.test.request")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    @app.get("/v1/incidents/{incident_id}/triage")
    async def triage(incident_id: str) -> dict[str, str]:
        log.info("reading")
        return {}

    @app.get("/v1/incidents")
    async def listing() -> dict[str, str]:
        log.info("listing")
        return {}

    app.add_middleware(LogContext, service="triage")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            await c.get("/v1/incidents/abc123/triage")
            await c.get("/v1/incidents")
    finally:
        log.removeHandler(handler)
    seen = parsed(out)
    assert seen[0]["incident_id"] == "abc123" and seen[0]["service"] == "triage"
    assert "incident_id" not in seen[1] and seen[1]["service"] == "triage"


def test_json_mode_hands_uvicorn_s_loggers_to_the_root_handler() -> None:
    assert uvicorn_log_config("json") is None
    assert uvicorn_log_config("text") is not None

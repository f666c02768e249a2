"""Arbitrary JSON at every intake endpoint, and the captured payloads with arbitrary JSON put
anywhere inside them: never a 5xx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.app import create_app
from shared.auth import Role
from shared.store.memory import MemoryStore
from tests.helpers import running
from tests.service.test_intake_support import KEY, bearer, fixture_json, token
from tests.service.test_intake_support import settings as intake_settings

T = TypeVar("T")

ENDPOINTS = [
    "/v1/alerts",
    "/v1/alerts/alertmanager",
    "/v1/alerts/grafana",
    "/v1/alerts/datadog",
    "/v1/alerts/cloudevents",
    "/v2/enqueue",
    "/v2/change/enqueue",
    "/v1/heartbeats/fuzz",
    "/v1/integrations",
    "/v1/maintenance-windows",
    "/v1/incidents",
    "/v1/incidents/fuzz/assign",
    "/v1/incidents/fuzz/notes",
    "/v1/incidents/fuzz/hold",
    "/v1/incidents/fuzz/reopen",
    "/v1/incidents/fuzz/resolve",
]
SAMPLES = {
    "/v1/alerts/alertmanager": fixture_json("alertmanager_webhook_02_firing_HighCPU.json"),
    "/v1/alerts/grafana": fixture_json("alertmanager_webhook_03_resolved_DiskFull.json"),
    "/v2/enqueue": fixture_json("pagerduty_py_01_trigger.json"),
    "/v2/change/enqueue": fixture_json("pagerduty_py_04_change_event.json"),
    "/v1/alerts/cloudevents": {
        "specversion": "1.0",
        "id": "1",
        "source": "s",
        "type": "com.example.alert",
        "data": {"title": "t", "status": "firing"},
    },
    "/v1/alerts/datadog": {
        "cycle_key": "c",
        "transition": "Triggered",
        "date": "1763800000000",
        "tags": "a:b",
    },
    "/v1/alerts": {"title": "t", "service": "s", "severity": "high", "dedup_key": "k"},
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(
        ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "firing", "resolved", "trigger", "\x00"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for n, v in enumerate(value):
            yield from paths(v, (*prefix, n))


def put(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = put(copy[path[0]], path[1:], new)
    return copy


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    path = draw(st.sampled_from(sorted(SAMPLES)))
    sample = SAMPLES[path]
    where = draw(st.sampled_from(list(paths(sample))))
    return path, put(sample, where, draw(json_values))


class Loop:
    """One event loop in a thread that runs intake for the whole property test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=30)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[Loop, httpx.AsyncClient]]:
    loop = Loop()
    app = create_app(intake_settings(), store=MemoryStore(source="intake"))
    ready: asyncio.Future[httpx.AsyncClient] = loop.loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        async with running({"intake": app}, KEY) as clients:
            ready.set_result(clients["intake"])
            await stop.wait()

    task = asyncio.run_coroutine_threadsafe(serve(), loop.loop)
    yield loop, loop.run(_wait(ready))
    loop.loop.call_soon_threadsafe(stop.set)
    task.result(timeout=30)
    loop.close()


async def _wait(future: asyncio.Future[T]) -> T:
    return await future


HEADERS = [
    {},
    {"Content-Type": "application/cloudevents+json"},
    {"Content-Type": "application/cloudevents-batch+json"},
    {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "x",
        "ce-source": "y",
        "ce-type": "z",
    },
]


def post(
    client: tuple[Loop, httpx.AsyncClient], path: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    loop, http = client
    if path.startswith(("/v1/integrations", "/v1/incidents", "/v1/maintenance-windows")):
        headers = {**headers, **bearer(token(Role.ADMIN, "fuzz"))}
    return loop.run(http.post(path, content=body, headers=headers))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ENDPOINTS), body=json_values, headers=st.sampled_from(HEADERS))
def test_arbitrary_json_never_gets_a_5xx(
    client: tuple[Loop, httpx.AsyncClient], path: str, body: Any, headers: dict[str, str]
) -> None:
    r = post(client, path, orjson.dumps(body), headers)
    assert r.status_code < 500, r.text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mutated(), headers=st.sampled_from(HEADERS))
def test_real_payloads_with_arbitrary_json_anywhere_never_get_a_5xx(
    client: tuple[Loop, httpx.AsyncClient], case: tuple[str, Any], headers: dict[str, str]
) -> None:
    path, body = case
    r = post(client, path, orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), headers)
    assert r.status_code < 500, r.text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ENDPOINTS), body=st.binary(max_size=200))
def test_arbitrary_bytes_never_get_a_5xx(
    client: tuple[Loop, httpx.AsyncClient], path: str, body: bytes
) -> None:
    assert post(client, path, body, {}).status_code < 500

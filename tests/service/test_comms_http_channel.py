"""The webhook channel against a real HTTP server: what it sends, and how each way a receiver can fail
becomes a delivery failure, permanent (go to the fallback) or not (retry)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services.comms.channels import DeliveryFailed, HttpClient, Message, Outbound, WebhookChannel
from shared.policy.comms import OutboundPolicy
from tests.receivers import served

SECRET = "s" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, list[Request], list[bytes]]]:
    """A real server: /ok answers 200, /gone 410, /busy 503, /moved redirects to /ok, /slow takes 2 s."""
    seen: list[Request] = []
    bodies: list[bytes] = []

    async def ok(request: Request) -> Response:
        seen.append(request)
        bodies.append(await request.body())
        return Response(status_code=200)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(2)
        return Response(status_code=200)

    app = Starlette(
        routes=[
            Route("/ok", ok, methods=["POST"]),
            Route("/gone", lambda r: Response(status_code=410), methods=["POST"]),
            Route("/busy", lambda r: Response(status_code=503), methods=["POST"]),
            Route("/moved", lambda r: RedirectResponse("/ok", status_code=307), methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
        ]
    )
    async with served(app) as base:
        yield base, seen, bodies


def message(address: str) -> Message:
    return Message(
        "n-1", "i-1", "IncidentOpened", "responders", "P1: checkout down", "Look now.", "webhook", address
    )


async def send(address: str, *, timeout: float = 5.0) -> None:
    outbound = Outbound(OutboundPolicy(), ["127.0.0.1"])
    async with HttpClient(timeout, outbound) as client:
        await WebhookChannel(client, outbound, SECRET).send(message(address))


async def test_a_delivered_webhook_carries_the_message_signed_with_its_idempotency_key() -> None:
    async with receiver() as (base, seen, bodies):
        await send(f"{base}/ok")
    [request], [body] = seen, bodies
    assert orjson.loads(body)["notification_id"] == "n-1"
    assert request.headers["idempotency-key"] == "n-1"
    assert request.headers["content-type"] == "application/json"
    stamp, mac = request.headers["x-lynchpin-signature"].split(",")
    expected = hmac.new(SECRET.encode(), f"{stamp.removeprefix('t=')}.".encode() + body, hashlib.sha256)
    assert mac == f"v1={expected.hexdigest()}"


@pytest.mark.parametrize(
    ("path", "permanent", "reason"), [("/gone", True, "HTTP 410"), ("/busy", False, "HTTP 503")]
)
async def test_an_error_status_fails_the_delivery(path: str, permanent: bool, reason: str) -> None:
    async with receiver() as (base, _, _):
        with pytest.raises(DeliveryFailed) as failed:
            await send(f"{base}{path}")
    assert failed.value.permanent is permanent
    assert reason in str(failed.value)


async def test_a_redirect_is_not_followed() -> None:
    async with receiver() as (base, seen, _):
        with pytest.raises(DeliveryFailed, match="HTTP 307"):
            await send(f"{base}/moved")
    assert seen == []


async def test_a_receiver_that_does_not_answer_in_time_fails_the_delivery_for_a_retry() -> None:
    async with receiver() as (base, _, _):
        with pytest.raises(DeliveryFailed, match="Timeout") as failed:
            await send(f"{base}/slow", timeout=0.3)
    assert failed.value.permanent is False


async def test_a_receiver_that_is_not_listening_fails_the_delivery_for_a_retry() -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await send(f"http://127.0.0.1:{free_port()}/ok")
    assert failed.value.permanent is False
    assert "Connect" in str(failed.value)


async def test_the_connection_goes_only_to_an_address_the_allowlist_allows() -> None:
    """Checked again when connecting, not only before: a name that resolves to a refused address by
    then (DNS rebinding) is not connected to."""
    async with receiver() as (base, seen, _):
        url = base.replace("127.0.0.1", "localhost") + "/ok"
        async with HttpClient(5.0, Outbound(OutboundPolicy())) as client:  # loopback not allowed
            with pytest.raises(DeliveryFailed, match=r"resolves to (127\.0\.0\.1|::1), a loopback"):
                await client.post(url, b"{}", {"Content-Type": "application/json"})
        async with HttpClient(5.0, Outbound(OutboundPolicy(), ["localhost"])) as client:  # by name
            assert await client.post(url, b"{}", {"Content-Type": "application/json"}) == 200
    assert len(seen) == 1


async def test_a_proxy_named_in_the_environment_is_used_unless_no_proxy_exempts_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with receiver() as (base, seen, _):
        monkeypatch.setenv("HTTP_PROXY", base)  # the receiver plays the proxy
        monkeypatch.setenv("NO_PROXY", "exempt.example")
        async with HttpClient(5.0, Outbound(OutboundPolicy())) as client:
            # 192.0.2.1 is a documentation address nothing answers on: only the proxy can
            assert (
                await client.post("http://192.0.2.1/ok", b"{}", {"Content-Type": "application/json"}) == 200
            )
            assert client.proxy("http://exempt.example/ok") is None
    assert len(seen) == 1

"""Real receivers for outbound channels: an HTTP server that records webhook posts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0


@asynccontextmanager
async def webhook_receiver(fail_first: int = 0) -> AsyncIterator[WebhookReceiver]:
    """A real HTTP server on 127.0.0.1; answers 500 to the first `fail_first` posts, then 200."""
    receiver = WebhookReceiver(fail_first=fail_first)

    async def hook(request: Request) -> Response:
        if receiver.fail_first > 0:
            receiver.fail_first -= 1
            return Response(status_code=500)
        receiver.received.append(Received(dict(request.headers), await request.body()))
        return Response(status_code=200)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task

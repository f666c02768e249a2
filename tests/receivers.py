"""Real receivers for outbound channels: an HTTP server that records webhook posts, and an SMTP
server (aiosmtpd) that records mail."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.perf_counter)


@dataclass
class WebhookReceiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0
    failed: int = 0
    hold: bool = False
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def webhook_receiver(
    fail_first: int = 0, *, hold_first: bool = False
) -> AsyncIterator[WebhookReceiver]:
    """A real HTTP server on 127.0.0.1; answers 500 to the first `fail_first` posts, then 200.

    `hold_first`: the first post is recorded, then its answer is held back until `release` is set
    (the sender sent, but never learnt that it was received).
    """
    receiver = WebhookReceiver(fail_first=fail_first, hold=hold_first)

    async def hook(request: Request) -> Response:
        if receiver.fail_first > 0:
            receiver.fail_first -= 1
            receiver.failed += 1
            return Response(status_code=500)
        receiver.received.append(Received(dict(request.headers), await request.body()))
        if receiver.hold:
            receiver.hold = False
            receiver.held.set()
            await receiver.release.wait()
        return Response(status_code=200)

    async with served(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as base:
        receiver.url = f"{base}/hook"
        try:
            yield receiver
        finally:
            receiver.release.set()


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on a free port of 127.0.0.1; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpReceiver:
    host: str = "127.0.0.1"
    port: int = 0
    mails: list[Mail] = field(default_factory=list)


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=default).parsebytes(envelope.original_content or envelope.content)
        assert isinstance(message, EmailMessage)
        self.receiver.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@asynccontextmanager
async def smtp_receiver() -> AsyncIterator[SmtpReceiver]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records every mail it accepts."""
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    receiver = SmtpReceiver(port=port)
    controller = Controller(_Handler(receiver), hostname="127.0.0.1", port=port)
    await asyncio.to_thread(controller.start)
    try:
        yield receiver
    finally:
        await asyncio.to_thread(controller.stop)

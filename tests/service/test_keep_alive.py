"""Services keep an idle client connection open longer than clients do (`server_options`): a
sender reusing its connection after a pause is answered, not cut off unread."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from fastapi import FastAPI

from shared.web import KEEP_ALIVE_SECONDS, server_options

REQUEST = b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n"


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
    length = int(next(v for k, v in fields.items() if k.lower() == b"content-length"))
    await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0]


async def test_a_connection_idle_longer_than_uvicorns_default_is_still_answered() -> None:
    assert KEEP_ALIVE_SECONDS > 6
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", **server_options("text")))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await answer(reader, writer) == b"HTTP/1.1 200 OK"
        await asyncio.sleep(6)  # uvicorn's own default (5 s) would have closed the connection by now
        assert await answer(reader, writer) == b"HTTP/1.1 200 OK"
        writer.close()
    finally:
        server.should_exit = True
        await serving

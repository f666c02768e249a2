"""Hardening at the HTTP edge, over a real socket: oversized and trickling bodies are refused."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import uvicorn

from services.intake.app import create_app
from shared.settings import Settings


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = Settings(
        data_dir=tmp_path, admin_token="a", integration_key="k", secret="s" * 32, body_read_timeout=0.5
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield port
    server.should_exit = True
    await task


async def exchange(
    port: int, head: bytes, chunks: list[bytes], pause: float = 0.0
) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(pause)
    raw = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    status = int(raw.split(b" ", 2)[1])
    body = orjson.loads(raw.split(b"\r\n\r\n", 1)[1]) if b"\r\n\r\n{" in raw else {}
    return status, body


def request(length: int) -> bytes:
    head = b"POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
    return head + f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()


async def test_a_declared_oversized_body_is_413_before_it_is_read(intake: int) -> None:
    status, body = await exchange(intake, request(600 * 1024), [])
    assert status == 413 and body["status"] == 413


async def test_a_body_that_trickles_in_is_408(intake: int) -> None:
    payload = orjson.dumps({"title": "x", "service": "s", "severity": "low", "dedup_key": "slow"})
    status, body = await exchange(intake, request(len(payload)), [payload[:5]], pause=1.5)
    assert status == 408 and "did not arrive" in str(body["detail"])

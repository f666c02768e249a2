"""Shared set-up for intake's service tests: one intake app in-process on a memory store, a fake
clock, operator tokens and the captured fixtures. (No tests here.)"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from services.intake.app import create_app
from shared.auth import Role, sign_token
from shared.clock import FakeClock
from shared.envelope import Envelope
from shared.policy.intake import IntakePolicy
from shared.settings import Settings
from shared.store.memory import MemoryStore
from tests.helpers import eventually, running

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "intake"  # captured from real senders, as is
ADMIN = "admin-token"
KEY = "R0ut1ngKeyForLocalTestsOnly00003"  # the routing key in the captured PagerDuty fixtures
SECRET = "s" * 32
START = datetime(2026, 11, 22, 11, 39, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return orjson.loads(fixture(name))


def token(role: Role, subject: str = "ana") -> str:
    return sign_token(SECRET, subject, role)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def settings() -> Settings:
    return Settings(admin_token=ADMIN, integration_key=KEY, secret=SECRET)


@dataclass
class Intake:
    client: httpx.AsyncClient
    store: MemoryStore
    clock: FakeClock
    app: FastAPI

    async def events(self, stream_prefix: str = "") -> list[Envelope]:
        return [e for e in await self.store.read_all(limit=1_000_000) if e.stream.startswith(stream_prefix)]

    async def types(self, incident_id: str) -> list[str]:
        return [e.type for e in await self.store.read(f"incident-{incident_id}")]

    async def incident(self, incident_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/v1/incidents/{incident_id}", headers=bearer(ADMIN))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def integration(self, **fields: Any) -> tuple[str, str]:
        r = await self.client.post("/v1/integrations", json=fields, headers=bearer(ADMIN))
        assert r.status_code == 201, r.text
        return r.json()["id"], r.json()["key"]

    async def counts(self, integration_id: str, **expected: int) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            r = await self.client.get(f"/v1/integrations/{integration_id}", headers=bearer(ADMIN))
            body: dict[str, Any] = r.json()
            return body if all(body["counts"][k] == v for k, v in expected.items()) else None

        return await eventually(probe)


@asynccontextmanager
async def intake(
    policy: IntakePolicy | None = None, store: MemoryStore | None = None, clock: FakeClock | None = None
) -> AsyncIterator[Intake]:
    store = store if store is not None else MemoryStore(source="intake")
    clock = clock if clock is not None else FakeClock(START)
    app = create_app(settings(), store=store, clock=clock, policy=policy, heartbeat_tick=0.01)
    async with running({"intake": app}, KEY) as clients:
        yield Intake(clients["intake"], store, clock, app)


def grafana_signature(secret: str, body: bytes, stamp: str | None = None) -> str:
    import hmac

    message = body if stamp is None else stamp.encode() + b":" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()

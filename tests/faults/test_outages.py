"""Outages: with its database unavailable intake answers 503 with Retry-After (429 on the PagerDuty-style
/v2/enqueue), never 500 and never 202; /readyz goes red; and it recovers by itself when the database comes
back, without a restart."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from shared.testing.servers import PostgresServer
from tests.faults.cluster import ADMIN, KEY, Processes, base_env, url
from tests.helpers import eventually

pytestmark = [pytest.mark.slow]


@asynccontextmanager
async def intake_process(env: dict[str, str], log: Path) -> AsyncIterator[httpx.AsyncClient]:
    procs = Processes(env, log)
    try:
        await asyncio.to_thread(procs.start, "intake", "services.intake", services=["intake"])
        async with httpx.AsyncClient(base_url=url(env, "intake"), timeout=httpx.Timeout(30.0)) as client:
            yield client
    finally:
        await asyncio.to_thread(procs.stop_all)


def alert(key: str) -> dict[str, str]:
    return {"title": f"Outage test {key}", "service": "db", "severity": "high", "dedup_key": key}


def pagerduty(key: str) -> dict[str, object]:
    return {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {"summary": f"Outage test {key}", "source": "db-1", "severity": "critical"},
    }


async def post_alert(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/v1/alerts", json=alert(key), headers={"Authorization": f"Bearer {KEY}"})


async def outage_and_recovery(
    client: httpx.AsyncClient, *, take_down: Callable[[], object], bring_back: Callable[[], object]
) -> None:
    before = await post_alert(client, "before")
    assert before.status_code == 202, before.text
    incident = before.json()["incident_id"]

    await asyncio.to_thread(take_down)
    await eventually(ready_is(client, 503), timeout=30)
    ready = await client.get("/readyz")
    assert ready.headers.get("retry-after") and ready.headers["content-type"].startswith(
        "application/problem+json"
    )

    for n in range(12):  # new keys, repeats of the accepted one, and a resolve: all refused the same way
        body = alert(f"during-{n % 4}") if n % 3 else alert("before")
        if n == 11:
            body["status"] = "resolved"
        r = await client.post("/v1/alerts", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 503, (n, r.status_code, r.text)
        assert r.headers.get("retry-after"), r.headers
        assert r.headers["content-type"].startswith("application/problem+json")
    v2 = await client.post("/v2/enqueue", json=pagerduty("during-pd"))
    assert v2.status_code == 429, v2.text  # PagerDuty-style clients retry 429, not 5xx
    assert v2.headers.get("retry-after")

    await asyncio.to_thread(bring_back)
    await eventually(ready_is(client, 200), timeout=60)
    after = await eventually(accepted(client, "after"), timeout=30)
    assert after.json()["action"] == "opened"
    again = await post_alert(client, "before")  # the alert accepted before the outage is still there
    assert again.status_code == 202 and again.json()["incident_id"] == incident, again.text
    seen = await client.get(f"/v1/incidents/{incident}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert seen.status_code == 200, seen.text


def ready_is(client: httpx.AsyncClient, wanted: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return (await client.get("/readyz")).status_code == wanted

    return probe


def accepted(client: httpx.AsyncClient, key: str) -> Callable[[], Awaitable[httpx.Response | None]]:
    async def probe() -> httpx.Response | None:
        r = await post_alert(client, key)
        assert r.status_code in (202, 503), r.text  # never a 500 while it recovers
        return r if r.status_code == 202 else None

    return probe


@pytest.mark.postgres
async def test_intake_answers_503_while_postgres_is_down_and_recovers_by_itself(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    env = base_env(tmp_path / "data")
    env["LYNCHPIN_STORE_URL"] = own_postgres.dsn
    async with intake_process(env, tmp_path / "intake.log") as client:
        await outage_and_recovery(client, take_down=own_postgres.stop, bring_back=own_postgres.start)


@pytest.mark.parametrize("how", ["replaced", "moved-away"])
async def test_intake_answers_503_while_its_sqlite_file_is_unavailable_and_recovers_by_itself(
    tmp_path: Path, how: str
) -> None:
    data = tmp_path / "data"
    env = base_env(data)
    db = data / "intake.db"
    aside = tmp_path / "aside"

    def take_down() -> None:
        if how == "replaced":  # the file is swapped for one that is not a database
            os.rename(db, tmp_path / "intake.db.saved")
            db.write_bytes(b"this is not an SQLite database\n" * 128)
        else:  # the whole data folder is moved away
            os.rename(data, aside)

    def bring_back() -> None:
        if how == "replaced":
            db.unlink()
            os.rename(tmp_path / "intake.db.saved", db)
        else:
            os.rename(aside, data)

    async with intake_process(env, tmp_path / "intake.log") as client:
        await outage_and_recovery(client, take_down=take_down, bring_back=bring_back)

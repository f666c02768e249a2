"""Status codes per sender: 400/422 naming the field, 401, 413, and under a store outage 503 +
Retry-After for webhook senders (they retry only 5xx) but 429 for PagerDuty-style clients."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from shared.store import Committed, StoreUnavailable, Tracking, Write
from shared.store.memory import MemoryStore
from tests.service.test_intake_support import KEY, fixture, intake


class FlakyStore(MemoryStore):
    """A memory store whose writes fail while `down` (a database that went away)."""

    down = False

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed:
        if self.down:
            raise StoreUnavailable("database is down")
        return await super().commit(writes, tracking=tracking)


async def test_store_outage_is_503_with_retry_after_for_webhooks_and_429_for_pagerduty() -> None:
    store = FlakyStore(source="intake")
    async with intake(store=store) as i:
        store.down = True
        for path, name in (
            ("/v1/alerts/alertmanager", "alertmanager_webhook_01_firing_DiskFull.json"),
            ("/v1/alerts/grafana", "alertmanager_webhook_01_firing_DiskFull.json"),
        ):
            r = await i.client.post(path, content=fixture(name))
            assert r.status_code == 503 and r.headers["Retry-After"], r.text
        r = await i.client.post("/v1/alerts/datadog", json={"cycle_key": "c", "title": "t"})
        assert r.status_code == 503 and r.headers["Retry-After"]
        r = await i.client.post("/v2/enqueue", content=fixture("pagerduty_py_01_trigger.json"))
        assert r.status_code == 429 and r.headers["Retry-After"] and r.json()["status"] == "throttle event"
        r = await i.client.post("/v2/change/enqueue", content=fixture("pagerduty_py_04_change_event.json"))
        assert r.status_code == 429
        store.down = False  # the sender's retry succeeds, and nothing was half-written
        r = await i.client.post(
            "/v1/alerts/alertmanager", content=fixture("alertmanager_webhook_01_firing_DiskFull.json")
        )
        assert r.status_code == 202 and r.json()["alerts"][0]["action"] == "opened"


async def test_malformed_bodies_are_400_and_invalid_fields_are_422_naming_the_field() -> None:
    async with intake() as i:
        for path in (
            "/v1/alerts/alertmanager",
            "/v1/alerts/grafana",
            "/v1/alerts/datadog",
            "/v1/alerts/cloudevents",
        ):
            r = await i.client.post(path, content=b"{oops")
            assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", path
            r = await i.client.post(path, content=b"[1, 2]")
            assert r.status_code == 422, path
        r = await i.client.post("/v1/alerts/alertmanager", json={"alerts": [{"startsAt": "yesterday"}]})
        assert r.status_code == 422 and r.json()["detail"].startswith("alerts.0.startsAt")
        r = await i.client.post("/v1/alerts/alertmanager", json={"alerts": [{"status": "pending"}]})
        assert r.status_code == 422 and r.json()["detail"].startswith("alerts.0.status")
        r = await i.client.post(
            "/v1/alerts/cloudevents",
            content=orjson.dumps([{"specversion": "1.0", "id": "1", "source": "s"}]),
            headers={"Content-Type": "application/cloudevents-batch+json"},
        )
        assert r.status_code == 422 and r.json()["detail"] == "0.type: Field required"
        r = await i.client.post("/v1/heartbeats/x", json={"timeout_seconds": 0})
        assert r.status_code == 422 and r.json()["detail"].startswith("timeout_seconds")


async def test_bodies_over_512_kb_are_413() -> None:
    async with intake() as i:
        big = orjson.dumps({"routing_key": KEY, "event_action": "trigger", "pad": "x" * (512 * 1024)})
        for path in ("/v2/enqueue", "/v1/alerts/alertmanager", "/v1/alerts/cloudevents"):
            r = await i.client.post(path, content=big)
            assert r.status_code == 413, path


async def test_overload_sheds_with_503_for_webhooks_and_429_for_pagerduty() -> None:
    async with intake() as i:
        i.app.state.intake.in_flight = 5000  # as many alerts as intake lets wait for the store
        r = await i.client.post(
            "/v1/alerts/alertmanager", content=fixture("alertmanager_webhook_01_firing_DiskFull.json")
        )
        assert r.status_code == 503 and r.headers["Retry-After"]
        r = await i.client.post("/v2/enqueue", content=fixture("pagerduty_py_01_trigger.json"))
        assert r.status_code == 429 and r.headers["Retry-After"]
        i.app.state.intake.in_flight = 0
        r = await i.client.post("/v2/enqueue", content=fixture("pagerduty_py_01_trigger.json"))
        assert r.status_code == 202

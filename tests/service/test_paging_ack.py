"""Acknowledge links at intake: no login, GET changes nothing, POST acknowledges once as the paged
person; a second use, an expired link and a forged one each answer clearly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.intake.app import create_app
from shared.acklinks import AckClaim, sign_ack
from shared.clock import FakeClock
from shared.events import IncidentAcknowledged
from shared.settings import Settings
from shared.store import open_store
from tests.helpers import running

ADMIN, SECRET = "admin-token", "s" * 32
T = datetime(2026, 3, 18, 9, tzinfo=UTC)


def link(
    incident_id: str, person: str = "ann", *, issued: datetime = T, ttl: timedelta = timedelta(hours=1)
) -> str:
    return "/v1/ack/" + sign_ack(SECRET, AckClaim(incident_id, person, issued, issued + ttl))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T)


async def test_a_link_acknowledges_once_without_logging_in(tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, secret=SECRET)
    app = create_app(
        settings, store=open_store(f"sqlite://{tmp_path / 'intake.db'}", source="intake"), clock=clock
    )
    async with running({"intake": app}, ADMIN) as c:
        r = await c["intake"].post("/v1/incidents", json={"title": "DB down", "service": "db"})
        assert r.status_code == 201, r.text
        incident_id = r.json()["id"]
        anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
        async with anonymous:
            clock.advance(minutes=1)
            url = link(incident_id)

            shown = await anonymous.get(url)
            assert shown.status_code == 200, shown.text
            assert shown.json()["usable"] is True and shown.json()["person"] == "ann"
            page = await anonymous.get(url, headers={"Accept": "text/html"})
            assert '<form method="post"' in page.text and "DB down" in page.text
            assert (await c["intake"].get(f"/v1/incidents/{incident_id}")).json()["status"] == "open"

            done = await anonymous.post(url)
            assert done.status_code == 200, done.text
            assert done.json() == {
                "incident_id": incident_id,
                "status": "acknowledged",
                "by": "ann",
                "at": (T + timedelta(minutes=1)).isoformat(),
            }
            assert (await c["intake"].get(f"/v1/incidents/{incident_id}")).json()["status"] == "acknowledged"
            acks = [e.event for e in await app.state.store.read(f"incident-{incident_id}")]
            assert [a.by for a in acks if isinstance(a, IncidentAcknowledged)] == ["ann"]

            again = await anonymous.post(url)
            assert again.status_code == 409
            assert again.headers["content-type"] == "application/problem+json"
            assert again.json()["detail"].startswith("this link was already used")
            assert (await anonymous.get(url)).json()["usable"] is False

            other = await anonymous.post(link(incident_id, "bob"))
            assert other.status_code == 409 and "already acknowledged by ann" in other.json()["detail"]

            clock.advance(hours=2)
            expired = await anonymous.post(link(incident_id, issued=T + timedelta(minutes=30)))
            assert expired.status_code == 410 and "expired" in expired.json()["detail"]

            forged = await anonymous.post(url[:-3] + ("xyz" if not url.endswith("xyz") else "abc"))
            assert forged.status_code == 401
            assert (await anonymous.get("/v1/ack/not-a-token")).status_code == 401
            assert (await anonymous.post(link("no-such-incident", issued=clock()))).status_code == 404

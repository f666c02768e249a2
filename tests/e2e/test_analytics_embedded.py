"""The four services in one process: an incident's whole life reaches analytics with the sender's
times, its review draft and metrics follow, and a rebuild from the logs reaches the same state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.analytics.app import SOURCES
from services.analytics.readstore import ReadStore
from services.analytics.rebuild import events_url, read_store_path, rebuild
from shared.launcher import embedded_apps
from shared.settings import Settings
from shared.store import EventStore, open_store
from tests.helpers import eventually, running
from tests.service.test_analytics_rebuild import process_live

ADMIN, KEY = "admin-token", "integration-key"


async def test_an_incident_life_in_analytics_and_a_rebuild_that_matches(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, integration_key=KEY, secret="s" * 32)
    started = (datetime.now(UTC) - timedelta(minutes=7)).replace(microsecond=0)
    async with running(embedded_apps(settings), ADMIN) as c:
        alert = {
            "title": "Disk full on db-1",
            "service": "db",
            "severity": "critical",
            "dedup_key": "disk-db-1",
            "starts_at": started.isoformat(),
        }
        r = await c["intake"].post("/v1/alerts", json=alert, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 202, r.text
        iid = r.json()["incident_id"]
        for path, body in (
            ("acknowledge", None),
            ("notes", {"text": "Action: alert on disk growth @dana"}),
            ("resolve", {"reason": "old logs removed"}),
        ):
            done = await c["intake"].post(f"/v1/incidents/{iid}/{path}", json=body)
            assert done.status_code in (200, 201), done.text

        async def projected() -> dict[str, Any] | None:
            """Resolved, prioritised and notified: analytics follows each service's log on its own,
            so comms' events may land after intake's and triage's."""
            doc = (await c["analytics"].get(f"/v1/incidents/{iid}")).json()
            sources = {e["source"] for e in doc.get("timeline", [])}
            done = doc.get("status") == "resolved" and doc.get("priority") and "comms" in sources
            return doc if done else None

        doc = await eventually(projected)
        assert datetime.fromisoformat(doc["detected_at"]) == started  # the sender's time, not ours
        assert doc["actions"][0]["owner"] == "dana"
        types = [e["type"] for e in doc["timeline"]]
        for kind in (
            "IncidentOpened",
            "AlertAttached",
            "PriorityAssigned",
            "IncidentAcknowledged",
            "NoteAdded",
        ):
            assert kind in types
        assert types.index("IncidentAcknowledged") < types.index("IncidentResolved")
        assert {e["source"] for e in doc["timeline"]} >= {"intake", "triage", "comms"}

        fb = await c["analytics"].post(f"/v1/incidents/{iid}/feedback", json={"score": 5, "comment": "fast"})
        assert fb.status_code == 201
        m = (await c["analytics"].get("/v1/metrics")).json()
        assert m["incidents"] == 1 and m["mttr_seconds"]["count"] == 1 and m["csat"]["mean"] == 5.0
        review = (await c["analytics"].get(f"/v1/reports/incidents/{iid}/review")).text
        assert "alert on disk growth @dana | dana |" in review and "old logs removed" in review

    # Let the read store catch up with whatever the services wrote last, then rebuild beside it.
    stores: dict[str, EventStore] = {s: open_store(settings.store_url_for(s), source=s) for s in SOURCES}
    stores["analytics"] = open_store(events_url(settings), source="analytics")
    for store in stores.values():
        await store.__aenter__()
    try:
        async with ReadStore(read_store_path(settings)) as live:
            await process_live(stores, live)
            expected = await live.dump()
    finally:
        for store in stores.values():
            await store.__aexit__(None, None, None)
    report = await rebuild(settings)
    assert report.incidents == 1
    async with ReadStore(read_store_path(settings)) as rebuilt:
        assert await rebuilt.dump() == expected

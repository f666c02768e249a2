"""The incident lifecycle API: acknowledge, assign, notes, hold/resume, resolve, close, reopen, with
ETag/If-Match and Idempotency-Key."""

from __future__ import annotations

from shared.auth import Role
from shared.events import IncidentPutOnHold, NoteAdded
from tests.service.test_intake_support import bearer, intake, token

NEW = {
    "title": "Checkout slow",
    "service": "checkout",
    "severity": "high",
    "impact": "high",
    "urgency": "medium",
}


async def test_the_whole_lifecycle_with_etags() -> None:
    ana = bearer(token(Role.RESPONDER, "ana"))
    async with intake() as i:
        r = await i.client.post("/v1/incidents", json={**NEW, "reporter": "service-desk"}, headers=ana)
        assert r.status_code == 201 and r.headers["ETag"] == '"1"'
        incident = r.json()["id"]
        url = f"/v1/incidents/{incident}"

        r = await i.client.post(f"{url}/acknowledge", headers={**ana, "If-Match": '"1"'})
        assert r.status_code == 200 and r.json()["status"] == "acknowledged" and r.headers["ETag"] == '"2"'
        r = await i.client.post(f"{url}/assign", json={"assignee": "bob"}, headers={**ana, "If-Match": '"1"'})
        assert r.status_code == 412  # stale ETag
        r = await i.client.post(f"{url}/assign", json={"assignee": "bob"}, headers={**ana, "If-Match": '"2"'})
        assert r.status_code == 200 and r.json()["assignee"] == "bob"

        r = await i.client.post(f"{url}/hold", json={"reason": "waiting on the vendor"}, headers=ana)
        assert r.json()["on_hold"] is True
        assert (await i.client.post(f"{url}/hold", headers=ana)).status_code == 409
        r = await i.client.post(f"{url}/resume", headers=ana)
        assert r.json()["on_hold"] is False
        assert (await i.client.post(f"{url}/resume", headers=ana)).status_code == 409

        assert (await i.client.post(f"{url}/close", headers=ana)).status_code == 409  # not resolved yet
        r = await i.client.post(f"{url}/resolve", json={"reason": "cache flushed"}, headers=ana)
        assert r.json()["status"] == "resolved"
        r = await i.client.post(f"{url}/reopen", json={"reason": "back again"}, headers=ana)
        assert r.json()["status"] == "open"
        await i.client.post(f"{url}/resolve", headers=ana)
        r = await i.client.post(f"{url}/close", headers=ana)
        assert r.json()["status"] == "closed"
        assert (await i.client.post(f"{url}/reopen", headers=ana)).status_code == 409  # closed is final
        assert (await i.client.post(f"{url}/assign", json={"assignee": "cy"}, headers=ana)).status_code == 409

        r = await i.client.post(f"{url}/notes", json={"text": "root cause: cache stampede"}, headers=ana)
        assert r.status_code == 201  # notes on a closed incident are welcome (post-incident findings)

        assert await i.types(incident) == [
            "IncidentOpened",
            "IncidentAcknowledged",
            "IncidentAssigned",
            "IncidentPutOnHold",
            "IncidentResumed",
            "IncidentResolved",
            "IncidentReopened",
            "IncidentResolved",
            "IncidentClosed",
            "NoteAdded",
        ]
        history = await i.store.read(f"incident-{incident}")
        hold = history[3].event
        assert (
            isinstance(hold, IncidentPutOnHold)
            and hold.by == "ana"
            and hold.reason == "waiting on the vendor"
        )


async def test_idempotency_keys_make_creating_posts_safe_to_retry() -> None:
    ana = bearer(token(Role.RESPONDER, "ana"))
    async with intake() as i:
        headers = {**ana, "Idempotency-Key": "create-1"}
        first = await i.client.post("/v1/incidents", json=NEW, headers=headers)
        second = await i.client.post("/v1/incidents", json=NEW, headers=headers)
        assert first.json()["id"] == second.json()["id"]
        assert len([e for e in await i.events("incident-") if e.type == "IncidentOpened"]) == 1
        other = await i.client.post("/v1/incidents", json=NEW, headers={**ana, "Idempotency-Key": "create-2"})
        assert other.json()["id"] != first.json()["id"]

        url = f"/v1/incidents/{first.json()['id']}/notes"
        note = {"text": "called the vendor"}
        a = await i.client.post(url, json=note, headers={**ana, "Idempotency-Key": "n1"})
        b = await i.client.post(url, json=note, headers={**ana, "Idempotency-Key": "n1"})
        assert a.json()["note_id"] == b.json()["note_id"] and a.json()["version"] == b.json()["version"] == 2
        notes = [e.event for e in await i.events("incident-") if isinstance(e.event, NoteAdded)]
        assert [(n.text, n.by) for n in notes] == [("called the vendor", "ana")]


async def test_who_may_do_what_and_what_does_not_exist() -> None:
    async with intake() as i:
        viewer = bearer(token(Role.VIEWER, "vic"))
        assert (await i.client.post("/v1/incidents", json=NEW, headers=viewer)).status_code == 403
        assert (await i.client.post("/v1/incidents", json=NEW, headers=bearer("wrong"))).status_code == 401
        responder = bearer(token(Role.RESPONDER))
        assert (await i.client.post("/v1/incidents/nope/acknowledge", headers=responder)).status_code == 404
        r = await i.client.post("/v1/incidents", json={**NEW, "title": ""}, headers=responder)
        assert r.status_code == 422 and r.json()["detail"].startswith("title")
        r = await i.client.post("/v1/incidents", json=NEW, headers=responder)
        r = await i.client.post(
            f"/v1/incidents/{r.json()['id']}/acknowledge", headers={**responder, "If-Match": "garbage"}
        )
        assert r.status_code == 412


async def test_an_alert_rejoins_its_reopened_incident_but_never_a_resolved_one() -> None:
    alert = {"title": "Disk full", "service": "db", "severity": "critical", "dedup_key": "d1"}
    ana = bearer(token(Role.RESPONDER, "ana"))
    async with intake() as i:
        incident = (await i.client.post("/v1/alerts", json=alert)).json()["incident_id"]
        await i.client.post(f"/v1/incidents/{incident}/resolve", headers=ana)
        await i.client.post(f"/v1/incidents/{incident}/reopen", json={"reason": "not fixed"}, headers=ana)
        r = await i.client.post("/v1/alerts", json=alert)
        assert r.json()["action"] == "attached" and r.json()["incident_id"] == incident
        assert (await i.client.post("/v1/alerts", json=alert)).json()["action"] == "repeated"
        r = await i.client.post("/v1/alerts", json={**alert, "status": "resolved"})
        assert r.json()["action"] == "resolved" and (await i.incident(incident))["status"] == "resolved"
        await i.client.post(f"/v1/incidents/{incident}/reopen", headers=ana)
        await i.client.post(f"/v1/incidents/{incident}/resolve", headers=ana)
        r = await i.client.post("/v1/alerts", json=alert)
        assert r.json()["action"] == "opened" and r.json()["incident_id"] != incident

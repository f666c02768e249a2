"""Integrations are records in intake's log: admin-only, the key shown once and kept hashed, accepted
three ways, with last received, last error and counts; they survive a restart."""

from __future__ import annotations

from typing import Any

from shared.auth import Role, hash_secret
from shared.events import IntegrationCreated
from shared.store.memory import MemoryStore
from tests.service.test_intake_support import ADMIN, bearer, fixture, intake, token

AM = "/v1/alerts/alertmanager"
NEW = {"name": "prod alertmanager", "source_type": "alertmanager", "default_service": "platform"}


async def test_only_an_admin_creates_and_lists_integrations_and_the_key_is_shown_once() -> None:
    async with intake() as i:
        for who in (token(Role.RESPONDER), token(Role.INCIDENT_MANAGER)):
            assert (await i.client.post("/v1/integrations", json=NEW, headers=bearer(who))).status_code == 403
        assert (await i.client.post("/v1/integrations", json=NEW)).status_code == 403  # an integration key
        integration_id, key = await i.integration(**NEW)
        assert key.startswith("lpk_")

        [created] = await i.events("integration-")
        assert isinstance(created.event, IntegrationCreated)
        assert created.event.key_hash == hash_secret(key) and key not in created.to_json().decode()

        listed = (await i.client.get("/v1/integrations", headers=bearer(ADMIN))).json()
        assert {x["id"] for x in listed} == {"default", integration_id}
        assert all(x["key"] is None for x in listed)
        detail = (await i.client.get(f"/v1/integrations/{integration_id}", headers=bearer(ADMIN))).json()
        assert detail["key"] is None and detail["name"] == "prod alertmanager"
        assert (await i.client.get("/v1/integrations/nope", headers=bearer(ADMIN))).status_code == 404
        assert (
            await i.client.get("/v1/integrations", headers=bearer(token(Role.RESPONDER)))
        ).status_code == 403

        replay = {**bearer(ADMIN), "Idempotency-Key": "am-1"}
        first = await i.client.post("/v1/integrations", json=NEW, headers=replay)
        second = await i.client.post("/v1/integrations", json=NEW, headers=replay)
        assert first.status_code == 201 and first.json()["key"]
        assert second.status_code == 200 and second.json()["key"] is None
        assert second.json()["id"] == first.json()["id"]

        r = await i.client.post(
            "/v1/integrations", json={**NEW, "source_type": "nagios"}, headers=bearer(ADMIN)
        )
        assert r.status_code == 422 and r.json()["detail"].startswith("source_type")


async def test_a_key_works_as_bearer_header_or_query_parameter_and_unknown_keys_are_401() -> None:
    async with intake() as i:
        _, key = await i.integration(**NEW)
        body = fixture("alertmanager_webhook_01_firing_DiskFull.json")
        none = {"Authorization": ""}  # drop the client's default credentials
        ways: list[dict[str, Any]] = [
            {"headers": bearer(key)},
            {"headers": {**none, "X-Lynchpin-Key": key}},
            {"headers": none, "params": {"key": key}},
        ]
        for how in ways:
            r = await i.client.post(AM, content=body, **how)
            assert r.status_code == 202, (how, r.text)
        r = await i.client.post(AM, content=body, headers={"X-Lynchpin-Key": "nope", "Authorization": ""})
        assert r.status_code == 401
        r = await i.client.post(AM, content=body, headers={"Authorization": ""})
        assert r.status_code == 401 and "integration key" in r.json()["detail"]


async def test_counts_last_received_and_last_error_per_integration() -> None:
    async with intake() as i:
        integration_id, key = await i.integration(**NEW)
        headers = bearer(key)
        for name in (
            "alertmanager_webhook_01_firing_DiskFull.json",
            "alertmanager_webhook_02_firing_HighCPU.json",
            "alertmanager_webhook_01_firing_DiskFull.json",
            "alertmanager_webhook_03_resolved_DiskFull.json",
        ):
            assert (await i.client.post(AM, content=fixture(name), headers=headers)).status_code == 202
        r = await i.client.post(AM, json={"alerts": [{"labels": {"severity": 5}}]}, headers=headers)
        assert (
            r.status_code == 422
            and r.json()["detail"] == "alerts.0.labels.severity: Input should be a valid string"
        )
        detail = await i.counts(
            integration_id, alerts=5, incidents_opened=2, grouped=1, repeats=1, resolved=1, errors=1
        )
        refused = [
            e
            for e in await i.events(f"integration-{integration_id}")
            if e.type == "IntegrationRequestRefused"
        ]
        assert [getattr(e.event, "status") for e in refused] == [422]
        assert detail["last_error"].startswith("422 alerts.0.labels.severity")
        assert detail["last_received_at"] is not None and detail["last_error_at"] is not None
        # Its alerts carry its rules and its identity scope.
        [opened, *_] = [e for e in await i.events("incident-") if e.type == "IncidentOpened"]
        assert getattr(opened.event, "integration_id") == integration_id


async def test_integrations_counts_and_errors_are_rebuilt_from_the_log_after_a_restart() -> None:
    store = MemoryStore(source="intake")
    async with intake(store=store) as i:
        integration_id, key = await i.integration(**NEW)
        body = fixture("alertmanager_webhook_01_firing_DiskFull.json")
        await i.client.post(AM, content=body, headers=bearer(key))
        assert (await i.client.post(AM, content=b"{", headers=bearer(key))).status_code == 400
    async with intake(store=store) as again:
        r = await again.client.post(AM, content=body, headers=bearer(key))
        assert r.status_code == 202 and r.json()["alerts"][0]["action"] == "repeated"
        detail = await again.counts(integration_id, alerts=2, incidents_opened=1, repeats=1, errors=1)
        assert detail["last_error"].startswith("400 ")


async def test_integration_rules_resolve_first_and_severity_map() -> None:
    async with intake() as i:
        _, key = await i.integration(
            **NEW, resolve_rule="first", severity_map={"warning": "critical"}, grouping={"by": "service"}
        )
        headers = bearer(key)
        first = (
            await i.client.post(
                AM, content=fixture("alertmanager_webhook_01_firing_DiskFull.json"), headers=headers
            )
        ).json()
        cpu = (
            await i.client.post(
                AM, content=fixture("alertmanager_webhook_02_firing_HighCPU.json"), headers=headers
            )
        ).json()
        assert [a["action"] for a in cpu["alerts"]] == ["attached", "attached"]  # one incident per service
        incident = first["alerts"][0]["incident_id"]
        assert {a["incident_id"] for a in cpu["alerts"]} == {incident}
        severities = [
            getattr(e.event, "severity")
            for e in await i.store.read(f"incident-{incident}")
            if e.type == "AlertAttached"
        ]
        assert severities == ["critical", "critical", "critical"]  # warning mapped up by this integration
        await i.client.post(
            AM, content=fixture("alertmanager_webhook_03_resolved_DiskFull.json"), headers=headers
        )
        state = await i.incident(incident)
        assert state["status"] == "resolved" and len(state["firing_alerts"]) == 2  # the first one resolved


async def test_a_key_created_on_one_instance_works_at_once_on_another() -> None:
    store = MemoryStore(source="intake")
    async with intake(store=store) as first, intake(store=store) as second:
        _, key = await first.integration(**NEW)
        body = fixture("alertmanager_webhook_01_firing_DiskFull.json")
        r = await second.client.post(AM, content=body, headers=bearer(key))
        assert r.status_code == 202, r.text

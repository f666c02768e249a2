"""Each native format, with the payloads captured from real senders used as they are: the right
incidents, repeats, groupings and resolutions, and the sender's own times."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.events import AlertAttached, AlertChangeRecorded, IncidentOpened, IncidentResolved
from tests.service.test_intake_support import (
    ADMIN,
    KEY,
    START,
    bearer,
    fixture,
    fixture_json,
    grafana_signature,
    intake,
)

AM = "/v1/alerts/alertmanager"


async def test_alertmanager_fixtures_open_group_repeat_and_resolve() -> None:
    async with intake() as i:
        r = await i.client.post(AM, content=fixture("alertmanager_webhook_01_firing_DiskFull.json"))
        assert r.status_code == 202, r.text
        [disk] = r.json()["alerts"]
        assert disk["action"] == "opened" and disk["dedup_key"] == "19b741f6086c42b2"

        r = await i.client.post(AM, content=fixture("alertmanager_webhook_02_firing_HighCPU.json"))
        web1, web2 = r.json()["alerts"]
        assert (web1["action"], web2["action"]) == ("opened", "attached")
        assert web1["incident_id"] == web2["incident_id"] != disk["incident_id"]
        [*_, attached] = await i.store.read(f"incident-{web1['incident_id']}")
        assert isinstance(attached.event, AlertAttached)
        assert "grouped with incident" in attached.event.reason and "HighCPU" in attached.event.reason

        r = await i.client.post(AM, content=fixture("alertmanager_webhook_01_firing_DiskFull.json"))
        assert r.json()["alerts"][0]["action"] == "repeated"

        i.clock.advance(minutes=2)  # the resolve arrives after its endsAt (11:40:23)
        r = await i.client.post(AM, content=fixture("alertmanager_webhook_03_resolved_DiskFull.json"))
        assert r.json()["alerts"][0]["action"] == "resolved"
        history = await i.store.read(f"incident-{disk['incident_id']}")
        assert [e.type for e in history] == [
            "IncidentOpened",
            "AlertAttached",
            "AlertRepeated",
            "AlertResolved",
            "IncidentResolved",
        ]
        opened, resolved = history[0].event, history[-1].event
        assert isinstance(opened, IncidentOpened) and isinstance(resolved, IncidentResolved)
        assert opened.occurred_at == datetime(2026, 11, 22, 11, 38, 27, 27000, tzinfo=UTC)  # startsAt
        assert resolved.occurred_at == datetime(2026, 11, 22, 11, 40, 23, 32000, tzinfo=UTC)  # endsAt
        assert opened.service == "checkout" and opened.severity == "critical"
        assert (await i.incident(web1["incident_id"]))["status"] == "open"  # the other group is untouched

        # Never attach to a resolved incident: the same alert firing again opens a new one.
        r = await i.client.post(AM, content=fixture("alertmanager_webhook_01_firing_DiskFull.json"))
        again = r.json()["alerts"][0]
        assert again["action"] == "opened" and again["incident_id"] != disk["incident_id"]
        reason = (await i.store.read(f"incident-{again['incident_id']}"))[1].event
        assert isinstance(reason, AlertAttached) and "was resolved" in reason.reason


async def test_a_mixed_group_notification_resolves_one_alert_and_keeps_the_incident_open() -> None:
    async with intake() as i:
        body = fixture_json("alertmanager_webhook_02_firing_HighCPU.json")
        first = (await i.client.post(AM, json=body)).json()["alerts"]
        body["alerts"][0]["status"] = "resolved"
        body["alerts"][0]["endsAt"] = "2026-11-22T11:45:00Z"
        second = (await i.client.post(AM, json=body)).json()["alerts"]
        assert [a["action"] for a in second] == ["resolved", "repeated"]
        incident = await i.incident(first[0]["incident_id"])
        assert incident["status"] == "open" and incident["firing_alerts"] == ["alertmanager:7c0e1ac3b4b167f8"]


async def test_zero_ends_at_means_firing_even_without_a_status() -> None:
    async with intake() as i:
        body = fixture_json("alertmanager_webhook_01_firing_DiskFull.json")
        del body["alerts"][0]["status"]
        assert (await i.client.post(AM, json=body)).json()["alerts"][0]["action"] == "opened"
        body["alerts"][0]["endsAt"] = "2026-11-22T11:50:00Z"
        assert (await i.client.post(AM, json=body)).json()["alerts"][0]["action"] == "resolved"


async def test_raw_payload_is_kept_with_the_event_and_bounded() -> None:
    async with intake() as i:
        body = fixture_json("alertmanager_webhook_01_firing_DiskFull.json")
        body["alerts"][0]["annotations"]["description"] = "x" * 60_000
        r = await i.client.post(AM, json=body)
        [attached] = [e for e in await i.events("incident-") if e.type == "AlertAttached"]
        assert isinstance(attached.event, AlertAttached) and attached.event.raw is not None
        assert attached.event.raw["truncated"] is True and attached.event.raw["size"] > 60_000
        assert len(orjson.dumps(attached.event.raw)) < 20_000
        assert r.status_code == 202
        small = fixture_json("alertmanager_webhook_02_firing_HighCPU.json")
        await i.client.post(AM, json=small)
        kept = [e.event for e in await i.events("incident-") if isinstance(e.event, AlertAttached)]
        assert kept[-1].raw is not None and kept[-1].raw["groupKey"] == small["groupKey"]
        assert kept[-1].raw["alert"] == small["alerts"][1]


async def test_pagerduty_fixtures_trigger_acknowledge_resolve_and_change() -> None:
    async with intake() as i:
        r = await i.client.post("/v2/enqueue", content=fixture("pagerduty_py_01_trigger.json"))
        assert r.status_code == 202
        assert r.json()["status"] == "success" and r.json()["message"] == "Event processed"
        generated = r.json()["dedup_key"]
        assert len(generated) == 32

        # The captured acknowledge/resolve carry the key PagerDuty gave that client: unknown here, dropped.
        for name in ("pagerduty_py_03_acknowledge.json", "pagerduty_py_02_resolve.json"):
            r = await i.client.post("/v2/enqueue", content=fixture(name))
            assert r.status_code == 202 and r.json()["dedup_key"] == "6bab8eb4cbde483b8ca9e07b1745a497"
        assert [e.type for e in await i.events("incident-")] == ["IncidentOpened", "AlertAttached"]

        # The same client's trigger with that key, then its acknowledge and resolve, as captured.
        trigger = {
            **fixture_json("pagerduty_py_01_trigger.json"),
            "dedup_key": "6bab8eb4cbde483b8ca9e07b1745a497",
        }
        r = await i.client.post("/v2/enqueue", json=trigger)
        assert r.json()["dedup_key"] == "6bab8eb4cbde483b8ca9e07b1745a497"
        opened = [e for e in await i.events("incident-") if isinstance(e.event, IncidentOpened)][-1].event
        assert opened.severity == "warning" and opened.title == "Checkout latency high (pagerduty)"
        assert (await i.client.post("/v2/enqueue", json=trigger)).status_code == 202  # a repeat
        await i.client.post("/v2/enqueue", content=fixture("pagerduty_py_03_acknowledge.json"))
        assert (await i.incident(opened.incident_id))["status"] == "acknowledged"
        await i.client.post("/v2/enqueue", content=fixture("pagerduty_py_02_resolve.json"))
        assert (await i.incident(opened.incident_id))["status"] == "resolved"
        assert await i.types(opened.incident_id) == [
            "IncidentOpened",
            "AlertAttached",
            "AlertRepeated",
            "IncidentAcknowledged",
            "AlertResolved",
            "IncidentResolved",
        ]
        # After resolve: acknowledge and resolve are dropped, a trigger opens a new incident.
        await i.client.post("/v2/enqueue", content=fixture("pagerduty_py_03_acknowledge.json"))
        assert len(await i.types(opened.incident_id)) == 6
        await i.client.post("/v2/enqueue", json=trigger)
        assert len([e for e in await i.events("incident-") if e.type == "IncidentOpened"]) == 3

        r = await i.client.post("/v2/change/enqueue", content=fixture("pagerduty_py_04_change_event.json"))
        assert r.status_code == 202 and r.json()["status"] == "success"
        # On the timeline of each open incident of the integration's service; it opened nothing.
        still_open = [
            e.event.partition_key for e in await i.events("incident-") if e.type == "IncidentOpened"
        ]
        still_open = [x for x in still_open if x and (await i.incident(x))["status"] != "resolved"]

        async def changes() -> list[Any]:
            return [e.event for e in await i.events("incident-") if isinstance(e.event, AlertChangeRecorded)]

        recorded = await changes()
        assert sorted(c.incident_id for c in recorded) == sorted(still_open) and len(still_open) == 2
        assert recorded[0].occurred_at == datetime(2026, 1, 1, tzinfo=UTC)
        assert recorded[0].summary == "Deployed checkout v2 (change event)"
        assert len([e for e in await i.events("incident-") if e.type == "IncidentOpened"]) == 3
        [kept] = await i.events("change-")
        assert isinstance(kept.event, AlertChangeRecorded) and kept.event.partition_key == "default"
        await i.counts("default", changes=1)


async def test_a_change_event_with_no_open_incident_is_kept_under_its_service() -> None:
    async with intake() as i:
        r = await i.client.post("/v2/change/enqueue", content=fixture("pagerduty_py_04_change_event.json"))
        assert r.status_code == 202 and r.json()["message"] == "Change event processed"
        [change] = await i.events("change-")
        assert isinstance(change.event, AlertChangeRecorded) and change.event.incident_id == ""
        assert change.event.partition_key == "default"
        assert await i.events("incident-") == []


async def test_pagerduty_acknowledge_on_another_routing_key_is_dropped() -> None:
    async with intake() as i:
        _, other = await i.integration(name="other", source_type="pagerduty", default_service="web")
        trigger = {**fixture_json("pagerduty_py_01_trigger.json"), "dedup_key": "k1"}
        r = await i.client.post("/v2/enqueue", json=trigger)
        incident = next(
            e for e in await i.events("incident-") if e.type == "IncidentOpened"
        ).event.partition_key
        ack = {"routing_key": other, "event_action": "acknowledge", "dedup_key": "k1"}
        assert (await i.client.post("/v2/enqueue", json=ack)).status_code == 202
        assert incident is not None and (await i.incident(incident))["status"] == "open"
        assert r.status_code == 202


async def test_pagerduty_errors_have_its_response_shapes() -> None:
    async with intake() as i:
        r = await i.client.post("/v2/enqueue", content=b"{not json")
        assert r.status_code == 400
        assert r.json() == {
            "status": "Unrecognized object",
            "message": "Event object format is unrecognized",
            "errors": ["JSON parse error"],
        }
        r = await i.client.post("/v2/enqueue", json={"routing_key": KEY, "event_action": "trigger"})
        assert r.status_code == 400 and r.json()["status"] == "invalid event"
        assert "payload" in r.json()["errors"][0]
        bad = fixture_json("pagerduty_py_01_trigger.json")
        bad["payload"]["severity"] = "Critical"  # case-sensitive
        r = await i.client.post("/v2/enqueue", json=bad)
        assert r.status_code == 400 and "payload.severity" in r.json()["errors"][0]
        r = await i.client.post("/v2/enqueue", json={"routing_key": KEY, "event_action": "resolve"})
        assert r.status_code == 400 and "dedup_key" in r.json()["errors"][0]
        r = await i.client.post(
            "/v2/enqueue", json={**fixture_json("pagerduty_py_01_trigger.json"), "routing_key": "nope"}
        )
        assert r.status_code == 401


GRAFANA = {
    "receiver": "lynchpin",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighLatency", "service": "api", "severity": "warning"},
            "annotations": {"summary": "p99 over 2s"},
            "startsAt": "2026-11-22T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana/alerting/grafana/abc/view",
            "fingerprint": "a1b2c3d4e5f60718",
            "silenceURL": "http://grafana/alerting/silence/new",
            "values": {"A": 2.4},
            "valueString": "[ var='A' labels={} value=2.4 ]",
        }
    ],
    "groupLabels": {"alertname": "HighLatency"},
    "commonLabels": {"alertname": "HighLatency"},
    "commonAnnotations": {},
    "externalURL": "http://grafana/",
    "version": "1",
    "groupKey": '{}/{alertname="HighLatency"}:{alertname="HighLatency"}',
    "truncatedAlerts": 0,
    "title": "[FIRING:1] HighLatency",
    "state": "alerting",
    "message": "p99 over 2s",
}


async def test_grafana_webhook_with_and_without_hmac() -> None:
    async with intake() as i:
        r = await i.client.post("/v1/alerts/grafana", json=GRAFANA)
        assert r.status_code == 202 and r.json()["alerts"][0]["action"] == "opened"

        _, key = await i.integration(
            name="grafana-signed", source_type="grafana", default_service="api", hmac_secret="grafana-secret"
        )
        body = orjson.dumps({**GRAFANA, "groupKey": "other"})
        r = await i.client.post("/v1/alerts/grafana", content=body, headers=bearer(key))
        assert r.status_code == 401 and "signature" in r.json()["detail"]
        wrong = {**bearer(key), "X-Grafana-Alert-Signature": grafana_signature("nope", body)}
        assert (await i.client.post("/v1/alerts/grafana", content=body, headers=wrong)).status_code == 401
        for header in ("X-Grafana-Alert-Signature", "X-Grafana-Alerting-Signature"):
            signed = {**bearer(key), header: grafana_signature("grafana-secret", body)}
            r = await i.client.post("/v1/alerts/grafana", content=body, headers=signed)
            assert r.status_code == 202, r.text

        _, stamped = await i.integration(
            name="grafana-ts",
            source_type="grafana",
            default_service="api",
            hmac_secret="grafana-secret",
            signature_header="X-Sig",
            timestamp_header="X-Ts",
        )
        headers = {
            **bearer(stamped),
            "X-Sig": grafana_signature("grafana-secret", body, "1700000000"),
            "X-Ts": "1700000000",
        }
        assert (await i.client.post("/v1/alerts/grafana", content=body, headers=headers)).status_code == 202
        headers["X-Ts"] = "1700000001"
        assert (await i.client.post("/v1/alerts/grafana", content=body, headers=headers)).status_code == 401


async def test_legacy_grafana_alerts_open_and_resolve() -> None:
    async with intake() as i:
        legacy = {
            "ruleId": 7,
            "ruleName": "CPU",
            "state": "alerting",
            "title": "[Alerting] CPU",
            "message": "hot",
        }
        r = await i.client.post("/v1/alerts/grafana", json=legacy)
        assert r.json()["alerts"][0]["action"] == "opened"
        r = await i.client.post("/v1/alerts/grafana", json={**legacy, "state": "ok"})
        assert r.json()["alerts"][0]["action"] == "resolved"


def datadog(transition: str, date_ms: int, **extra: str) -> dict[str, Any]:
    """Our published template, as Datadog fills it in."""
    return {
        "id": "7001",
        "alert_id": "12345",
        "cycle_key": "cycle-777",
        "aggreg_key": "agg-1",
        "transition": transition,
        "alert_type": "error" if transition != "Recovered" else "success",
        "priority": "P2",
        "title": f"[{transition}] Checkout error rate",
        "body": "%%%\nError rate above 5%\n%%%",
        "text": "Error rate above 5%",
        "scope": "env:prod,service:checkout",
        "tags": "env:prod,service:checkout,team:payments",
        "host": "web-1",
        "link": "https://app/monitors/12345",
        "snapshot": "",
        "query": "avg(last_5m):errors > 5",
        "metric": "errors",
        "event_type": "metric_alert_monitor",
        "date": str(date_ms),
        "last_updated": str(date_ms),
        "org": {"id": "1", "name": "Acme"},
        **extra,
    }


async def test_datadog_template_opens_repeats_and_resolves_on_the_cycle_key() -> None:
    now_ms = int(START.timestamp() * 1000)  # Datadog's epoch milliseconds, as the intake clock's now
    async with intake() as i:
        r = await i.client.post("/v1/alerts/datadog", json=datadog("Triggered", now_ms - 600_000))
        opened = r.json()["alerts"][0]
        assert opened["action"] == "opened"
        r = await i.client.post("/v1/alerts/datadog", json=datadog("Re-Triggered", now_ms - 300_000))
        assert r.json()["alerts"][0]["action"] == "repeated"
        r = await i.client.post("/v1/alerts/datadog", json=datadog("Recovered", now_ms))
        assert r.json()["alerts"][0]["action"] == "resolved"
        history = await i.store.read(f"incident-{opened['incident_id']}")
        first, last = history[0].event, history[-1].event
        assert isinstance(first, IncidentOpened) and first.service == "checkout" and first.severity == "high"
        assert first.occurred_at == START - timedelta(minutes=10)  # Datadog's date
        assert isinstance(last, IncidentResolved) and last.occurred_at == START
        # A new cycle (new $ALERT_CYCLE_KEY) is a new alert, and a new incident.
        r = await i.client.post(
            "/v1/alerts/datadog", json=datadog("Triggered", now_ms + 1000, cycle_key="c2")
        )
        assert r.json()["alerts"][0]["action"] == "opened"


async def test_datadog_needs_some_identity_and_names_the_field() -> None:
    async with intake() as i:
        r = await i.client.post("/v1/alerts/datadog", json={"title": "x", "cycle_key": "$ALERT_CYCLE_KEY"})
        assert r.status_code == 422 and r.json()["detail"].startswith("cycle_key")


CE = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "//monitoring/probe",
    "type": "com.example.alert.fired",
    "subject": "probe-eu-1",
    "time": "2026-11-22T09:00:00Z",
    "datacontenttype": "application/json",
    "data": {"title": "Probe failing", "service": "edge", "severity": "critical"},
}


async def test_cloudevents_structured_binary_and_batch_with_exact_replay_ignored() -> None:
    async with intake() as i:
        structured = {"Content-Type": "application/cloudevents+json"}
        r = await i.client.post("/v1/alerts/cloudevents", content=orjson.dumps(CE), headers=structured)
        assert r.status_code == 202, r.text
        first = r.json()["alerts"][0]
        assert first["action"] == "opened"
        opened = (await i.store.read(f"incident-{first['incident_id']}"))[0].event
        assert isinstance(opened, IncidentOpened) and opened.occurred_at == datetime(
            2026, 11, 22, 9, tzinfo=UTC
        )
        assert opened.service == "edge" and opened.severity == "critical"

        r = await i.client.post("/v1/alerts/cloudevents", content=orjson.dumps(CE), headers=structured)
        assert r.json()["alerts"][0]["action"] == "duplicate"  # same source + id: an exact replay

        binary = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "evt-2",
            "ce-source": "//monitoring/probe",
            "ce-type": "com.example.alert.fired",
            "ce-subject": "probe-eu-1",
        }
        r = await i.client.post("/v1/alerts/cloudevents", content=orjson.dumps(CE["data"]), headers=binary)
        assert r.json()["alerts"][0]["action"] == "repeated"

        resolved = {**CE, "id": "evt-3", "type": "com.example.alert.resolved", "data": {"service": "edge"}}
        encoded = {
            **CE,
            "id": "evt-4",
            "subject": "probe-us-1",
            "data": None,
            "data_base64": base64.b64encode(orjson.dumps(CE["data"])).decode(),
        }
        del encoded["data"]
        batch = {"Content-Type": "application/cloudevents-batch+json"}
        r = await i.client.post(
            "/v1/alerts/cloudevents", content=orjson.dumps([resolved, encoded]), headers=batch
        )
        assert [a["action"] for a in r.json()["alerts"]] == ["resolved", "opened"]


async def test_cloudevents_carrying_an_alertmanager_payload_use_its_mapper() -> None:
    async with intake() as i:
        ce = {
            **CE,
            "type": "io.prometheus.alertmanager.notification",
            "data": fixture_json("alertmanager_webhook_02_firing_HighCPU.json"),
        }
        r = await i.client.post("/v1/alerts/cloudevents", json=ce)
        assert [a["action"] for a in r.json()["alerts"]] == ["opened", "attached"]
        r = await i.client.post("/v1/alerts/cloudevents", json={**ce, "specversion": "0.3"})
        assert r.status_code == 422 and r.json()["detail"].startswith("specversion")


async def test_canonical_alerts_still_work_with_the_environment_key() -> None:
    async with intake() as i:
        alert = {"title": "Disk full", "service": "db", "severity": "critical", "dedup_key": "disk-db-1"}
        r = await i.client.post("/v1/alerts", json=alert)
        assert r.status_code == 202 and r.json()["action"] == "opened"
        assert (await i.client.post("/v1/alerts", json=alert)).json()["action"] == "repeated"
        r = await i.client.post("/v1/alerts", json={**alert, "severity": "urgent"})
        assert r.status_code == 422 and "severity" in r.json()["detail"]
        r = await i.client.post("/v1/alerts", json=alert, headers=bearer(ADMIN))
        assert r.status_code == 202  # operators may post through the default integration

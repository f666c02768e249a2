"""End to end in the embedded mode: a storm of alerts on a business-critical service makes exactly
one major-incident proposal; an incident manager accepts it; analytics' timeline says who, when
and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.auth import Role, sign_token
from shared.launcher import embedded_apps
from shared.settings import Settings
from tests.helpers import eventually, running

ADMIN, KEY, SECRET = "admin-token", "integration-key", "s" * 32

POLICY = """
triage:
  services:
    payments:
      team: payments-team
      criticality: business_critical
  major:
    storm:
      incidents: 3
      alerts: 5
      window_minutes: 10
"""


async def test_a_storm_on_a_critical_service_is_proposed_once_and_accepted(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = Settings(
        data_dir=tmp_path, admin_token=ADMIN, integration_key=KEY, secret=SECRET, policy=policy
    )
    integration = {"Authorization": f"Bearer {KEY}"}
    manager = {"Authorization": f"Bearer {sign_token(SECRET, 'ima', Role.INCIDENT_MANAGER)}"}
    responder = {"Authorization": f"Bearer {sign_token(SECRET, 'bob', Role.RESPONDER)}"}

    async with running(embedded_apps(settings), ADMIN) as c:
        incidents = set()
        for n in range(12):  # different alerts and repeats of them, all on one service
            alert = {
                "title": f"Payment errors ({n % 4})",
                "service": "payments",
                "severity": "warning",
                "dedup_key": f"pay-{n % 4}",
            }
            r = await c["intake"].post("/v1/alerts", json=alert, headers=integration)
            assert r.status_code == 202, r.text
            incidents.add(r.json()["incident_id"])

        async def counted() -> int | None:
            """Wait until triage has counted every alert (12 of them) on the service."""
            store = c["triage"]._transport.app.state.store  # type: ignore[attr-defined]
            seen = [
                e
                for e in await store.read("service-activity-payments")
                if e.type == "ServiceActivityRecorded"
            ]
            return len([e for e in seen if e.event.activity == "alert"]) == 12 or None

        await eventually(counted)
        proposals = (await c["triage"].get("/v1/major-incidents")).json()
        assert len(proposals) == 1, proposals
        [proposal] = proposals
        incident_id = proposal["incident_id"]
        assert incident_id in incidents
        major = proposal["major"]
        assert (major["status"], major["automatic"], major["rule"], major["proposed_by"]) == (
            "proposed",
            True,
            "storm",
            "triage",
        )
        assert (
            major["reason"].startswith("storm: ")
            and "on service payments within 10 minutes" in major["reason"]
        )

        accept = {"business_impact": "customers cannot pay", "notes": "bridge open, vendor called"}
        r = await c["triage"].post(
            f"/v1/incidents/{incident_id}/major/accept", json=accept, headers=responder
        )
        assert r.status_code == 403
        r = await c["triage"].post(f"/v1/incidents/{incident_id}/major/accept", json=accept, headers=manager)
        assert r.status_code == 200, r.text
        assert r.json()["major"]["status"] == "accepted"
        assert (await c["triage"].get("/v1/major-incidents?status=accepted")).json()[0][
            "incident_id"
        ] == incident_id

        async def timeline() -> list[dict[str, Any]] | None:
            r = await c["analytics"].get(f"/v1/incidents/{incident_id}")
            if r.status_code != 200:
                return None
            entries: list[dict[str, Any]] = r.json()["timeline"]
            return entries if any(e["type"] == "MajorIncidentAccepted" for e in entries) else None

        entries = await eventually(timeline)
        proposed = [e for e in entries if e["type"] == "MajorIncidentProposed"]
        accepted = [e for e in entries if e["type"] == "MajorIncidentAccepted"]
        assert len(proposed) == 1 and len(accepted) == 1
        said = " ".join(str(v) for v in (proposed[0]["summary"], proposed[0].get("why")))
        assert proposed[0]["by"] == "triage" and "storm" in said
        said = " ".join(str(v) for v in (accepted[0]["summary"], accepted[0].get("why")))
        assert accepted[0]["by"] == "ima" and "customers cannot pay" in said
        assert proposed[0]["at"] <= accepted[0]["at"]

        state = (await c["triage"].get(f"/v1/incidents/{incident_id}/triage")).json()
        assert state["team"] == "payments-team"
        assert state["major"]["post_incident_review"] == "pending"
        assert state["major"]["missing_roles"] == ["incident_manager", "communications_manager"]

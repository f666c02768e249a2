"""Tokens: issued by intake with a role, honoured by every service, revocable everywhere."""

from __future__ import annotations

from pathlib import Path

import httpx

from shared.launcher import embedded_apps
from shared.settings import Settings
from tests.helpers import eventually, running

ADMIN = "admin-token"


async def test_a_token_issued_by_intake_works_everywhere_until_revoked(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, integration_key="k", secret="t" * 32)
    async with running(embedded_apps(settings), ADMIN) as c:
        r = await c["intake"].post("/v1/tokens", json={"subject": "ana", "role": "responder"})
        assert r.status_code == 201, r.text
        issued = r.json()
        token = {"Authorization": f"Bearer {issued['token']}"}
        assert (await c["analytics"].get("/v1/incidents", headers=token)).status_code == 200
        assert (await c["triage"].get("/v1/incidents/x/triage", headers=token)).status_code in (200, 404)
        # A responder may not administer tokens: 403, not 401.
        assert (await c["intake"].get("/v1/tokens", headers=token)).status_code == 403
        listed = (await c["intake"].get("/v1/tokens")).json()
        assert [t["token_id"] for t in listed] == [issued["token_id"]]
        assert "token" not in listed[0]

        assert (await c["intake"].delete(f"/v1/tokens/{issued['token_id']}")).status_code == 204
        assert (await c["intake"].get("/v1/incidents/x", headers=token)).status_code == 401

        async def refused_everywhere() -> bool:
            codes = [
                (await c["analytics"].get("/v1/incidents", headers=token)).status_code,
                (await c["triage"].get("/v1/incidents/x/triage", headers=token)).status_code,
                (await c["comms"].get("/v1/incidents/x/notifications", headers=token)).status_code,
            ]
            return codes == [401, 401, 401]

        await eventually(refused_everywhere)
        assert (await c["intake"].delete("/v1/tokens/unknown")).status_code == 404

    # After a restart, every service still refuses the revoked token.
    async with running(embedded_apps(settings), ADMIN) as c:
        for name, path in (
            ("analytics", "/v1/incidents"),
            ("triage", "/v1/incidents/x/triage"),
            ("comms", "/v1/incidents/x/notifications"),
            ("intake", "/v1/incidents/x"),
        ):
            assert (await c[name].get(path, headers=token)).status_code == 401, name


async def test_bad_token_requests_are_clear(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, admin_token=ADMIN, integration_key="k", secret="t" * 32)
    async with running(embedded_apps(settings), ADMIN) as c:
        r = await c["intake"].post("/v1/tokens", json={"subject": "", "role": "wizard"})
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        async with httpx.AsyncClient(transport=c["intake"]._transport, base_url="http://intake") as anon:
            assert (await anon.post("/v1/tokens", json={"subject": "x", "role": "viewer"})).status_code == 401

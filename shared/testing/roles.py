"""Who may do what: call every route of every service with every role, and tabulate the answers.

`python -m shared.testing.roles` rewrites the table in docs/security.md; a test fails when the
table is stale, when a route answers without credentials, or when a role is refused something a
lesser role may do.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI

from shared.auth import Role, sign_token

SECRET = "role-walk-secret-" + "x" * 16
ROLES = (Role.VIEWER, Role.RESPONDER, Role.COMMUNICATIONS_MANAGER, Role.INCIDENT_MANAGER, Role.ADMIN)
PUBLIC = {"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
BEGIN, END = "<!-- roles:begin -->", "<!-- roles:end -->"
# Routes whose credential is a signed token in the path (a page's acknowledge link): no login at all.
SIGNED_LINKS = {"/v1/ack/{token}"}


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every documented operation (the OpenAPI document lists routes of included routers too)."""
    out = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path not in PUBLIC
        for method in operations
        if method.upper() not in ("HEAD", "OPTIONS")
    ]
    return sorted(out, key=lambda mp: (mp[1], mp[0]))


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x0", path)


async def walk(apps: Mapping[str, FastAPI]) -> dict[tuple[str, str, str], dict[str, int]]:
    """(service, method, path) -> {who: status}; `who` is "none", a role, or "integration"."""
    from tests.helpers import running

    tokens = {role.value: sign_token(SECRET, f"walker-{role.value}", role) for role in ROLES}
    results: dict[tuple[str, str, str], dict[str, int]] = {}
    async with running(apps, "") as clients:
        for service, app in apps.items():
            client = clients[service]
            for method, path in routes(app):
                answers: dict[str, int] = {}
                for who in ("none", *tokens):
                    headers = (
                        {"Authorization": f"Bearer {tokens[who]}"} if who in tokens else {"Authorization": ""}
                    )
                    body: dict[str, object] | None = {} if method in ("POST", "PUT", "PATCH") else None
                    r = await client.request(method, concrete(path), json=body, headers=headers)
                    answers[who] = r.status_code
                results[(service, method, path)] = answers
    return results


def least_role(answers: Mapping[str, int]) -> str:
    """The lowest role not refused. Sender endpoints take integration keys, not people's tokens:
    every role below admin is unauthenticated there (401), or the key is read from the body, which
    is validated first (an empty body is a 400/422 whoever asks)."""
    codes = [answers[role.value] for role in ROLES]
    if all(code in (400, 422) for code in [answers["none"], *codes]):
        return "integration key (in the body or query)"
    if all(code == 401 for code in codes[:-1]):
        return "integration key (or admin)"
    allowed = [role.value for role in ROLES if answers[role.value] not in (401, 403)]
    return allowed[0] if allowed else "nobody"


def table(results: Mapping[tuple[str, str, str], Mapping[str, int]]) -> str:
    lines = ["| service | method | path | least role |", "|---|---|---|---|"]
    for (service, method, path), answers in results.items():
        who = "signed link (the token in the path)" if path in SIGNED_LINKS else least_role(answers)
        lines.append(f"| {service} | {method} | `{path}` | {who.replace('_', ' ')} |")
    return "\n".join(lines)


def embedded(tmp: Path) -> dict[str, FastAPI]:
    from shared.launcher import embedded_apps
    from shared.settings import Settings

    settings = Settings(data_dir=tmp, admin_token="walker-admin", integration_key="walker-key", secret=SECRET)
    return embedded_apps(settings)


def main() -> None:
    doc = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/security.md")
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(walk(embedded(Path(tmp))))
    text = doc.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    doc.write_text(text[:start] + "\n" + table(results) + "\n" + text[end:])
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()

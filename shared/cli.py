"""The `lynchpin` command line: start the embedded mode (`up`), and operate a running Lynchpin over
its HTTP APIs (incidents, major incidents, integrations, tokens), check a policy file, run the bench.

Every command that talks to a service builds its `httpx.Client` through `Api`; the transport can be
given as the click context object (`CliRunner().invoke(app, args, obj=httpx.MockTransport(...))`),
which is how the tests run it against in-process apps or a fake that is just a function.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Lynchpin, the open-source incident manager.", no_args_is_help=True)
incidents_app = typer.Typer(help="List, show, acknowledge and resolve incidents.", no_args_is_help=True)
major_app = typer.Typer(help="The major-incident procedure: propose, accept, reject.", no_args_is_help=True)
integrations_app = typer.Typer(help="Alert sources and their keys (admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="Bearer tokens for people and systems (admin).", no_args_is_help=True)
policy_app = typer.Typer(help="The policy file (LYNCHPIN_POLICY).", no_args_is_help=True)
config_app = typer.Typer(help="Settings from the environment (LYNCHPIN_*).", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
app.add_typer(major_app, name="major")
app.add_typer(integrations_app, name="integrations")
app.add_typer(tokens_app, name="tokens")
app.add_typer(policy_app, name="policy")
app.add_typer(config_app, name="config")

JsonOut = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON instead of a table, for scripts.")
]
IfMatch = Annotated[
    int | None, typer.Option("--if-match", help="Act only if the incident is still at this version (ETag).")
]


def out() -> Console:
    return Console(highlight=False, soft_wrap=True)  # a line a script may grep stays one line


def fail(message: str) -> NoReturn:
    """One clear line on stderr, and a non-zero exit."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


class ApiError(Exception):
    """A service answered an error (problem+json), or could not be reached."""


def problem_line(service: str, response: httpx.Response) -> str:
    """`intake: 409 Conflict: <detail>` from an RFC 9457 problem, or the status and a bounded body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("detail" in body or "title" in body):
        title = body.get("title") or response.reason_phrase
        detail = body.get("detail") or ""
        return f"{service}: {response.status_code} {title}: {detail}".rstrip(": ")
    text = " ".join(response.text.split())[:300]
    return f"{service}: {response.status_code} {response.reason_phrase}: {text}".rstrip(": ")


@dataclass(frozen=True)
class Api:
    """Where the services are and who we are; one short-lived client per call."""

    urls: Mapping[str, str]
    token: str | None
    transport: httpx.BaseTransport | None = None
    timeout: float = 10.0

    def client(self, service: str) -> httpx.Client:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return httpx.Client(
            base_url=self.urls[service], headers=headers, transport=self.transport, timeout=self.timeout
        )

    def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            with self.client(service) as client:
                response = client.request(method, path, json=body, params=query, headers=headers)
        except httpx.HTTPError as e:
            raise ApiError(
                f"cannot reach {service} at {self.urls[service]} ({e}); is Lynchpin running? "
                f"(`lynchpin up`, or set LYNCHPIN_{service.upper()}_URL)"
            ) from None
        if response.status_code == 401 and not self.token:
            raise ApiError(problem_line(service, response) + " (give --token or set LYNCHPIN_TOKEN)")
        if response.status_code >= 400:
            raise ApiError(problem_line(service, response))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{service}: {response.status_code}: the answer is not JSON") from None


def api(ctx: typer.Context) -> Api:
    found = ctx.find_object(Api)
    assert found is not None, "the main callback builds the Api"
    return found


def call(ctx: typer.Context, service: str, method: str, path: str, **kwargs: Any) -> Any:
    try:
        return api(ctx).call(service, method, path, **kwargs)
    except ApiError as e:
        fail(str(e))


def _url(service: str) -> Any:
    return typer.Option(
        f"--{service}-url", envvar=f"LYNCHPIN_{service.upper()}_URL", help=f"Base URL of {service}."
    )


@app.callback()
def connect(
    ctx: typer.Context,
    intake_url: Annotated[str, _url("intake")] = "http://127.0.0.1:8001",
    triage_url: Annotated[str, _url("triage")] = "http://127.0.0.1:8002",
    comms_url: Annotated[str, _url("comms")] = "http://127.0.0.1:8003",
    analytics_url: Annotated[str, _url("analytics")] = "http://127.0.0.1:8004",
    token: Annotated[
        str | None,
        typer.Option(
            envvar=["LYNCHPIN_TOKEN", "LYNCHPIN_ADMIN_TOKEN"],
            help="Bearer token (else LYNCHPIN_TOKEN, else LYNCHPIN_ADMIN_TOKEN).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Lynchpin, the open-source incident manager. `lynchpin up` runs it; the other commands
    talk to a running Lynchpin over HTTP."""
    transport = ctx.obj if isinstance(ctx.obj, httpx.BaseTransport) else None
    urls = {"intake": intake_url, "triage": triage_url, "comms": comms_url, "analytics": analytics_url}
    ctx.obj = Api({k: v.rstrip("/") for k, v in urls.items()}, token, transport)


@app.command()
def up() -> None:
    """Run all four services in one process on the embedded default (SQLite under LYNCHPIN_DATA_DIR)."""
    from shared.launcher import main as launch

    launch()


@app.command()
def rebuild() -> None:
    """Rebuild analytics' read models from the start of every service's log (run with analytics stopped)."""
    import asyncio

    from services.analytics.rebuild import rebuild as run
    from shared.settings import Settings

    typer.echo(str(asyncio.run(run(Settings()))))


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as v

    typer.echo(v("lynchpin"))


@app.command()
def healthcheck(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="intake, triage, comms or analytics.")],
    ready: Annotated[
        bool, typer.Option("--ready", help="Check /readyz (the store answers) instead.")
    ] = False,
) -> None:
    """Exit 0 when the service on this host answers its /healthz (the container health check)."""
    from shared.settings import SERVICES, Settings

    if service not in SERVICES:
        fail(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    url = f"http://127.0.0.1:{Settings().port(service)}/{'readyz' if ready else 'healthz'}"
    try:
        with httpx.Client(transport=api(ctx).transport, timeout=3.0) as client:
            status = client.get(url).status_code
    except httpx.HTTPError as e:
        fail(f"{service}: {url}: {e}")
    if status != 200:
        fail(f"{service}: {url} answered {status}")
    out().print(f"{service}: ok")


# Incidents -------------------------------------------------------------------------------------------


def _when(value: Any) -> str:
    return str(value)[:19].replace("T", " ") if value else ""


@incidents_app.command("list")
def incidents_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="open, acknowledged, resolved...")] = None,
    priority: Annotated[str | None, typer.Option(help="P1..P5")] = None,
    service: Annotated[str | None, typer.Option(help="Only this service's incidents.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Per page.")] = 50,
    every: Annotated[bool, typer.Option("--all", help="Follow every page, not only the first.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Incidents, newest first (from analytics)."""
    params: dict[str, Any] = {"status": status, "priority": priority, "service": service, "limit": limit}
    items: list[dict[str, Any]] = []
    with Console(stderr=True).status("Fetching incidents...") as waiting:
        while True:
            page = call(ctx, "analytics", "GET", "/v1/incidents", params=params)
            items += page.get("items", [])
            params["cursor"] = page.get("next")
            waiting.update(f"Fetching incidents... {len(items)}")
            if not every or params["cursor"] is None:
                break
    if as_json:
        print_json({"items": items, "next": params["cursor"]})
        return
    more = " (more: --all, or raise --limit)" if params["cursor"] else ""
    table = Table(title=f"{len(items)} incident(s){more}")
    for column in ("id", "priority", "status", "service", "title", "opened", "alerts", "major"):
        table.add_column(column, no_wrap=column in ("id", "opened"), overflow="fold")
    for i in items:
        table.add_row(
            i["id"],
            i.get("priority") or "",
            i.get("status") or "",
            i.get("service") or "",
            i.get("title") or "",
            _when(i.get("opened_at")),
            str(i.get("alert_count", "")),
            i.get("major") or "",
        )
    out().print(table)


@incidents_app.command("show")
def incidents_show(
    ctx: typer.Context, incident_id: Annotated[str, typer.Argument()], as_json: JsonOut = False
) -> None:
    """One incident and its timeline from every service (from analytics)."""
    doc = call(ctx, "analytics", "GET", f"/v1/incidents/{incident_id}")
    if as_json:
        print_json(doc)
        return
    console = out()
    console.print(f"[bold]{doc.get('title', '')}[/bold]  ({doc['id']})")
    facts = Table.grid(padding=(0, 2))
    for key in ("status", "priority", "severity", "service", "major", "opened_at", "acknowledged_at"):
        if doc.get(key):
            facts.add_row(key.replace("_", " "), _when(doc[key]) if key.endswith("_at") else str(doc[key]))
    for key in ("resolved_at",):
        if doc.get(key):
            facts.add_row("resolved at", _when(doc[key]))
    facts.add_row("alerts", str(doc.get("alert_count", 0)))
    facts.add_row(
        "notifications", f"{doc.get('notifications_sent', 0)}/{doc.get('notification_count', 0)} sent"
    )
    console.print(facts)
    timeline = Table(title="Timeline")
    for column in ("at", "source", "by", "what"):
        timeline.add_column(column, no_wrap=column == "at", overflow="fold")
    for item in doc.get("timeline", []):
        timeline.add_row(
            _when(item.get("at")), item.get("source", ""), item.get("by", ""), item.get("summary", "")
        )
    console.print(timeline)


def _changed(incident: Mapping[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        print_json(incident)
    else:
        out().print(
            f"Incident {incident['id']} {verb}: now {incident['status']} (version {incident['version']})"
        )


def _if_match(version: int | None) -> dict[str, str] | None:
    return {"If-Match": f'"{version}"'} if version is not None else None


@incidents_app.command("open")
def incidents_open(
    ctx: typer.Context,
    title: Annotated[str, typer.Option(help="What is wrong.")],
    service: Annotated[str, typer.Option(help="The affected service.")],
    severity: Annotated[str, typer.Option(help="critical, high, warning, info...")] = "high",
    description: Annotated[str, typer.Option()] = "",
    as_json: JsonOut = False,
) -> None:
    """Open an incident by hand (intake)."""
    body = {"title": title, "service": service, "severity": severity, "description": description}
    _changed(call(ctx, "intake", "POST", "/v1/incidents", body=body), "opened", as_json)


@incidents_app.command("ack")
def incidents_ack(
    ctx: typer.Context, incident_id: str, if_match: IfMatch = None, as_json: JsonOut = False
) -> None:
    """Acknowledge an incident (intake)."""
    path = f"/v1/incidents/{incident_id}/acknowledge"
    _changed(call(ctx, "intake", "POST", path, headers=_if_match(if_match)), "acknowledged", as_json)


@incidents_app.command("resolve")
def incidents_resolve(
    ctx: typer.Context,
    incident_id: str,
    reason: Annotated[str, typer.Option(help="What fixed it; goes on the timeline.")] = "resolved",
    if_match: IfMatch = None,
    as_json: JsonOut = False,
) -> None:
    """Resolve an incident (intake)."""
    path = f"/v1/incidents/{incident_id}/resolve"
    result = call(ctx, "intake", "POST", path, body={"reason": reason}, headers=_if_match(if_match))
    _changed(result, "resolved", as_json)


# Major incidents -------------------------------------------------------------------------------------


def _major(ctx: typer.Context, incident_id: str, action: str, body: dict[str, str], as_json: bool) -> None:
    result = call(ctx, "triage", "POST", f"/v1/incidents/{incident_id}/major/{action}", body=body)
    if as_json:
        print_json(result)
        return
    major = result.get("major") if isinstance(result, dict) else None
    state = major.get("status") if isinstance(major, dict) else None
    past = {"propose": "proposed", "accept": "accepted", "reject": "rejected"}[action]
    suffix = f" (major-incident state: {state})" if isinstance(state, str) else ""
    out().print(f"Major incident {past} for {incident_id}{suffix}")


@major_app.command("propose")
def major_propose(
    ctx: typer.Context,
    incident_id: str,
    reason: Annotated[str, typer.Option(help="Why this is a major incident (required).")],
    as_json: JsonOut = False,
) -> None:
    """Propose an incident as major (any responder)."""
    _major(ctx, incident_id, "propose", {"reason": reason}, as_json)


@major_app.command("accept")
def major_accept(
    ctx: typer.Context,
    incident_id: str,
    business_impact: Annotated[str, typer.Option(help="The business impact (required).")],
    notes: Annotated[str, typer.Option(help="Notes for the major-incident team (required).")],
    as_json: JsonOut = False,
) -> None:
    """Accept a proposal: the major-incident procedure starts (incident manager only)."""
    _major(ctx, incident_id, "accept", {"business_impact": business_impact, "notes": notes}, as_json)


@major_app.command("reject")
def major_reject(
    ctx: typer.Context,
    incident_id: str,
    reason: Annotated[str, typer.Option(help="Why it is not major (required).")],
    as_json: JsonOut = False,
) -> None:
    """Reject a proposal (incident manager only)."""
    _major(ctx, incident_id, "reject", {"reason": reason}, as_json)


# Integrations and tokens -----------------------------------------------------------------------------


def _secret_once(what: str, secret: Any, about: str) -> None:
    if not isinstance(secret, str) or not secret:
        fail(f"the service created the {what} but returned no {what}; nothing to show")
    console = out()
    console.print(f"Created {about}.")
    console.print(f"Its {what} is shown only this once; store it now:")
    console.print(secret, markup=False, soft_wrap=True)


@integrations_app.command("create")
def integrations_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for this alert source.")],
    service: Annotated[str, typer.Option(help="The service its alerts are about, unless they say.")],
    source: Annotated[
        str,
        typer.Option(help="alertmanager, grafana, pagerduty, datadog, cloudevents, canonical or heartbeat."),
    ] = "canonical",
    as_json: JsonOut = False,
) -> None:
    """Create an integration and print its key (the only time it is shown)."""
    body = {"name": name, "source_type": source, "default_service": service}
    created = call(ctx, "intake", "POST", "/v1/integrations", body=body)
    if as_json:
        print_json(created)
        return
    _secret_once("key", created.get("key"), f"integration {created.get('id', name)} ({source})")


@integrations_app.command("list")
def integrations_list(ctx: typer.Context, as_json: JsonOut = False) -> None:
    """The integrations (keys are never shown again)."""
    items = call(ctx, "intake", "GET", "/v1/integrations")
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{len(items)} integration(s)")
    for column in ("id", "name", "source", "default service", "resolve rule"):
        table.add_column(column, overflow="fold")
    for i in items:
        table.add_row(
            str(i.get("id", "")),
            i.get("name", ""),
            i.get("source_type", ""),
            i.get("default_service", ""),
            i.get("resolve_rule", ""),
        )
    out().print(table)


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Who or what uses the token (e.g. alice@example.com).")],
    role: Annotated[
        str,
        typer.Option(help="viewer, responder, communications_manager, incident_manager or admin."),
    ] = "responder",
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Expire after this many days (the API's default: 90).")
    ] = None,
    as_json: JsonOut = False,
) -> None:
    """Issue a bearer token with a role and print it (the only time it is shown)."""
    body: dict[str, Any] = {"subject": subject, "role": role}
    if expires_in_days is not None:
        body["expires_in_days"] = expires_in_days
    created = call(ctx, "intake", "POST", "/v1/tokens", body=body)
    if as_json:
        print_json(created)
        return
    expiry = f", expires {_when(created.get('expires_at'))}" if created.get("expires_at") else ""
    _secret_once(
        "token", created.get("token"), f"token {created.get('token_id', '')} for {subject} ({role}{expiry})"
    )


@tokens_app.command("list")
def tokens_list(ctx: typer.Context, as_json: JsonOut = False) -> None:
    """Issued tokens (never the secrets)."""
    items = call(ctx, "intake", "GET", "/v1/tokens")
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{len(items)} token(s)")
    for column in ("id", "subject", "role", "expires", "revoked"):
        table.add_column(column, overflow="fold", no_wrap=column == "id")
    for t in items:
        table.add_row(
            t.get("token_id", ""),
            t.get("subject", ""),
            t.get("role", ""),
            _when(t.get("expires_at")),
            "yes" if t.get("revoked") else "",
        )
    out().print(table)


@tokens_app.command("revoke")
def tokens_revoke(ctx: typer.Context, token_id: str) -> None:
    """Revoke a token: every service refuses it from then on."""
    call(ctx, "intake", "DELETE", f"/v1/tokens/{token_id}")
    out().print(f"Token {token_id} revoked.")


# Policy, configuration, bench ------------------------------------------------------------------------


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="The policy file (.yaml, .yml or .toml).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the policy in force, as JSON.")] = False,
) -> None:
    """Validate a policy file; print every problem with its place in the file."""
    from shared.policy import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as e:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for line in str(e).splitlines():
            err.print(f"error: {line}", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        print_json(policy.model_dump(mode="json"))
    else:
        out().print(f"{file}: valid policy (version {policy.version})", markup=False)


@config_app.command("show")
def config_show(as_json: JsonOut = False) -> None:
    """The settings this environment gives (secrets masked)."""
    from shared.settings import Settings

    values = {k: _masked(k, v) for k, v in Settings().model_dump(mode="json").items()}
    if as_json:
        print_json(values)
        return
    table = Table(title="Settings")
    table.add_column("env var", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in values.items():
        table.add_row(f"LYNCHPIN_{name.upper()}", "" if value is None else str(value))
    out().print(table)


SECRET_FIELDS = frozenset({"admin_token", "integration_key", "secret", "webhook_secret"})


def _masked(name: str, value: Any) -> Any:
    if value is None or name not in SECRET_FIELDS:
        return value
    return "****"


@config_app.command("reference")
def config_reference() -> None:
    """Every setting as a Markdown table: env var, default, meaning (docs/operations.md holds it)."""
    typer.echo(settings_reference(), nl=False)


MEANING = {
    "data_dir": "Embedded mode: the folder of the SQLite files (one per service); analytics' read store.",
    "host": "The address the services listen on (`0.0.0.0` in a container).",
    "intake_port": "Intake's port.",
    "triage_port": "Triage's port.",
    "comms_port": "Comms' port.",
    "analytics_port": "Analytics' port.",
    "intake_store_url": "Intake's own store, overriding `LYNCHPIN_STORE_URL`.",
    "triage_store_url": "Triage's own store, overriding `LYNCHPIN_STORE_URL`.",
    "comms_store_url": "Comms' own store, overriding `LYNCHPIN_STORE_URL`.",
    "analytics_store_url": "Analytics' read store (a SQLite file, local to each instance); default under "
    "`LYNCHPIN_DATA_DIR`.",
    "kafka_partitions": "Partitions of each topic Lynchpin creates (the most consumers a group can use).",
    "admin_token": "The operator's admin bearer token (`lynchpin up` generates one when unset).",
    "integration_key": "One integration key for alert sources (`lynchpin up` generates one when unset).",
    "webhook_secret": "Signs comms' webhooks (`X-Lynchpin-Signature`).",
    "max_body_bytes": "Largest request body accepted (413 above).",
    "log_level": "DEBUG, INFO, WARNING or ERROR.",
}
"""What a setting means, for the fields whose model gives no description."""


def settings_reference() -> str:
    """The Markdown table of every Settings field, as docs/operations.md shows it."""
    from shared.settings import Settings

    rows = ["| env var | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "(none)" if default is None else f"`{default}`"
        meaning = field.description or MEANING.get(name, "")
        rows.append(f"| `LYNCHPIN_{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the benchmark (`python -m bench`; extra arguments pass through, e.g. --quick)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / "__main__.py").exists():
        fail(f"the bench ships with the source checkout, not found under {root}")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "bench", *ctx.args], cwd=root))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

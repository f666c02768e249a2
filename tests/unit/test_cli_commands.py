"""CLI commands against a fake API that is just a function (`httpx.MockTransport`), local commands
(policy check, config, bench) against the real thing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from click.testing import Result
from typer.testing import CliRunner

from shared.cli import app, settings_reference

Handler = Callable[[httpx.Request], httpx.Response]


def run(handler: Handler | None, *args: str, env: dict[str, str] | None = None) -> Result:
    transport = httpx.MockTransport(handler) if handler is not None else None
    base = {
        "LYNCHPIN_TOKEN": "tok",
        "LYNCHPIN_INTAKE_URL": "http://intake",
        "LYNCHPIN_TRIAGE_URL": "http://triage",
    }
    return CliRunner().invoke(app, list(args), obj=transport, env={**base, **(env or {})})


class Recorder:
    """Answers every request with `answer` and keeps what was asked."""

    def __init__(self, status: int, answer: Any, content_type: str = "application/json") -> None:
        self.status, self.answer, self.content_type = status, answer, content_type
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = b"" if self.answer is None else json.dumps(self.answer).encode()
        return httpx.Response(self.status, content=body, headers={"content-type": self.content_type})

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


def test_integrations_create_posts_to_intake_and_prints_the_key_once() -> None:
    api = Recorder(201, {"id": "int-1", "name": "prom", "source_type": "alertmanager", "key": "lpk_secret"})
    result = run(api, "integrations", "create", "prom", "--source", "alertmanager", "--service", "db")
    assert result.exit_code == 0, result.output
    [request] = api.requests
    assert (request.method, request.url.host, request.url.path) == ("POST", "intake", "/v1/integrations")
    assert request.headers["authorization"] == "Bearer tok"
    assert api.body == {"name": "prom", "source_type": "alertmanager", "default_service": "db"}
    assert result.stdout.count("lpk_secret") == 1
    assert "shown only this once" in result.stdout


def test_integrations_list_never_shows_keys_and_has_json() -> None:
    api = Recorder(200, [{"id": "int-1", "name": "prom", "source_type": "alertmanager", "key": None}])
    table = run(api, "integrations", "list")
    assert table.exit_code == 0 and "prom" in table.stdout and "alertmanager" in table.stdout
    assert json.loads(run(api, "integrations", "list", "--json").stdout)[0]["id"] == "int-1"


def test_tokens_create_list_and_revoke() -> None:
    issued = {"token_id": "tok-9", "subject": "alice", "role": "incident_manager", "token": "lp1.abc.def"}
    api = Recorder(201, {**issued, "expires_at": "2027-01-01T00:00:00+00:00", "revoked": False})
    created = run(api, "tokens", "create", "alice", "--role", "incident_manager", "--expires-in-days", "30")
    assert created.exit_code == 0, created.output
    assert api.body == {"subject": "alice", "role": "incident_manager", "expires_in_days": 30}
    assert created.stdout.count("lp1.abc.def") == 1 and "tok-9" in created.stdout

    listing = Recorder(200, [{"token_id": "tok-9", "subject": "alice", "role": "admin", "revoked": True}])
    listed = run(listing, "tokens", "list")
    assert listed.exit_code == 0 and "tok-9" in listed.stdout and "yes" in listed.stdout

    gone = Recorder(204, None)
    revoked = run(gone, "tokens", "revoke", "tok-9")
    assert revoked.exit_code == 0, revoked.output
    assert (gone.requests[0].method, gone.requests[0].url.path) == ("DELETE", "/v1/tokens/tok-9")
    assert "tok-9 revoked" in revoked.stdout


def test_major_propose_accept_reject_post_to_triage_with_their_required_fields() -> None:
    api = Recorder(200, {"incident_id": "inc-1", "major": {"status": "proposed", "reason": "x"}})
    proposed = run(api, "major", "propose", "inc-1", "--reason", "checkout down for everyone")
    assert proposed.exit_code == 0, proposed.output
    assert "Major incident proposed for inc-1 (major-incident state: proposed)" in proposed.stdout
    assert (api.requests[-1].url.host, api.requests[-1].url.path) == (
        "triage",
        "/v1/incidents/inc-1/major/propose",
    )
    assert api.body == {"reason": "checkout down for everyone"}

    run(api, "major", "accept", "inc-1", "--business-impact", "no sales", "--notes", "bridge open")
    assert api.requests[-1].url.path == "/v1/incidents/inc-1/major/accept"
    assert api.body == {"business_impact": "no sales", "notes": "bridge open"}

    run(api, "major", "reject", "inc-1", "--reason", "one user")
    assert api.requests[-1].url.path == "/v1/incidents/inc-1/major/reject"
    assert api.body == {"reason": "one user"}


def test_a_missing_required_option_is_refused_before_any_request() -> None:
    api = Recorder(200, {})
    result = run(api, "major", "reject", "inc-1")
    assert result.exit_code == 2
    assert api.requests == []


def test_a_forbidden_answer_is_one_line_with_the_problem_detail() -> None:
    problem = {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "this action needs the incident_manager role; you are responder",
    }
    api = Recorder(403, problem, "application/problem+json")
    result = run(api, "major", "accept", "inc-1", "--business-impact", "x", "--notes", "y")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: triage: 403 Forbidden: this action needs the incident_manager role; you are responder"
    ]


def test_an_answer_that_is_not_a_problem_is_still_one_bounded_line() -> None:
    result = run(
        lambda r: httpx.Response(502, text="<html>\n" + "x" * 5000 + "\n</html>"), "tokens", "revoke", "t"
    )
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: intake: 502 Bad Gateway: <html>") and len(line) < 400


def test_an_unreachable_service_says_where_it_looked() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    result = run(refuse, "incidents", "ack", "inc-1", env={"LYNCHPIN_INTAKE_URL": "http://10.0.0.9:8001/"})
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert "cannot reach intake at http://10.0.0.9:8001" in line and "LYNCHPIN_INTAKE_URL" in line


def test_the_token_comes_from_the_option_first_then_lynchpin_token_then_the_admin_token() -> None:
    api = Recorder(204, None)
    run(api, "--token", "opt", "tokens", "revoke", "t")
    run(api, "tokens", "revoke", "t")
    CliRunner().invoke(
        app,
        ["tokens", "revoke", "t"],
        obj=httpx.MockTransport(api),
        env={"LYNCHPIN_TOKEN": None, "LYNCHPIN_ADMIN_TOKEN": "adm", "LYNCHPIN_INTAKE_URL": "http://intake"},
    )
    assert [r.headers["authorization"] for r in api.requests] == ["Bearer opt", "Bearer tok", "Bearer adm"]


def test_policy_check_accepts_a_valid_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\n")
    result = run(None, "policy", "check", str(policy))
    assert result.exit_code == 0, result.output
    assert "valid policy" in result.stdout
    assert json.loads(run(None, "policy", "check", str(policy), "--json").stdout)["version"] == 1


def test_policy_check_prints_every_problem_with_its_place_and_fails(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 7\nnonsense: true\n")
    result = run(None, "policy", "check", str(policy))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert any(f"{policy}: version:" in line for line in lines)
    assert any(f"{policy}: nonsense:" in line for line in lines)


def test_policy_check_of_a_file_that_is_not_yaml(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: [1\n")
    result = run(None, "policy", "check", str(policy))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {policy}: not valid YAML")


def test_config_show_masks_secrets() -> None:
    result = run(
        None,
        "config",
        "show",
        "--json",
        env={"LYNCHPIN_ADMIN_TOKEN": "very-secret", "LYNCHPIN_HOST": "0.0.0.0"},
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["admin_token"] == "****" and shown["host"] == "0.0.0.0"
    assert "very-secret" not in result.stdout


def test_config_reference_is_the_settings_table() -> None:
    result = run(None, "config", "reference")
    assert result.exit_code == 0
    assert result.stdout == settings_reference()
    assert "| `LYNCHPIN_LOG_FORMAT` | `text` |" in result.stdout


def test_bench_runs_python_m_bench_with_the_arguments_given() -> None:
    # bench's own argparse answers: --help exits 0, an unknown flag exits 2
    assert run(None, "bench", "--help").exit_code == 0
    assert run(None, "bench", "--no-such-flag").exit_code == 2


def test_healthcheck_asks_the_local_service_on_its_configured_port() -> None:
    seen: list[str] = []

    def health(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200 if request.url.path == "/healthz" else 503, json={})

    ok = run(health, "healthcheck", "triage", env={"LYNCHPIN_TRIAGE_PORT": "9002"})
    assert ok.exit_code == 0, ok.output
    not_ready = run(health, "healthcheck", "triage", "--ready", env={"LYNCHPIN_TRIAGE_PORT": "9002"})
    assert not_ready.exit_code == 1
    assert seen == ["http://127.0.0.1:9002/healthz", "http://127.0.0.1:9002/readyz"]
    assert run(health, "healthcheck", "billing").exit_code == 1


def test_incidents_list_all_follows_the_cursor_to_the_last_page() -> None:
    pages = {
        None: {"items": [{"id": "a"}, {"id": "b"}], "next": "c2"},
        "c2": {"items": [{"id": "c"}], "next": None},
    }
    asked: list[str | None] = []

    def analytics(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        asked.append(cursor)
        return httpx.Response(200, json=pages[cursor])

    env = {"LYNCHPIN_ANALYTICS_URL": "http://analytics"}
    first = json.loads(run(analytics, "incidents", "list", "--json", "--limit", "2", env=env).stdout)
    assert [i["id"] for i in first["items"]] == ["a", "b"] and first["next"] == "c2"
    every = json.loads(run(analytics, "incidents", "list", "--all", "--json", env=env).stdout)
    assert [i["id"] for i in every["items"]] == ["a", "b", "c"] and every["next"] is None
    assert asked == [None, None, "c2"]
    table = run(analytics, "incidents", "list", env=env)
    assert "2 incident(s) (more: --all" in table.stdout

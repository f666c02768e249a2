"""Schemathesis against every service's OpenAPI, over real HTTP to the embedded process.

Checks: no server errors, every error answer is problem+json, documented responses match their
schemas. A fixed example budget per operation keeps the run bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.e2e.test_embedded_crash import free_ports, wait_until

ADMIN = "fuzz-admin"
SERVICES = ("intake", "triage", "comms", "analytics")
EXAMPLES = int(os.environ.get("LYNCHPIN_FUZZ_EXAMPLES", "12"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("fuzz")
    ports = dict(zip(SERVICES, free_ports(4), strict=True))
    env = {
        **os.environ,
        "LYNCHPIN_DATA_DIR": str(data),
        "LYNCHPIN_ADMIN_TOKEN": ADMIN,
        "LYNCHPIN_INTEGRATION_KEY": "fuzz-key",
        "LYNCHPIN_SECRET": "f" * 32,
        **{f"LYNCHPIN_{s.upper()}_PORT": str(p) for s, p in ports.items()},
    }
    log = data / "lynchpin.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shared.launcher"], env=env, stdout=out, stderr=out)
    try:
        urls = {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}
        wait_until(lambda: all(_ready(u) for u in urls.values()), timeout=60, what="services ready", log=log)
        yield urls
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def problem_json_on_errors(ctx: Any, response: Any, case: Case) -> bool | None:
    """Every 4xx/5xx answer is RFC 9457 problem+json (PagerDuty's drop-in keeps PagerDuty's shape)."""
    if response.status_code >= 400 and not case.path.startswith("/v2/"):
        content_type = response.headers.get("content-type", [""])
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/problem+json"), (
            f"{case.method} {case.path} answered {response.status_code} as {content_type!r}"
        )
    return None


FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("service", SERVICES)
def test_api_never_errs_and_answers_as_documented(cluster: dict[str, str], service: str) -> None:
    schema = schemathesis.openapi.from_url(f"{cluster[service]}/openapi.json")
    failures: list[str] = []
    operations = 0
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @FUZZ
        def run(case: Case) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {ADMIN}"},
                checks=[not_a_server_error, response_schema_conformance, problem_json_on_errors],
            )
            statuses.append(response.status_code)

        try:
            run()
        except Exception as error:  # collect every operation's failure, then report them all
            failures.append(
                f"{operation.method.upper()} {operation.path}: {type(error).__name__}: {error}"[:2000]
            )
    assert operations > 0 and len(statuses) >= operations, (operations, len(statuses))
    print(f"{service}: {operations} operations, {len(statuses)} requests, statuses {sorted(set(statuses))}")
    assert not failures, "\n\n".join(failures)


def test_the_fuzzed_documents_are_there(cluster: dict[str, str]) -> None:
    for url in cluster.values():
        assert httpx.get(f"{url}/openapi.json").json()["paths"]

"""The operator docs cannot go stale: the settings table is generated from the model, and every CLI
command is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from shared.cli import app, settings_reference
from shared.settings import DEFAULT_PORTS, SERVICES, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_settings_table_in_operations_md_is_generated_from_the_settings_model() -> None:
    text = (DOCS / "operations.md").read_text()
    found = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert found, "docs/operations.md lost its settings markers"
    assert found.group(1) == settings_reference(), (
        "docs/operations.md is stale: replace the table between the markers with the output of "
        "`python -m shared.cli config reference`"
    )


def test_every_setting_has_its_env_var_default_and_a_meaning() -> None:
    rows = settings_reference().splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    for row, name in zip(rows, Settings.model_fields, strict=True):
        env_var, default, meaning = (cell.strip() for cell in row.strip("|").split("|"))
        assert env_var == f"`LYNCHPIN_{name.upper()}`"
        assert default
        assert meaning, f"{name} needs a description (Field(description=...) or shared.cli.MEANING)"


def commands(group: Any, prefix: str = "lynchpin") -> list[str]:
    """Every leaf command's full name (typer's groups need not be click's own class)."""
    found: list[str] = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += commands(command, f"{prefix} {name}")
        else:
            found.append(f"{prefix} {name}")
    return found


def test_every_cli_command_is_in_operations_md() -> None:
    text = (DOCS / "operations.md").read_text()
    listed = commands(typer.main.get_command(app))
    assert "lynchpin incidents list" in listed and "lynchpin up" in listed
    missing = [c for c in listed if f"`{c}" not in text and c != "lynchpin version"]
    assert not missing, f"document these commands in docs/operations.md: {missing}"


def test_api_md_links_every_service_s_openapi_and_interactive_docs() -> None:
    text = (DOCS / "api.md").read_text()
    for service in SERVICES:
        port = DEFAULT_PORTS[service]
        assert f"http://127.0.0.1:{port}/openapi.json" in text
        assert f"http://127.0.0.1:{port}/docs" in text
    for topic in ("problem+json", "If-Match", "ETag", "Idempotency-Key", "Bearer"):
        assert topic in text


def test_deploy_md_says_what_was_validated_and_what_was_not_run() -> None:
    text = (DOCS / "deploy.md").read_text()
    assert "## What was validated, and what was not run" in text
    assert "Not run here" in text


def test_operations_md_names_every_metric_the_shared_web_layer_exports() -> None:
    from shared.web import Metrics

    text = (DOCS / "operations.md").read_text()
    families = {m.name for m in Metrics("intake").registry.collect()}
    assert families == {"lynchpin_http_requests", "lynchpin_http_request_seconds"}
    assert "`lynchpin_http_requests_total`" in text and "`lynchpin_http_request_seconds`" in text

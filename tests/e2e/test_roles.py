"""Every route of every service with every role: 401 without credentials, 403 below the route's
least role, never refused to a role above it; and docs/security.md's table says the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.auth import Role
from shared.testing.roles import BEGIN, END, ROLES, SIGNED_LINKS, embedded, least_role, table, walk

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], dict[str, int]]:
    import asyncio

    return asyncio.run(walk(embedded(tmp_path_factory.mktemp("roles"))))


def test_every_route_but_health_needs_credentials(
    results: dict[tuple[str, str, str], dict[str, int]],
) -> None:
    def refused(answers: dict[str, int]) -> bool:
        if least_role(answers).startswith("integration key (in the body"):
            return True  # the key is part of the body: an empty body is refused before anything else
        return answers["none"] == 401

    assert [k for k, answers in results.items() if not refused(answers)] == []
    assert len(results) > 20


def test_no_role_is_refused_what_a_lesser_role_may_do(
    results: dict[tuple[str, str, str], dict[str, int]],
) -> None:
    rank = {
        Role.VIEWER: 0,
        Role.RESPONDER: 1,
        Role.COMMUNICATIONS_MANAGER: 2,
        Role.INCIDENT_MANAGER: 2,
        Role.ADMIN: 3,
    }
    for key, answers in results.items():
        if key[2] in SIGNED_LINKS:
            # a people's token is not the credential here: a made-up link is refused to everyone
            assert set(answers.values()) == {401}, (key, answers)
            continue
        for lesser in ROLES:
            for greater in ROLES:
                if rank[greater] > rank[lesser] and answers[lesser.value] not in (401, 403):
                    assert answers[greater.value] not in (401, 403), (key, lesser, greater, answers)
        assert answers[Role.ADMIN.value] != 401, key  # a valid token is never "unauthenticated"


def test_no_route_answers_a_server_error(results: dict[tuple[str, str, str], dict[str, int]]) -> None:
    assert [k for k, answers in results.items() if any(code >= 500 for code in answers.values())] == []


def test_the_documented_table_is_current(results: dict[tuple[str, str, str], dict[str, int]]) -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    documented = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert documented == table(results), "docs/security.md is stale: run `python -m shared.testing.roles`"

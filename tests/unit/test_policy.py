"""The policy file: defaults built in, YAML or TOML, precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.policy import Policy, PolicyError, load_policy, parse_policy


def test_no_file_means_the_built_in_defaults() -> None:
    assert load_policy(None) == Policy()


def test_an_empty_yaml_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("")
    assert load_policy(path) == Policy()


def test_toml_and_yaml_say_the_same(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text("version = 1\n")
    (tmp_path / "p.yaml").write_text("version: 1\n")
    assert load_policy(tmp_path / "p.toml") == load_policy(tmp_path / "p.yaml")


def test_errors_name_the_place_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nunknown_section: {}\n")
    with pytest.raises(PolicyError, match=r"policy.yaml: unknown_section: Extra inputs are not permitted"):
        load_policy(path)


def test_broken_syntax_and_missing_files_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("version = = 1")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(path)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="must be a mapping"):
        parse_policy([1, 2])

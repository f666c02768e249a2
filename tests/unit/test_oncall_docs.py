"""The policy example in docs/oncall.md is a valid policy, and answers as the text says."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import yaml

from services.triage.oncall import who
from shared.policy import parse_policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "oncall.md"


def test_the_documented_policy_is_valid() -> None:
    [example] = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)[:1]
    policy = parse_policy(yaml.safe_load(example)).oncall
    schedule = policy.schedule("db-primary")
    assert schedule is not None
    assert who(schedule, datetime(2026, 3, 18, 9, tzinfo=UTC)).person == "lead"  # Wednesday 10:00 in Berlin
    assert who(schedule, datetime(2026, 3, 18, 20, tzinfo=UTC)).person == "ann"  # the evening: the rotation
    assert who(schedule, datetime(2026, 3, 25, 13, tzinfo=UTC)).source == "override"
    assert policy.escalation_for("db", "anything") is not None

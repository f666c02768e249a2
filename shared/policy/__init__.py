"""Policy is data: one file (YAML or TOML, path from LYNCHPIN_POLICY), validated at start.

Each service owns a section (`shared/policy/<section>.py`); every section has built-in defaults,
so an empty file, or none, is a valid policy. Errors name the exact place in the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.policy.analytics import AnalyticsPolicy
from shared.policy.comms import CommsPolicy
from shared.policy.intake import IntakePolicy
from shared.policy.oncall import OnCallPolicy
from shared.policy.triage import TriagePolicy


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1)
    intake: IntakePolicy = Field(default_factory=IntakePolicy)
    triage: TriagePolicy = Field(default_factory=TriagePolicy)
    comms: CommsPolicy = Field(default_factory=CommsPolicy)
    analytics: AnalyticsPolicy = Field(default_factory=AnalyticsPolicy)
    oncall: OnCallPolicy = Field(default_factory=OnCallPolicy)


class PolicyError(ValueError):
    """The policy file cannot be used; the message lists every problem with its location."""


def parse_policy(raw: Any, *, origin: str = "policy") -> Policy:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PolicyError(f"{origin}: the top level must be a mapping, not {type(raw).__name__}")
    try:
        return Policy.model_validate(raw)
    except ValidationError as e:
        problems = [
            f"{origin}: {'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in e.errors()
        ]
        raise PolicyError("\n".join(problems)) from None


def load_policy(path: Path | None) -> Policy:
    """The policy in `path` (.yaml, .yml or .toml), or the built-in defaults when `path` is None."""
    if path is None:
        return Policy()
    try:
        text = path.read_text()
    except OSError as e:
        raise PolicyError(f"{path}: cannot read: {e.strerror}") from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise PolicyError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {e}") from None
    return parse_policy(raw, origin=str(path))

"""The intake section of the policy file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class IntakePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

"""The comms section of the policy file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CommsPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

"""The analytics section of the policy file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class AnalyticsPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

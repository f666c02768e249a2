"""The event base classes and the vocabulary every event uses."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"
    LOW = "low"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Level(StrEnum):
    """Impact and urgency share one three-step scale."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: ClassVar[int] = 1

    type: str
    occurred_at: datetime

    @property
    def partition_key(self) -> str | None:
        return None


class IncidentEvent(Event):
    incident_id: str

    @property
    def partition_key(self) -> str | None:
        return self.incident_id

"""The intake section of the policy file: severity tables, default grouping and resolve rules per
source type, maintenance windows, and bounds on what intake keeps."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events.base import Severity


class ResolveRule(StrEnum):
    """When an incident opened from alerts resolves by itself."""

    ALL = "all"  # when every alert attached to it has resolved (the default)
    FIRST = "first"  # when the alert that opened it resolves
    LAST = "last"  # when the alert attached most recently resolves
    NEVER = "never"  # only by hand


class GroupBy(StrEnum):
    """Which open incident a new alert joins."""

    SENDER = "sender"  # the sender's own group (Alertmanager/Grafana groupKey, Datadog aggreg_key)
    LABELS = "labels"  # the values of `group_labels`
    SERVICE = "service"  # every alert of one service
    NONE = "none"  # each alert key opens its own incident


class Grouping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    by: GroupBy = GroupBy.SENDER
    labels: tuple[str, ...] = ()
    window_seconds: int = Field(
        default=3600, ge=0, le=30 * 86400, description="Join only an incident opened this recently; 0: any"
    )


class MaintenanceWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    service: str = Field(min_length=1, max_length=255)
    starts_at: datetime
    ends_at: datetime
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


DEFAULT_SEVERITY: dict[str, Severity] = {
    # Alertmanager/Grafana `severity` label conventions, PagerDuty, Datadog priorities and alert types.
    "critical": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "emergency": Severity.CRITICAL,
    "p1": Severity.CRITICAL,
    "page": Severity.HIGH,
    "error": Severity.HIGH,
    "high": Severity.HIGH,
    "major": Severity.HIGH,
    "p2": Severity.HIGH,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "medium": Severity.WARNING,
    "minor": Severity.WARNING,
    "p3": Severity.WARNING,
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "notice": Severity.INFO,
    "p4": Severity.INFO,
    "low": Severity.LOW,
    "debug": Severity.LOW,
    "trace": Severity.LOW,
    "p5": Severity.LOW,
}

DEFAULT_GROUPING: dict[str, Grouping] = {
    "alertmanager": Grouping(by=GroupBy.SENDER),
    "grafana": Grouping(by=GroupBy.SENDER),
    "pagerduty": Grouping(by=GroupBy.NONE),
    "datadog": Grouping(by=GroupBy.NONE),
    "cloudevents": Grouping(by=GroupBy.NONE),
    "canonical": Grouping(by=GroupBy.SENDER),
    "heartbeat": Grouping(by=GroupBy.NONE),
}


class IntakePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: dict[str, Severity] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY),
        description="Sender severity (lower-cased) -> Lynchpin severity; integrations may override",
    )
    default_severity: Severity = Severity.WARNING
    grouping: dict[str, Grouping] = Field(
        default_factory=lambda: dict(DEFAULT_GROUPING), description="Default grouping per source type"
    )
    resolve_rule: ResolveRule = ResolveRule.ALL
    maintenance: tuple[MaintenanceWindow, ...] = ()
    raw_max_bytes: int = Field(default=16 * 1024, ge=256, le=512 * 1024)
    heartbeat_timeout_seconds: int = Field(default=300, ge=1, le=7 * 86400)
    default_service: str = Field(default="default", min_length=1, max_length=255)
    sender_time_max_age_seconds: int = Field(
        default=7 * 86400,
        ge=0,
        le=366 * 86400,
        description="A sender's start or end time older than this on arrival is not trusted: the "
        "receive time stands in (a time ahead of the receive time is taken as the receive time)",
    )

    def grouping_for(self, source_type: str) -> Grouping:
        return self.grouping.get(source_type, Grouping(by=GroupBy.NONE))

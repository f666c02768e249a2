"""The analytics section of the policy file: what counts in the metrics, and how SLAs are measured."""

from __future__ import annotations

from datetime import date, time

from pydantic import BaseModel, ConfigDict, Field, field_validator

MINUTE = 60
HOUR = 3600


class BusinessHours(BaseModel):
    """The working week: SLA clocks of the priorities in `business_hours_priorities` run only inside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    days: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4), description="0 = Monday ... 6 = Sunday")
    start: time = time(9, 0)
    end: time = Field(default=time(17, 0), description="00:00 means midnight at the end of the day")
    holidays: tuple[date, ...] = ()

    @field_validator("days")
    @classmethod
    def _days(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if not days or any(d < 0 or d > 6 for d in days):
            raise ValueError("days are 0 (Monday) to 6 (Sunday), at least one")
        return tuple(sorted(set(days)))

    @field_validator("end")
    @classmethod
    def _end(cls, end: time, info: object) -> time:
        start = getattr(info, "data", {}).get("start")
        if start is not None and end != time(0) and end <= start:
            raise ValueError("end must be after start (00:00 means the end of the day)")
        return end

    @field_validator("timezone")
    @classmethod
    def _tz(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {name!r}") from e
        return name


class AnalyticsPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    excluded_categories: tuple[str, ...] = Field(
        default=("test", "drill"),
        description="Incident categories (IncidentOpened.category) left out of every metric.",
    )
    excluded_services: tuple[str, ...] = ()
    response_targets: dict[str, int] = Field(
        default={"P1": 15 * MINUTE, "P2": 30 * MINUTE, "P3": 4 * HOUR, "P4": 8 * HOUR, "P5": 24 * HOUR},
        description="Seconds from opening to acknowledgement, per priority.",
    )
    resolution_targets: dict[str, int] = Field(
        default={"P1": 4 * HOUR, "P2": 8 * HOUR, "P3": 24 * HOUR, "P4": 72 * HOUR, "P5": 120 * HOUR},
        description="Seconds from opening to resolution (time on hold excluded), per priority.",
    )
    business_hours_priorities: tuple[str, ...] = Field(
        default=("P3", "P4", "P5"),
        description="Priorities whose SLA clock runs in business hours only; the others run 24x7.",
    )
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    calendars: dict[str, BusinessHours] = Field(
        default_factory=dict,
        description="Calendars by name, for SLA clocks triage says count in a named calendar; "
        "analytics takes triage's calendars when this is empty.",
    )
    dashboard_refresh_seconds: int = Field(default=30, ge=5, le=3600)

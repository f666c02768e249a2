"""The triage section of the policy file: priority matrix, service catalogue, business hours,
routing, SLA targets, major-incident rules, role requirements and the problem-suggestion rule.

Every field has a built-in default (the ITIL 3x3 matrix, 24x7 unless a service names a calendar),
so an empty section is a valid policy. Durations are seconds (a number) or ISO 8601 (`PT15M`).
"""

from __future__ import annotations

from datetime import date, time, timedelta
from enum import StrEnum
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.events.base import Level, Severity


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"


class Criticality(StrEnum):
    """How much the business depends on a service."""

    BUSINESS_CRITICAL = "business_critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class IncidentRole(StrEnum):
    """The roles people hold on an incident (seed 000)."""

    INCIDENT_MANAGER = "incident_manager"
    SECONDARY_INCIDENT_MANAGER = "secondary_incident_manager"
    COMMUNICATIONS_MANAGER = "communications_manager"
    TECHNICAL_LEAD = "technical_lead"
    SUBJECT_MATTER_EXPERT = "subject_matter_expert"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday 0 ... Sunday 6, as `date.weekday()`."""
        return list(Weekday).index(self)


H, M, L = Level.HIGH, Level.MEDIUM, Level.LOW


def _itil_matrix() -> dict[Level, dict[Level, Priority]]:
    p = Priority
    return {
        H: {H: p.P1, M: p.P2, L: p.P3},
        M: {H: p.P2, M: p.P3, L: p.P4},
        L: {H: p.P3, M: p.P4, L: p.P5},
    }


class Levels(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    impact: Level
    urgency: Level


def _severity_levels() -> dict[Severity, Levels]:
    return {
        Severity.CRITICAL: Levels(impact=H, urgency=H),
        Severity.HIGH: Levels(impact=H, urgency=M),
        Severity.WARNING: Levels(impact=M, urgency=M),
        Severity.INFO: Levels(impact=L, urgency=M),
        Severity.LOW: Levels(impact=L, urgency=L),
    }


def _criticality_impact() -> dict[Criticality, Level]:
    return {Criticality.BUSINESS_CRITICAL: H, Criticality.HIGH: M}


class BusinessHours(BaseModel):
    """A business-hours calendar: working days, a daily window in a time zone, holidays.

    `end` 00:00 means midnight at the end of the day. DST is the time zone's business."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    days: list[Weekday] = Field(
        default_factory=lambda: [Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI],
        min_length=1,
    )
    start: time = time(9, 0)
    end: time = time(17, 0)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.end != time(0) and self.end <= self.start:
            raise ValueError("end must be after start (00:00 means the end of the day)")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ServiceEntry(BaseModel):
    """One service in the catalogue: who owns it, how critical it is, when its SLA clocks run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str = Field(min_length=1, max_length=255)
    criticality: Criticality = Criticality.MEDIUM
    hours: str | None = Field(
        default=None, description="A calendar name from `calendars`; none: SLA clocks run 24x7"
    )


class RoutingRule(BaseModel):
    """The first rule whose conditions all hold routes the incident; empty conditions match anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=255)
    team: str = Field(min_length=1, max_length=255)
    services: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    priorities: list[Priority] = Field(default_factory=list)


class SlaTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    response: timedelta = Field(description="Time to acknowledge")
    resolution: timedelta = Field(description="Time to resolve")
    around_the_clock: bool = Field(
        default=False, description="Count 24x7 even when the service has business hours"
    )

    @field_validator("response", "resolution")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


def _sla_targets() -> dict[Priority, SlaTarget]:
    def hours(n: int) -> timedelta:
        return timedelta(hours=n)

    return {
        Priority.P1: SlaTarget(response=timedelta(minutes=15), resolution=hours(4), around_the_clock=True),
        Priority.P2: SlaTarget(response=timedelta(minutes=30), resolution=hours(8)),
        Priority.P3: SlaTarget(response=hours(2), resolution=hours(24)),
        Priority.P4: SlaTarget(response=hours(8), resolution=hours(72)),
        Priority.P5: SlaTarget(response=hours(24), resolution=hours(168)),
    }


class StormRule(BaseModel):
    """A storm: `incidents` incidents or `alerts` alerts on one service within `window_minutes`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incidents: int = Field(default=5, ge=2)
    alerts: int = Field(default=20, ge=2)
    window_minutes: float = Field(default=10, gt=0, le=24 * 60)


class MajorIncidentRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    auto_propose_priorities: list[Priority] = Field(default_factory=lambda: [Priority.P1])
    auto_propose_criticalities: list[Criticality] = Field(
        default_factory=lambda: [Criticality.BUSINESS_CRITICAL]
    )
    storm: StormRule = Field(default_factory=StormRule)
    storm_criticalities: list[Criticality] = Field(
        default_factory=list,
        description="Which services a storm can make major; empty: any service, catalogued or not",
    )
    review_required: bool = Field(default=True, description="A post-incident review before close")


class RoleRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    required: list[IncidentRole] = Field(
        default_factory=lambda: [IncidentRole.INCIDENT_MANAGER, IncidentRole.COMMUNICATIONS_MANAGER]
    )
    gap_minutes: float = Field(default=15, ge=0)
    shared: list[IncidentRole] = Field(
        default_factory=lambda: [IncidentRole.SUBJECT_MATTER_EXPERT],
        description="Roles several people may hold at once; the others have one holder",
    )


class ProblemRules(BaseModel):
    """Suggest a problem when a service, or an alert fingerprint, recurs `recurrences` times in `days`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recurrences: int = Field(default=3, ge=2)
    days: float = Field(default=7, gt=0, le=90)


class TriagePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    matrix: dict[Level, dict[Level, Priority]] = Field(
        default_factory=_itil_matrix, description="impact -> urgency -> priority"
    )
    severity: dict[Severity, Levels] = Field(
        default_factory=_severity_levels,
        description="What an alert's severity says about impact and urgency when the reporter gave neither",
    )
    criticality_impact: dict[Criticality, Level] = Field(
        default_factory=_criticality_impact,
        description="The least impact an incident on a service of this criticality has",
    )
    calendars: dict[str, BusinessHours] = Field(default_factory=lambda: {"office": BusinessHours()})
    services: dict[str, ServiceEntry] = Field(default_factory=dict)
    routing: list[RoutingRule] = Field(default_factory=list)
    default_team: str = Field(default="service-desk", min_length=1, max_length=255)
    sla: dict[Priority, SlaTarget] = Field(default_factory=_sla_targets)
    sla_warning_fraction: float = Field(default=0.8, gt=0, lt=1)
    major: MajorIncidentRules = Field(default_factory=MajorIncidentRules)
    roles: RoleRules = Field(default_factory=RoleRules)
    problems: ProblemRules = Field(default_factory=ProblemRules)

    @field_validator("matrix")
    @classmethod
    def _every_cell(cls, matrix: dict[Level, dict[Level, Priority]]) -> dict[Level, dict[Level, Priority]]:
        missing = [f"{i.value}/{u.value}" for i in Level for u in Level if u not in matrix.get(i, {})]
        if missing:
            raise ValueError(f"no priority for impact/urgency {', '.join(missing)}")
        return matrix

    @field_validator("severity")
    @classmethod
    def _every_severity(cls, severity: dict[Severity, Levels]) -> dict[Severity, Levels]:
        if absent := [s.value for s in Severity if s not in severity]:
            raise ValueError(f"no impact and urgency for {', '.join(absent)}")
        return severity

    @field_validator("sla")
    @classmethod
    def _every_priority(cls, sla: dict[Priority, SlaTarget]) -> dict[Priority, SlaTarget]:
        if absent := [p.value for p in Priority if p not in sla]:
            raise ValueError(f"no targets for {', '.join(absent)}")
        return sla

    @model_validator(mode="after")
    def _calendars_exist(self) -> Self:
        for name, entry in self.services.items():
            if entry.hours is not None and entry.hours not in self.calendars:
                raise ValueError(f"services.{name}.hours: no calendar named {entry.hours!r}")
        return self

    def hours_for(self, service: str, priority: Priority | None) -> str | None:
        """The calendar an SLA clock of this service and priority counts in (None: 24x7)."""
        entry = self.services.get(service)
        if entry is None or entry.hours is None:
            return None
        if priority is not None and self.sla[priority].around_the_clock:
            return None
        return entry.hours

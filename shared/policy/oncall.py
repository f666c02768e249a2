"""The oncall section of the policy file: people and how to reach them, teams, on-call schedules
(rotations in layers, overrides) and escalation policies.

Every field has a default, so an empty section is valid (and pages nobody). Durations are
seconds (a number) or ISO 8601 (`PT15M`); times of day are local to the zone named beside them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from shared.policy.comms import Target
from shared.policy.triage import BusinessHours, Priority, Weekday

Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")]
Text = Annotated[str, StringConstraints(max_length=200)]


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class Urgency(StrEnum):
    HIGH = "high"
    LOW = "low"


class ContactMethod(Target):
    """One way to reach a person. `urgent_only`: used for pages only, never for a low-urgency
    notification (a pager webhook that wakes someone up, say)."""

    urgent_only: bool = False


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: Text = ""
    contacts: list[ContactMethod] = Field(min_length=1, max_length=10)


class Team(BaseModel):
    """A team's members, for an escalation step that notifies the whole team."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: Text = ""
    members: list[Slug] = Field(default_factory=list, max_length=500)


class Restriction(BaseModel):
    """A layer is active only inside these daily windows (local to the rotation's zone).
    `end` at or before `start` runs past midnight; `end` 00:00 means the end of the day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Weekday] = Field(default_factory=lambda: list(Weekday), min_length=1)
    start: time = time(0)
    end: time = time(0)


class Layer(BaseModel):
    """One rotation: `people` take turns, each for one shift of `length` (daily: 1 day, weekly:
    7 days, custom: as given), handing off at `handoff` local time in `timezone`, the first shift
    starting on `start`. Shift boundaries are wall-clock times, so a hand-off stays at 09:00 local
    across a DST change (that shift is an hour shorter or longer)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text = "layer"
    rotation: Literal["daily", "weekly", "custom"] = "weekly"
    length: timedelta | None = Field(default=None, description="custom rotations only")
    handoff: time = time(9, 0)
    timezone: str = "UTC"
    start: date = date(2026, 1, 5)
    people: list[Slug] = Field(min_length=1, max_length=200)
    restrictions: list[Restriction] = Field(default_factory=list, max_length=20)

    _known_zone = field_validator("timezone")(_zone)

    @model_validator(mode="after")
    def _length_fits_rotation(self) -> Self:
        if self.rotation == "custom":
            if self.length is None:
                raise ValueError("a custom rotation needs a length")
            if self.length < timedelta(hours=1) or self.length > timedelta(days=366):
                raise ValueError("length must be between 1 hour and 366 days")
        elif self.length is not None:
            raise ValueError(f"a {self.rotation} rotation has a fixed length; use rotation: custom")
        return self

    @property
    def shift(self) -> timedelta:
        if self.rotation == "daily":
            return timedelta(days=1)
        if self.rotation == "weekly":
            return timedelta(days=7)
        assert self.length is not None
        return self.length

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Override(BaseModel):
    """`person` covers the whole schedule from `start` to `end` (aware times)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: datetime
    end: datetime
    person: Slug
    reason: Text = ""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset or Z")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Schedule(BaseModel):
    """Who is on call for a team. Later layers sit on top of earlier ones where they are active;
    overrides sit on top of every layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: Text = ""
    team: Text = ""
    timezone: str = Field(default="UTC", description="How the schedule is shown; layers name their own")
    layers: list[Layer] = Field(min_length=1, max_length=20)
    overrides: list[Override] = Field(default_factory=list, max_length=1000)

    _known_zone = field_validator("timezone")(_zone)


class StepTarget(BaseModel):
    """Whom a step notifies: whoever is on call on a schedule, one person, or a whole team."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["schedule", "person", "team"]
    id: Slug


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: list[StepTarget] = Field(min_length=1, max_length=20)
    wait: timedelta = Field(default=timedelta(minutes=15), description="before the next step")

    @field_validator("wait")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value


def _urgencies() -> dict[Priority, Urgency]:
    high, low = Urgency.HIGH, Urgency.LOW
    return {Priority.P1: high, Priority.P2: high, Priority.P3: high, Priority.P4: low, Priority.P5: low}


class EscalationPolicy(BaseModel):
    """Runs when an incident is routed to one of `teams` (or opens on one of `services`): the
    steps in order, each after the previous one's wait, the whole chain `repeat` more times,
    until someone acknowledges or the incident resolves.

    High urgency pages at every step. Low urgency pages inside `business_hours` only: outside
    them a step notifies (no urgent-only contact methods) and waits count business time, so the
    chain resumes when business hours start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: Text = ""
    teams: list[Text] = Field(default_factory=list, max_length=100)
    services: list[Text] = Field(default_factory=list, max_length=500)
    steps: list[Step] = Field(min_length=1, max_length=20)
    repeat: int = Field(default=0, ge=0, le=10)
    urgency: dict[Priority, Urgency] = Field(default_factory=_urgencies)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)

    @field_validator("urgency")
    @classmethod
    def _every_priority(cls, value: dict[Priority, Urgency]) -> dict[Priority, Urgency]:
        return {**_urgencies(), **value}


class OnCallPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    people: list[Person] = Field(default_factory=list, max_length=5000)
    teams: list[Team] = Field(default_factory=list, max_length=500)
    schedules: list[Schedule] = Field(default_factory=list, max_length=500)
    escalation_policies: list[EscalationPolicy] = Field(default_factory=list, max_length=500)
    ack_link_ttl: timedelta = Field(
        default=timedelta(hours=24), description="How long a page's acknowledge link works"
    )
    ack_base_url: str | None = Field(
        default=None,
        description="Intake's public URL for acknowledge links; default http://<host>:<intake port>",
    )
    tick: timedelta = Field(default=timedelta(seconds=1), description="How often escalations are checked")

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        people = {p.id for p in self.people}
        teams = {t.id for t in self.teams}
        schedules = {s.id for s in self.schedules}
        for kind, items in (("person", self.people), ("team", self.teams), ("schedule", self.schedules)):
            if len({i.id for i in items}) != len(items):
                raise ValueError(f"two {kind}s have the same id")
        if len({e.id for e in self.escalation_policies}) != len(self.escalation_policies):
            raise ValueError("two escalation policies have the same id")
        for t in self.teams:
            if missing := [m for m in t.members if m not in people]:
                raise ValueError(f"team {t.id}: unknown people {missing}")
        for s in self.schedules:
            for i, layer in enumerate(s.layers):
                if missing := [m for m in layer.people if m not in people]:
                    raise ValueError(f"schedule {s.id} layer {i}: unknown people {missing}")
            for o in s.overrides:
                if o.person not in people:
                    raise ValueError(f"schedule {s.id}: override by unknown person {o.person!r}")
        known = {"person": people, "team": teams, "schedule": schedules}
        for e in self.escalation_policies:
            for n, step in enumerate(e.steps, 1):
                for target in step.targets:
                    if target.id not in known[target.kind]:
                        raise ValueError(f"escalation policy {e.id} step {n}: no {target.kind} {target.id!r}")
        return self

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)

    def schedule(self, schedule_id: str) -> Schedule | None:
        return next((s for s in self.schedules if s.id == schedule_id), None)

    def team(self, team_id: str) -> Team | None:
        return next((t for t in self.teams if t.id == team_id), None)

    def escalation_policy(self, policy_id: str) -> EscalationPolicy | None:
        return next((e for e in self.escalation_policies if e.id == policy_id), None)

    def escalation_for(self, team: str, service: str) -> EscalationPolicy | None:
        """The policy for an incident: the first naming its service, else the first naming its team."""
        for e in self.escalation_policies:
            if service in e.services:
                return e
        for e in self.escalation_policies:
            if team in e.teams:
                return e
        return None

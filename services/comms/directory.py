"""The directory: stakeholders, distribution lists and subscriptions.

The policy file gives the starting entries; API changes are events on the `comms-directory`
stream, folded on top (an API change may replace or remove an entry from the file).
The fold and the matching are pure; `DirectoryStore` is the thin async shell.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from shared.events import (
    ChannelTarget,
    DistributionListRemoved,
    DistributionListSaved,
    Event,
    StakeholderRemoved,
    StakeholderSaved,
    SubscriptionRemoved,
    SubscriptionSaved,
)
from shared.policy.comms import CommsPolicy

DIRECTORY_STREAM = "comms-directory"
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Stakeholder:
    id: str
    name: str
    audience: str
    channels: tuple[ChannelTarget, ...]
    roles: tuple[str, ...] = ()

    @property
    def primary(self) -> ChannelTarget:
        return self.channels[0]

    @property
    def fallback(self) -> ChannelTarget | None:
        return self.channels[1] if len(self.channels) > 1 else None


@dataclass(frozen=True, slots=True)
class DistributionList:
    id: str
    name: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    stakeholder_id: str | None = None
    list_id: str | None = None
    audience: str | None = None
    services: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    major_only: bool = False
    incident_id: str | None = None

    def matches(self, *, incident_id: str, service: str, priority: str | None, major: bool) -> bool:
        if self.incident_id is not None and self.incident_id != incident_id:
            return False
        if self.services and service not in self.services:
            return False
        if self.priorities and priority not in self.priorities:
            return False
        return not (self.major_only and not major)


@dataclass(frozen=True, slots=True)
class Directory:
    stakeholders: Mapping[str, Stakeholder] = field(default_factory=dict)
    lists: Mapping[str, DistributionList] = field(default_factory=dict)
    subscriptions: Mapping[str, Subscription] = field(default_factory=dict)

    def members(self, sub: Subscription) -> Iterator[Stakeholder]:
        ids: Sequence[str] = ()
        if sub.stakeholder_id is not None:
            ids = (sub.stakeholder_id,)
        elif sub.list_id is not None and sub.list_id in self.lists:
            ids = self.lists[sub.list_id].members
        for i in ids:
            if i in self.stakeholders:
                yield self.stakeholders[i]

    def holders_of(self, role: str) -> list[Stakeholder]:
        return [s for s in self.stakeholders.values() if role in s.roles]

    def find_person(self, person: str) -> Stakeholder | None:
        """A role holder named in an incident (`RoleAssigned.person`): by id, name or address."""
        for s in self.stakeholders.values():
            if person in (s.id, s.name) or any(c.address == person for c in s.channels):
                return s
        return None


def from_policy(policy: CommsPolicy, builtins: Sequence[tuple[Stakeholder, Subscription]] = ()) -> Directory:
    """The directory as the policy file (and the settings' built-in recipients) describe it."""
    stakeholders = {s.id: s for s, _ in builtins}
    subscriptions = {sub.id: sub for _, sub in builtins}
    for spec in policy.stakeholders:
        stakeholders[spec.id] = Stakeholder(
            id=spec.id,
            name=spec.name or spec.id,
            audience=spec.audience.value,
            channels=tuple(ChannelTarget(kind=c.kind.value, address=c.address) for c in spec.channels),
            roles=tuple(spec.roles),
        )
    lists = {x.id: DistributionList(x.id, x.name or x.id, tuple(x.members)) for x in policy.lists}
    for s in policy.subscriptions:
        subscriptions[s.id] = Subscription(
            id=s.id,
            stakeholder_id=s.stakeholder,
            list_id=s.list_id,
            audience=s.audience.value if s.audience is not None else None,
            services=tuple(s.services),
            priorities=tuple(s.priorities),
            major_only=s.major_only,
            incident_id=s.incident_id,
        )
    return Directory(stakeholders, lists, subscriptions)


def evolve(d: Directory, event: Event) -> Directory:
    match event:
        case StakeholderSaved():
            s = Stakeholder(
                event.stakeholder_id, event.name, event.audience, tuple(event.channels), tuple(event.roles)
            )
            return replace(d, stakeholders={**d.stakeholders, s.id: s})
        case StakeholderRemoved():
            return replace(d, stakeholders=_without(d.stakeholders, event.stakeholder_id))
        case DistributionListSaved():
            x = DistributionList(event.list_id, event.name, tuple(event.members))
            return replace(d, lists={**d.lists, x.id: x})
        case DistributionListRemoved():
            return replace(d, lists=_without(d.lists, event.list_id))
        case SubscriptionSaved():
            sub = Subscription(
                id=event.subscription_id,
                stakeholder_id=event.stakeholder_id,
                list_id=event.list_id,
                audience=event.audience,
                services=tuple(event.services),
                priorities=tuple(event.priorities),
                major_only=event.major_only,
                incident_id=event.incident_id,
            )
            return replace(d, subscriptions={**d.subscriptions, sub.id: sub})
        case SubscriptionRemoved():
            return replace(d, subscriptions=_without(d.subscriptions, event.subscription_id))
        case _:
            return d


def _without(m: Mapping[str, V], key: str) -> dict[str, V]:
    return {k: v for k, v in m.items() if k != key}

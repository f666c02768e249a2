"""What triage has seen on one service lately (its `service-activity-<service>` stream), for the
storm rule and the problem-recurrence rule. Pure.

Signals are recorded in time order (the handler never records one earlier than the last), so
windows are counted by bisection. Every alert of a service appends to its stream, so folding one
signal must not copy what the service has kept: the signals live in `Timeline`s and the per-alert
incidents in an `Attachments` map, immutable values that share their storage with the values
folded from them (an append to the newest value of a line writes in place; older values keep
seeing only what they held), so a signal costs O(1) amortised however many are kept.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from services.triage.frozen import copier
from shared.events import Event, ProblemSuggested, ServiceActivityRecorded, StormDetected

KEEP = timedelta(days=90)  # the longest window any rule may look back (policy caps problems.days at 90)
KEEP_ALERTS = timedelta(days=1)  # the storm window is capped at a day
COMPACT = 4096  # a timeline drops what it no longer shows once that is this long and half its storage

T = TypeVar("T")


class Signal(NamedTuple):
    at: datetime
    incident_id: str
    fingerprint: str = ""


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = datetime(1970, 1, 1)
MICROSECOND = timedelta(microseconds=1)


def instant(at: datetime) -> int:
    """Microseconds since the epoch: the same order as the datetimes, compared far faster (aware
    datetimes parsed from different sources carry different tzinfo objects, and comparing those
    asks each for its offset)."""
    return (at - (NAIVE_EPOCH if at.tzinfo is None else EPOCH)) // MICROSECOND


class Timeline(Generic[T]):
    """Values in time order, immutable. It shows `items[lo:hi]` of storage it may share with the
    timelines appended from it: appending to the one whose range ends where the storage ends
    writes in place, any other copies its range first."""

    __slots__ = ("_hi", "_items", "_keys", "_lo")

    def __init__(
        self, keys: list[int] | None = None, items: list[T] | None = None, lo: int = 0, hi: int = 0
    ) -> None:
        self._keys: list[int] = keys if keys is not None else []  # `instant` of each value's time
        self._items: list[T] = items if items is not None else []
        self._lo = lo
        self._hi = hi

    def append(self, at: datetime, item: T) -> Timeline[T]:
        """This timeline and `item` at `at` (never before the last)."""
        keys, items, lo, hi = self._keys, self._items, self._lo, self._hi
        if hi < len(keys):  # a value was appended here before: this line forks
            keys, items, lo, hi = keys[lo:hi], items[lo:hi], 0, hi - lo
        keys.append(instant(at))
        items.append(item)
        return Timeline(keys, items, lo, hi + 1)

    def since(self, start: datetime) -> Timeline[T]:
        """Only what is after `start`."""
        lo = bisect_right(self._keys, instant(start), self._lo, self._hi)
        if lo == self._lo:
            return self
        if lo >= COMPACT and 2 * lo >= len(self._keys):
            return Timeline(self._keys[lo : self._hi], self._items[lo : self._hi], 0, self._hi - lo)
        return Timeline(self._keys, self._items, lo, self._hi)

    def _range(self, end: datetime, window: timedelta) -> tuple[int, int]:
        return self._between(instant(end - window), instant(end))

    def _between(self, start: int, end: int) -> tuple[int, int]:
        keys, lo, hi = self._keys, self._lo, self._hi
        first = bisect_right(keys, start, lo, hi)
        return first, bisect_right(keys, end, first, hi)

    def count(self, end: datetime, window: timedelta) -> int:
        """How many are in (end - window, end]."""
        first, stop = self._range(end, window)
        return stop - first

    def count_between(self, start: int, end: int) -> int:
        """How many are in (start, end], as `instant`s (one conversion for several timelines)."""
        first, stop = self._between(start, end)
        return stop - first

    def window(self, end: datetime, window: timedelta) -> list[T]:
        """Those in (end - window, end], in order."""
        first, stop = self._range(end, window)
        return self._items[first:stop]

    def __len__(self) -> int:
        return self._hi - self._lo

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[self._lo : self._hi])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timeline):
            return NotImplemented
        return bool(
            self._items[self._lo : self._hi] == other._items[other._lo : other._hi]
            and self._keys[self._lo : self._hi] == other._keys[other._lo : other._hi]
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Timeline({list(self)!r})"


class _Versions:
    """The storage of a line of `Attachments`: every key's values, each with the version that set it."""

    __slots__ = ("entries", "head")

    def __init__(self, entries: dict[str, list[tuple[int, tuple[Signal, ...]]]]) -> None:
        self.entries = entries
        self.head = 0


class Attachments(Mapping[str, tuple[Signal, ...]]):
    """fingerprint -> the incidents it was attached to, immutable. `set` on the newest map of its
    line records the value in place under a new version (older maps look up the value of their own
    version); on any other map it copies the map first."""

    __slots__ = ("_size", "_version", "_versions")

    def __init__(self, versions: _Versions | None = None, version: int = 0, size: int = 0) -> None:
        self._versions = versions if versions is not None else _Versions({})
        self._version = version
        self._size = size

    def _lookup(self, key: str) -> tuple[Signal, ...] | None:
        values = self._versions.entries.get(key)
        if values is None:
            return None
        for version, value in reversed(values):
            if version <= self._version:
                return value
        return None

    def __getitem__(self, key: str) -> tuple[Signal, ...]:
        value = self._lookup(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._lookup(key)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key) is not None

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._versions.entries if self._lookup(key) is not None)

    def __len__(self) -> int:
        return self._size

    def set(self, key: str, value: tuple[Signal, ...]) -> Attachments:
        versions = self._versions
        if self._version != versions.head:  # a value was set on this map before: this line forks
            versions = _Versions({k: [(0, v)] for k, v in self.items()})
        size = self._size if key in self else self._size + 1
        versions.head += 1
        versions.entries.setdefault(key, []).append((versions.head, value))
        return Attachments(versions, versions.head, size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Attachments({dict(self.items())!r})"


@dataclass(frozen=True, slots=True)
class ServiceActivity:
    last_at: datetime | None = None
    incidents: Timeline[Signal] = field(default_factory=Timeline)  # incidents opened, in time order
    alert_times: Timeline[datetime] = field(default_factory=Timeline)  # every alert (attached or repeated)
    attachments: Attachments = field(default_factory=Attachments)  # fingerprint -> incidents
    storm_at: datetime | None = None
    calm: bool = False  # since the last storm, the service was once below every threshold
    suggested: Mapping[str, datetime] = field(default_factory=dict)  # suggestion key -> when

    def at_or_after_last(self, at: datetime) -> datetime:
        """The time to record a signal at: never before the last one."""
        return at if self.last_at is None or at > self.last_at else self.last_at

    def attached(self, fingerprint: str, incident_id: str) -> bool:
        """Whether the alert was already counted on that incident."""
        return any(s.incident_id == incident_id for s in self.attachments.get(fingerprint, ()))


_copy = copier(ServiceActivity)


def _since(signals: tuple[Signal, ...], start: datetime) -> tuple[Signal, ...]:
    return signals[bisect_right(signals, start, key=lambda s: s.at) :]


def evolve_activity(state: ServiceActivity, event: Event) -> ServiceActivity:
    match event:
        case ServiceActivityRecorded():
            at = event.occurred_at
            calm = state.calm or event.calm
            signal = Signal(at, event.incident_id, event.fingerprint)
            if event.activity == "incident":
                incidents = state.incidents.since(at - KEEP).append(at, signal)
                return _copy(state, last_at=at, calm=calm, incidents=incidents)
            times = state.alert_times.since(at - KEEP_ALERTS).append(at, at)
            if not event.fingerprint or state.attached(event.fingerprint, event.incident_id):
                return _copy(state, last_at=at, calm=calm, alert_times=times)
            seen = state.attachments.get(event.fingerprint, ())
            attachments = state.attachments.set(event.fingerprint, (*_since(seen, at - KEEP), signal))
            return _copy(state, last_at=at, calm=calm, alert_times=times, attachments=attachments)
        case StormDetected():
            return _copy(state, storm_at=event.occurred_at, calm=False)
        case ProblemSuggested():
            key = suggestion_key(event.service, event.fingerprint)
            return _copy(state, suggested={**state.suggested, key: event.occurred_at})
        case _:
            return state


def suggestion_key(service: str, fingerprint: str) -> str:
    return f"alert:{fingerprint}" if fingerprint else f"service:{service}"


def in_window(
    signals: tuple[Signal, ...] | Timeline[Signal], end: datetime, window: timedelta
) -> list[Signal]:
    """Signals in (end - window, end]."""
    if isinstance(signals, Timeline):
        return signals.window(end, window)
    lo = bisect_right(signals, end - window, key=lambda s: s.at)
    hi = bisect_right(signals, end, key=lambda s: s.at)
    return list(signals[lo:hi])


def alerts_in_window(state: ServiceActivity, end: datetime, window: timedelta) -> int:
    """Alerts in (end - window, end]."""
    return state.alert_times.count(end, window)

"""The service activity's storm and recurrence rules against a plain model of them: tuples copied
on every signal, the activity after each signal made before deciding (what the rules say, written
the simplest way). The real fold shares storage between values and decides from the activity
before the signal; both must see the same storms, calm signals and problem suggestions."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.triage import activity as act
from services.triage import major, problems
from services.triage.activity import ServiceActivity, Signal, Timeline, evolve_activity
from shared.events import Event, ProblemSuggested, ServiceActivityRecorded, StormDetected
from shared.policy import parse_policy

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)
KEEP = timedelta(days=2)
POLICY = parse_policy(
    {
        "triage": {
            "major": {"storm": {"incidents": 3, "alerts": 4, "window_minutes": 30}},
            "problems": {"recurrences": 3, "days": 2},
        }
    }
).triage


@dataclass(frozen=True)
class Model:
    last_at: datetime | None = None
    incidents: tuple[Signal, ...] = ()
    alert_times: tuple[datetime, ...] = ()
    attachments: dict[str, tuple[Signal, ...]] = field(default_factory=dict)
    storm_at: datetime | None = None
    calm: bool = False
    suggested: dict[str, datetime] = field(default_factory=dict)


def _since(signals: tuple[Signal, ...], start: datetime) -> tuple[Signal, ...]:
    return signals[bisect_right(signals, start, key=lambda s: s.at) :]


def model_evolve(state: Model, event: Event) -> Model:
    match event:
        case ServiceActivityRecorded():
            at = event.occurred_at
            state = replace(state, last_at=at, calm=state.calm or event.calm)
            signal = Signal(at, event.incident_id, event.fingerprint)
            if event.activity == "incident":
                return replace(state, incidents=(*_since(state.incidents, at - KEEP), signal))
            times = state.alert_times[bisect_right(state.alert_times, at - act.KEEP_ALERTS) :]
            state = replace(state, alert_times=(*times, at))
            seen = state.attachments.get(event.fingerprint, ())
            if not event.fingerprint or any(s.incident_id == event.incident_id for s in seen):
                return state
            attachments = {**state.attachments, event.fingerprint: (*_since(seen, at - KEEP), signal)}
            return replace(state, attachments=attachments)
        case StormDetected():
            return replace(state, storm_at=event.occurred_at, calm=False)
        case ProblemSuggested():
            key = act.suggestion_key(event.service, event.fingerprint)
            return replace(state, suggested={**state.suggested, key: event.occurred_at})
    return state


def window(signals: tuple[Any, ...], end: datetime, width: timedelta, key: Any = None) -> list[Any]:
    lo = bisect_right(signals, end - width, key=key)
    return list(signals[lo : bisect_right(signals, end, key=key)])


def model_decide(
    state: Model, kind: str, incident_id: str, fingerprint: str, at: datetime
) -> tuple[Any, ...]:
    """(calm, storm, suggestion ids) the rules give for one signal, the activity after it made first."""
    at = at if state.last_at is None or at > state.last_at else state.last_at
    seen = ServiceActivityRecorded(
        service="s",
        activity=kind,  # type: ignore[arg-type]
        incident_id=incident_id,
        fingerprint=fingerprint,
        occurred_at=at,
    )
    after = model_evolve(state, seen)
    width = timedelta(minutes=30)

    def counts(a: Model) -> tuple[int, int]:
        return len(window(a.incidents, at, width, key=lambda s: s.at)), len(window(a.alert_times, at, width))

    if after.storm_at is not None and not after.calm and counts(after)[0] < 3 and counts(after)[1] < 4:
        seen = seen.model_copy(update={"calm": True})
        after = model_evolve(state, seen)
    incidents, alerts = counts(after)
    storm = ("incident", incidents) if incidents >= 3 else ("alert", alerts) if alerts >= 4 else None
    if not (after.storm_at is None or after.calm):
        storm = None
    ids: list[str] | None = None
    key = act.suggestion_key("s", fingerprint)
    last = after.suggested.get(key)
    if (kind == "incident" or fingerprint) and not (last is not None and at - last < KEEP):
        signals = after.attachments.get(fingerprint, ()) if fingerprint else after.incidents
        found = list(dict.fromkeys(s.incident_id for s in window(signals, at, KEEP, key=lambda s: s.at)))
        ids = found if len(found) >= 3 else None
    return seen, storm, ids


signal = st.tuples(
    st.sampled_from(["incident", "alert"]),
    st.sampled_from([0, 1, 7, 29, 31, 90, 600, 60 * 24, 60 * 47, 60 * 49, -5]),  # minutes after the last
    st.sampled_from(["i1", "i2", "i3", "i4"]),
    st.sampled_from(["", "fa", "fb"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(signal, max_size=60))
def test_the_fold_decides_as_the_rules_say(signals: list[tuple[str, int, str, str]]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(act, "KEEP", KEEP)
        patch.setattr(act, "COMPACT", 2)  # compact often: storage is dropped under live values
        model, real = Model(), ServiceActivity()
        at = NOW
        for kind, minutes, incident_id, fp in signals:
            at += timedelta(minutes=minutes)
            fingerprint = fp if kind == "alert" else ""
            expected_seen, expected_storm, expected_ids = model_decide(
                model, kind, incident_id, fingerprint, at
            )
            seen, found = major.notice(
                real,
                service="s",
                kind=kind,  # type: ignore[arg-type]
                incident_id=incident_id,
                fingerprint=fingerprint,
                at=at,
                policy=POLICY,
            )
            assert seen == expected_seen
            assert (None if found is None else (found.activity, found.count)) == expected_storm
            suggested = problems.suggest(real, seen, POLICY) if kind == "incident" or fingerprint else []
            assert [getattr(e, "incident_ids") for e in suggested] == ([expected_ids] if expected_ids else [])
            events: list[Event] = [seen, *suggested]
            if found is not None:
                events.append(
                    StormDetected(
                        incident_id=incident_id,
                        service="s",
                        activity=found.activity,
                        count=found.count,
                        window_minutes=found.window_minutes,
                        proposed=False,
                        occurred_at=seen.occurred_at,
                    )
                )
            before, model_before = real, model
            kept = (list(before.incidents), list(before.alert_times), dict(before.attachments.items()))
            for event in events:
                model, real = model_evolve(model, event), evolve_activity(real, event)
            # a value folded from is unchanged, and folding it again another way forks
            fork = seen.model_copy(update={"incident_id": "other"})
            other, model_other = evolve_activity(before, fork), model_evolve(model_before, fork)
            assert (
                list(before.incidents),
                list(before.alert_times),
                dict(before.attachments.items()),
            ) == kept
            assert list(other.incidents) == list(model_other.incidents)
            assert dict(other.attachments.items()) == model_other.attachments
            assert list(real.incidents) == list(model.incidents)
            assert list(real.alert_times) == list(model.alert_times)
            assert dict(real.attachments.items()) == model.attachments
            assert real.calm == model.calm and real.storm_at == model.storm_at


def test_a_timeline_appended_twice_from_one_value_forks() -> None:
    base = Timeline[int]().append(NOW, 1)
    one = base.append(NOW, 2)
    two = base.append(NOW, 3)
    assert (list(base), list(one), list(two)) == ([1], [1, 2], [1, 3])
    assert list(one.since(NOW - timedelta(seconds=1)).append(NOW, 4)) == [1, 2, 4]
    assert list(one) == [1, 2]


def test_attachments_keep_each_values_own_version() -> None:
    empty = act.Attachments()
    a = empty.set("f", (Signal(NOW, "i1"),))
    b = a.set("f", (Signal(NOW, "i1"), Signal(NOW, "i2")))
    c = a.set("g", (Signal(NOW, "i3"),))  # a second value set on `a`: copies
    assert dict(empty.items()) == {}
    assert dict(a.items()) == {"f": (Signal(NOW, "i1"),)}
    assert dict(b.items()) == {"f": (Signal(NOW, "i1"), Signal(NOW, "i2"))}
    assert dict(c.items()) == {"f": (Signal(NOW, "i1"),), "g": (Signal(NOW, "i3"),)}
    assert (len(empty), len(a), len(b), len(c)) == (0, 1, 1, 2)

"""Properties of intake's decisions over arbitrary sequences of alerts, resolves, people's steps and
time passing: an alert is never attached to, counted in or resolved on an incident that is not open,
and a key is firing in at most one open incident, the one its key stream binds it to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake import domain, lifecycle
from services.intake.domain import Alert, AlertKey, Group, Incident
from shared.events import AlertAttached, AlertRepeated, AlertResolved, AlertStatus, Event, Severity
from shared.policy.intake import ResolveRule

T0 = datetime(2026, 1, 1, tzinfo=UTC)

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("alert"), st.sampled_from("abcd"), st.sampled_from(["", "g1", "g2"]), st.booleans()
        ),
        st.tuples(
            st.just("manual"), st.sampled_from(["resolve", "reopen", "close", "ack"]), st.integers(0, 5)
        ),
        st.tuples(st.just("wait"), st.integers(0, 7200)),
    ),
    max_size=40,
)


class World:
    """The streams as folded state, the way the shell keeps them."""

    def __init__(self, rule: ResolveRule, window: int) -> None:
        self.rule, self.window = rule, window
        self.keys: dict[str, AlertKey] = {}
        self.groups: dict[str, Group] = {}
        self.incidents: dict[str, Incident] = {}
        self.ids = 0
        self.now = T0

    def apply(self, incident_id: str, events: list[Event]) -> None:
        state = self.incidents.get(incident_id, Incident())
        for e in events:
            if isinstance(e, AlertAttached | AlertRepeated | AlertResolved):
                assert state.open, f"{e.type} recorded on {state.status} incident {incident_id}"
            state = domain.evolve(state, e)
        self.incidents[incident_id] = state

    def alert(self, key: str, group: str, firing: bool) -> None:
        a = Alert(
            key=key,
            dedup_key=key,
            title=key,
            service="s",
            severity=Severity.HIGH,
            status=AlertStatus.FIRING if firing else AlertStatus.RESOLVED,
            source="canonical",
            group_key=group,
            resolve_rule=self.rule,
            window_seconds=self.window,
        )
        k = self.keys.get(key, AlertKey())
        g = self.groups.get(group) if group else None
        self.ids += 1
        d = domain.receive(
            k,
            self.incidents.get(k.incident_id, Incident()) if k.incident_id else Incident(),
            a,
            now=self.now,
            new_id=f"i{self.ids}",
            group=g or Group(),
            group_incident=self.incidents.get(g.incident_id) if g and g.incident_id else None,
        )
        for e in d.key_events:
            self.keys[key] = domain.evolve_key(self.keys.get(key, AlertKey()), e)
        for e in d.group_events:
            self.groups[group] = domain.evolve_group(self.groups.get(group, Group()), e)
        if d.incident_events:
            self.apply(d.incident_id, d.incident_events)

    def manual(self, action: str, pick: int) -> None:
        if not self.incidents:
            return
        incident_id = sorted(self.incidents)[pick % len(self.incidents)]
        state = self.incidents[incident_id]
        decide: dict[str, Any] = {
            "resolve": lambda: lifecycle.resolve(state, by="p", reason="r", now=self.now),
            "reopen": lambda: lifecycle.reopen(state, by="p", reason="r", now=self.now),
            "close": lambda: lifecycle.close(state, by="p", now=self.now),
            "ack": lambda: lifecycle.acknowledge(state, by="p", now=self.now),
        }
        try:
            events = decide[action]()
        except domain.DomainError:
            return
        self.apply(incident_id, events)


@settings(max_examples=300, deadline=None)
@given(steps=steps, rule=st.sampled_from(list(ResolveRule)), window=st.sampled_from([0, 600, 3600]))
def test_no_alert_lands_on_a_closed_or_resolved_incident_and_a_key_fires_in_one_incident(
    steps: list[tuple[Any, ...]], rule: ResolveRule, window: int
) -> None:
    world = World(rule, window)
    for step in steps:
        match step:
            case ("alert", key, group, firing):
                world.alert(key, group, firing)
            case ("manual", action, pick):
                world.manual(action, pick)
            case ("wait", seconds):
                world.now += timedelta(seconds=seconds)
        for key, bound in world.keys.items():
            holding = [i for i in world.incidents.values() if i.open and key in i.firing]
            assert len(holding) <= 1, f"{key} firing in {len(holding)} open incidents"
            if holding:
                assert bound.incident_id == holding[0].id

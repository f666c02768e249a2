"""`Held` (a recipient's held-back notifications, storage shared between values) behaves as the tuple
it stands for, whichever value, newest or older, each step starts from."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.comms.held import Held
from shared.events import NotificationCoalesced

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)


def held(nid: str) -> NotificationCoalesced:
    return NotificationCoalesced(
        incident_id="i1",
        notification_id=nid,
        cause_event_id=f"c-{nid}",
        cause_type="PriorityAssigned",
        recipient="lead@x.org",
        channel="email",
        audience="management",
        subject=f"s-{nid}",
        window_ends_at=T0,
        occurred_at=T0,
    )


IDS = [f"n{i}" for i in range(12)]
steps = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "without"]),
        st.integers(0, 1000),  # which value so far to start from
        st.sampled_from(IDS),
        st.sets(st.sampled_from(IDS), max_size=4),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_held_is_the_tuple_it_stands_for(ops: list[tuple[str, int, str, set[str]]]) -> None:
    values: list[tuple[Held, tuple[NotificationCoalesced, ...]]] = [(Held(), ())]
    for kind, pick, nid, ids in ops:
        h, t = values[pick % len(values)]
        if kind == "add":
            if any(p.notification_id == nid for p in t):
                assert nid in h
                continue
            values.append((h.added(held(nid)), (*t, held(nid))))
        else:
            values.append((h.without(ids), tuple(p for p in t if p.notification_id not in ids)))
        for v, model in values:  # every value, older ones too, still shows what it held
            assert v == model and list(v) == list(model) and len(v) == len(model)
            assert (v[0] == model[0]) if model else not v
            for i in IDS:
                found = [p for p in model if p.notification_id == i]
                assert v.get(i) == (found[0] if found else None) and (i in v) == bool(found)

"""A dead letter kept outside the consumer's store (Kafka's DLQ) is written there before the store
records the event as handled: a crash in between sets it aside twice, never zero times."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from shared.consumer import DeadLettered, RetryPolicy, deliver
from shared.envelope import Envelope
from shared.events import EventDeadLettered, IncidentAcknowledged
from shared.store import Write
from shared.store.memory import MemoryStore

FAST = RetryPolicy(attempts=2, first_delay=0, max_delay=0)


def poison() -> Envelope:
    event = IncidentAcknowledged(incident_id="inc-1", by="alice", occurred_at=datetime.now(UTC))
    return Envelope(
        id="ev-1",
        stream="incident-inc-1",
        version=1,
        position=1,
        event=event,
        recorded_at=datetime.now(UTC),
        source="intake",
        correlation_id="corr-1",
    )


async def indigestible(env: Envelope) -> Sequence[Write]:
    raise ValueError("cannot digest")


async def test_the_dead_letter_is_set_aside_before_the_store_marks_the_event_handled() -> None:
    store = MemoryStore(source="triage")
    in_store_when_set_aside: list[int] = []
    set_aside: list[EventDeadLettered] = []

    async def keep(record: EventDeadLettered) -> None:
        in_store_when_set_aside.append(len(await store.read("deadletter-triage")))
        set_aside.append(record)

    with pytest.raises(DeadLettered):
        await deliver(
            poison(), consumer="triage", handler=indigestible, store=store, retry=FAST, set_aside=keep
        )
    assert in_store_when_set_aside == [0]
    [dead] = await store.read("deadletter-triage")
    assert dead.event == set_aside[0] and dead.event.reason == "ValueError: cannot digest"


async def test_a_crash_while_setting_aside_leaves_the_event_unhandled_so_it_is_set_aside_again() -> None:
    store = MemoryStore(source="triage")

    async def crash(record: EventDeadLettered) -> None:
        raise SystemExit("the process died here")

    with pytest.raises(SystemExit):
        await deliver(
            poison(), consumer="triage", handler=indigestible, store=store, retry=FAST, set_aside=crash
        )
    assert await store.read("deadletter-triage") == []

    kept: list[str] = []

    async def keep(record: EventDeadLettered) -> None:
        kept.append(record.event_id)

    with pytest.raises(DeadLettered):
        await deliver(
            poison(), consumer="triage", handler=indigestible, store=store, retry=FAST, set_aside=keep
        )
    assert kept == ["ev-1"] and len(await store.read("deadletter-triage")) == 1
    with pytest.raises(DeadLettered):  # delivered once more: the store's tracking keeps one dead letter
        await deliver(
            poison(), consumer="triage", handler=indigestible, store=store, retry=FAST, set_aside=keep
        )
    assert len(await store.read("deadletter-triage")) == 1

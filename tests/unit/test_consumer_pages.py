"""`deliver_page`: a page of events committed with their commits in flight together, as both buses use it.

What it must keep while the store writes a page's commits together: one incident's events take effect in
order, a poison event in the middle is set aside (first outside the store, then in it) while the rest of
the page commits, and a store that fails mid-page leaves a page that can simply be delivered again:
`handled` says what committed, and nothing lands twice or out of order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.consumer import RetryPolicy, SetAside, deliver_page
from shared.envelope import Envelope
from shared.events import EventDeadLettered, IncidentAcknowledged
from shared.store import Committed, StoreUnavailable, Tracking, Write
from shared.store.memory import MemoryStore

FAST = RetryPolicy(attempts=2, first_delay=0, max_delay=0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def page_of(*pairs: tuple[str, str]) -> list[Envelope]:
    """One envelope per (incident, label), as a source's log would hold them."""
    return [
        Envelope(
            id=f"ev-{n}-{label}",
            stream=f"incident-{incident}",
            version=n + 1,
            position=n + 1,
            event=IncidentAcknowledged(incident_id=incident, by=label, occurred_at=T0),
            recorded_at=T0,
            source="intake",
            correlation_id=f"corr-{n}",
            tx=1,
        )
        for n, (incident, label) in enumerate(pairs)
    ]


class Recorder:
    """Writes one `seen` event per input on `seen-<incident>`; raises on the label `poison`."""

    def __init__(self, poison: str | None = None) -> None:
        self.calls: list[str] = []
        self.poison = poison

    async def __call__(self, env: Envelope) -> Sequence[Write]:
        event = env.event
        assert isinstance(event, IncidentAcknowledged)
        self.calls.append(event.by)
        if event.by == self.poison:
            raise ValueError(f"cannot digest {event.by}")
        seen = IncidentAcknowledged(incident_id=event.incident_id, by=event.by, occurred_at=T0)
        return [Write(f"seen-{event.incident_id}", [seen], None, causation_id=env.id)]


class SlowStore(MemoryStore):
    """Commits after a pause, counting how many are in flight at once; the commit of an event in `fail`
    fails once with StoreUnavailable."""

    def __init__(self, *, source: str) -> None:
        super().__init__(source=source)
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail: set[str] = set()

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            if tracking is not None and tracking.event_id in self.fail:
                self.fail.discard(tracking.event_id)
                raise StoreUnavailable("database is down")
            return await super().commit(writes, tracking=tracking)
        finally:
            self.in_flight -= 1


async def labels(store: MemoryStore, incident: str) -> list[str]:
    return [e.event.by for e in await store.read(f"seen-{incident}")]  # type: ignore[attr-defined]


async def test_one_incidents_events_take_effect_in_order_while_the_page_commits_together() -> None:
    store = SlowStore(source="comms")
    page = page_of(*((f"i{n % 3}", f"{n:02d}") for n in range(30)))
    handled: list[str] = []
    await deliver_page(
        page,
        consumer="comms<-intake",
        handler=Recorder(),
        store=store,
        retry=FAST,
        handled=lambda e: handled.append(e.id),
    )
    for k in range(3):
        assert await labels(store, f"i{k}") == [f"{n:02d}" for n in range(k, 30, 3)]
    assert sorted(handled) == sorted(e.id for e in page)
    assert store.most_in_flight > 1, "the page's commits were written one after another"
    assert await store.checkpoint("comms<-intake") == page[-1].checkpoint


async def test_a_poison_event_mid_page_is_set_aside_before_the_store_records_it_and_the_rest_commits() -> (
    None
):
    store = SlowStore(source="comms")
    page = page_of(("i1", "a"), ("i2", "b"), ("i1", "poison"), ("i1", "c"), ("i2", "d"))
    aside: list[tuple[str, int]] = []  # (event id, dead letters in the store when it was set aside)

    def set_aside(env: Envelope) -> SetAside:
        async def keep(record: EventDeadLettered) -> None:
            assert record.event_id == env.id
            aside.append((env.id, len(await store.read("deadletter-comms<-intake"))))

        return keep

    handled: list[str] = []
    await deliver_page(
        page,
        consumer="comms<-intake",
        handler=Recorder(poison="poison"),
        store=store,
        retry=FAST,
        set_aside=set_aside,
        checkpoint=False,
        handled=lambda e: handled.append(e.id),
    )
    assert aside == [(page[2].id, 0)]
    [dead] = await store.read("deadletter-comms<-intake")
    assert isinstance(dead.event, EventDeadLettered)
    assert dead.event.event_id == page[2].id and dead.event.reason == "ValueError: cannot digest poison"
    assert await labels(store, "i1") == ["a", "c"] and await labels(store, "i2") == ["b", "d"]
    assert sorted(handled) == sorted(e.id for e in page)
    assert await store.checkpoint("comms<-intake") == (0, 0)  # no checkpoint asked for: offsets elsewhere


async def test_a_store_failing_mid_page_stops_the_incident_there_and_the_page_can_be_delivered_again() -> (
    None
):
    store = SlowStore(source="comms")
    page = page_of(*((f"i{n % 2}", f"{n:02d}") for n in range(10)))
    store.fail.add(page[4].id)  # an event of i0, with i0's and i1's events before and after it
    handler = Recorder()
    handled: list[str] = []
    with pytest.raises(StoreUnavailable):
        await deliver_page(
            page,
            consumer="c",
            handler=handler,
            store=store,
            retry=FAST,
            checkpoint=False,
            handled=lambda e: handled.append(e.id),
        )
    in_store = {e.causation_id for e in await store.read_all(limit=100) if e.stream.startswith("seen-")}
    assert set(handled) == in_store, "`handled` names exactly what committed"
    assert {page[0].id, page[2].id} <= in_store and page[4].id not in in_store
    assert not {page[6].id, page[8].id} & in_store, "i0's later events overtook the one that failed"

    handled.clear()
    await deliver_page(  # delivered again from the start: what committed is a no-op
        page,
        consumer="c",
        handler=handler,
        store=store,
        retry=FAST,
        checkpoint=False,
        handled=lambda e: handled.append(e.id),
    )
    assert sorted(handled) == sorted(e.id for e in page)
    assert await labels(store, "i0") == ["00", "02", "04", "06", "08"]
    assert await labels(store, "i1") == ["01", "03", "05", "07", "09"]


async def test_each_event_is_tracked_under_its_own_consumer_name_when_a_page_mixes_sources() -> None:
    store = SlowStore(source="comms")
    page = page_of(("i1", "a"), ("i1", "b"), ("i2", "c"))
    names = {page[0].id: "comms<-intake", page[1].id: "comms<-triage", page[2].id: "comms<-intake"}
    tracked: list[tuple[str, str | None]] = []
    original = store.commit

    async def spy(writes: Sequence[Write], *, tracking: Tracking | None = None) -> Any:
        if tracking is not None:
            tracked.append((tracking.consumer, tracking.event_id))
        return await original(writes, tracking=tracking)

    store.commit = spy  # type: ignore[method-assign]
    await deliver_page(
        page, consumer=lambda e: names[e.id], handler=Recorder(), store=store, retry=FAST, checkpoint=False
    )
    assert sorted(tracked) == sorted((names[e.id], e.id) for e in page)


async def test_events_of_many_incidents_on_one_shared_stream_run_at_most_twice() -> None:
    """Every incident of a service writes the service's stream at its version (a storm on one
    service): the page's events take turns on it, so each runs again once at most, not once for
    every commit that lands before it, and every count lands once, in order."""
    store = SlowStore(source="triage")
    runs: dict[str, int] = {}

    async def count_on_service(env: Envelope) -> Sequence[Write]:
        runs[env.id] = runs.get(env.id, 0) + 1
        version = len(await store.read("service-bench"))
        event = env.event
        assert isinstance(event, IncidentAcknowledged)
        seen = IncidentAcknowledged(incident_id=event.incident_id, by=event.by, occurred_at=T0)
        return [Write("service-bench", [seen], version, causation_id=env.id)]

    async with store:
        page = page_of(*((str(n), f"alert-{n}") for n in range(40)))
        await deliver_page(page, consumer="triage", handler=count_on_service, store=store, retry=FAST)
        counted = [e.event.by for e in await store.read("service-bench")]
    assert sorted(counted) == sorted(f"alert-{n}" for n in range(40))  # each once
    assert max(runs.values()) <= 2, runs
    assert sum(runs.values()) < 2 * len(page)  # the first event found the stream free


async def test_a_page_of_one_incident_goes_event_by_event_with_the_same_guarantees() -> None:
    """Nothing to overlap: in order, a poison event set aside, a store failure stopping it there."""
    store = SlowStore(source="comms")
    page = page_of(("i1", "a"), ("i1", "poison"), ("i1", "b"), ("i1", "c"))
    store.fail.add(page[3].id)
    aside: list[str] = []

    def set_aside(env: Envelope) -> SetAside:
        async def keep(record: EventDeadLettered) -> None:
            aside.append(record.event_id)

        return keep

    handled: list[str] = []

    async def deliver() -> None:
        await deliver_page(
            page,
            consumer="c",
            handler=Recorder(poison="poison"),
            store=store,
            retry=FAST,
            set_aside=set_aside,
            handled=lambda e: handled.append(e.id),
        )

    with pytest.raises(StoreUnavailable):
        await deliver()
    assert handled == [e.id for e in page[:3]]
    assert aside == [page[1].id]
    assert await labels(store, "i1") == ["a", "b"]
    assert await store.checkpoint("c") == (0, 0), "a checkpoint past an event that did not commit"

    handled.clear()
    await deliver()  # again from the start: what committed is a no-op
    assert handled == [e.id for e in page]
    assert await labels(store, "i1") == ["a", "b", "c"]
    assert len(await store.read("deadletter-c")) == 1
    assert await store.checkpoint("c") == page[-1].checkpoint

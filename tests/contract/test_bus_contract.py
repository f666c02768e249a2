"""One contract, both bus modes: embedded (store subscriptions) and Kafka (relay + consumer group).

From a handler's point of view the modes are the same: every source event arrives, its writes land once,
one incident's events arrive in order, redelivery changes nothing, and a poison event is dead-lettered
with its reason while later events keep flowing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError

from shared.bus.base import Bus, Handler, tracking_name
from shared.bus.embedded import EmbeddedBus
from shared.bus.kafka import KafkaBus
from shared.consumer import RetryPolicy
from shared.envelope import Envelope
from shared.events import EventDeadLettered, IncidentAcknowledged, IncidentResolved
from shared.relay import RELAY_CONSUMER, Outbox, Relay, dlq_topic, ensure_topics, events_topic, make_producer
from shared.store import START, Committed, ConcurrencyError, EventStore, StoreUnavailable, Tracking, Write
from shared.store.memory import MemoryStore
from shared.store.sqlite import SqliteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FAST = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.05, conflict_retries=2)
SINK = "sink"
WAIT = 15.0

MODES = [
    "embedded-memory",
    "embedded-sqlite",
    pytest.param("kafka", marks=pytest.mark.kafka),
]


def ack(incident: str, by: str) -> IncidentAcknowledged:
    return IncidentAcknowledged(incident_id=incident, by=by, occurred_at=T0)


RUNNING: set[asyncio.Task[None]] = set()
"""Buses and relays running in the current test: one that crashed fails the test at once."""


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT, what: str = "") -> None:
    """Poll `check` until it holds, failing after `timeout` seconds or as soon as a bus or relay crashed."""
    deadline = time.monotonic() + timeout
    while not await check():
        for task in RUNNING:
            if task.done() and not task.cancelled():
                task.result()
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.02)


class Recorder:
    """A handler that notes each delivery and writes one `seen` event per input, on `seen-<incident>`."""

    def __init__(self, poison: str | None = None) -> None:
        self.calls: list[str] = []
        self.poison = poison

    async def __call__(self, env: Envelope) -> Sequence[Write]:
        self.calls.append(env.id)
        event = env.event
        assert isinstance(event, IncidentAcknowledged)
        if event.by == self.poison:
            raise ValueError(f"cannot digest {event.by}")
        return [Write(f"seen-{event.incident_id}", [ack(event.incident_id, f"{event.by}|{env.id}")], None)]


async def seen(sink: EventStore) -> list[Envelope]:
    return [e for e in await sink.read_all(limit=100_000) if e.stream.startswith("seen-")]


class FlakyStore(MemoryStore):
    """A consumer store whose database can be taken down: commits then fail with StoreUnavailable."""

    down = False

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Any:
        if self.down:
            raise StoreUnavailable("database is down")
        return await super().commit(writes, tracking=tracking)


class TrackedSink(MemoryStore):
    """A consumer store that notes which events it was given tracking records for."""

    def __init__(self) -> None:
        super().__init__(source=SINK)
        self.tracked: list[str] = []

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Any:
        if tracking is not None and tracking.event_id is not None:
            self.tracked.append(tracking.event_id)
        return await super().commit(writes, tracking=tracking)


class World:
    """A source service's store, the bus to its events, and (in Kafka mode) the relay publishing them."""

    def __init__(self, mode: str, source: EventStore, bootstrap: str | None) -> None:
        self.mode = mode
        self.source = source
        self.name = source.source
        self.bootstrap = bootstrap
        self.relay: Relay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._producer: Any = None

    @property
    def kafka(self) -> bool:
        return self.bootstrap is not None

    async def publish(self, *events: IncidentAcknowledged) -> list[Envelope]:
        out: list[Envelope] = []
        for event in events:
            out += (
                await self.source.commit([Write(f"incident-{event.incident_id}", [event], None)])
            ).envelopes
        return out

    def bus(self, group: str = "lynchpin") -> Bus:
        if self.bootstrap is not None:
            return KafkaBus(
                self.bootstrap, group_prefix=f"{group}-{self.name}", retry=FAST, first_backoff=0.05
            )
        return EmbeddedBus({self.name: self.source}, retry=FAST, poll=0.05)

    @asynccontextmanager
    async def consuming(
        self,
        handler: Handler,
        sink: EventStore,
        *,
        group: str = "lynchpin",
        inputs: frozenset[str] | None = None,
    ) -> AsyncIterator[Bus]:
        """Run the bus for `sink`'s consumer while inside the block; surface a crashed bus as a failure."""
        async with self.bus(group) as bus:
            task = asyncio.create_task(bus.run(SINK, [self.name], handler, sink, inputs))
            RUNNING.add(task)
            try:
                yield bus
            finally:
                RUNNING.discard(task)
                if task.done():
                    task.result()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

    async def start_relay(self) -> None:
        if self.bootstrap is None:
            return
        if self._producer is None:
            self._producer = make_producer(self.bootstrap)
            await self._producer.start()
        self.relay = Relay(self.source, self._producer, poll=0.05, first_backoff=0.05)
        self._relay_task = asyncio.create_task(self.relay.run())
        RUNNING.add(self._relay_task)

    async def stop_relay(self) -> None:
        if self._relay_task is not None:
            RUNNING.discard(self._relay_task)
            self._relay_task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._relay_task
            self._relay_task = None

    async def close(self) -> None:
        await self.stop_relay()
        if self._producer is not None:
            await self._producer.stop()


@pytest.fixture(params=MODES)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    name = f"src{uuid.uuid4().hex[:8]}"
    mode: str = request.param
    bootstrap: str | None = None
    if mode == "kafka":
        server = request.getfixturevalue("kafka_server")
        if not server.running and not server.external:
            server.start()  # an earlier test stopped the shared broker
        bootstrap = server.bootstrap
        assert bootstrap is not None
        await ensure_topics(bootstrap, [name], partitions=3)
    source: EventStore = (
        MemoryStore(source=name)
        if mode == "embedded-memory"
        else SqliteStore(tmp_path / "src.db", source=name)
    )
    async with source:
        w = World(mode, source, bootstrap)
        await w.start_relay()
        try:
            yield w
        finally:
            await w.close()


# --- the contract -----------------------------------------------------------------------------


async def test_every_event_reaches_the_handler_and_its_writes_land_once(world: World) -> None:
    sink = MemoryStore(source=SINK)
    handler = Recorder()
    published = await world.publish(*(ack(f"i{n % 3}", f"u{n}") for n in range(30)))
    async with world.consuming(handler, sink) as bus:
        await eventually(lambda: _count(sink, 30), what="30 seen events")
        published += await world.publish(*(ack(f"i{n % 3}", f"u{n}") for n in range(30, 40)))  # live tail
        await eventually(lambda: _count(sink, 40), what="40 seen events")
        await eventually(lambda: _true(bus.lag().get(world.name) == 0), what="no lag once caught up")
        await asyncio.sleep(0.2)  # nothing more trickles in
    handled = [e.event.by.split("|")[1] for e in await seen(sink)]  # type: ignore[attr-defined]
    assert sorted(handled) == sorted(e.id for e in published)


async def test_one_incidents_events_arrive_in_order(world: World) -> None:
    sink = MemoryStore(source=SINK)
    async with world.consuming(Recorder(), sink):
        for batch in range(4):  # interleaved incidents, appended while the consumer runs
            await world.publish(*(ack(f"i{n % 5}", f"{n:03d}") for n in range(batch * 25, batch * 25 + 25)))
        await eventually(lambda: _count(sink, 100), what="100 seen events")
    for incident in range(5):
        order = [e.event.by.split("|")[0] for e in await sink.read(f"seen-i{incident}")]  # type: ignore[attr-defined]
        assert order == [f"{n:03d}" for n in range(incident, 100, 5)]


async def test_a_redelivered_event_changes_nothing(world: World) -> None:
    sink = MemoryStore(source=SINK)
    handler = Recorder()
    await world.publish(*(ack(f"i{n % 2}", f"u{n}") for n in range(10)))
    async with world.consuming(handler, sink):
        await eventually(lambda: _count(sink, 10), what="10 seen events")
    before = await sink.read_all(limit=1000)
    # Replay from scratch: the embedded subscription from the start of the log, Kafka with a new group.
    await sink.commit([], tracking=Tracking(tracking_name(SINK, world.name), None, checkpoint=START))
    async with world.consuming(handler, sink, group="replay"):
        await eventually(lambda: _true(len(handler.calls) >= 20), what="every event delivered twice")
        await asyncio.sleep(0.1)
    assert sorted(handler.calls[10:]) == sorted(handler.calls[:10])
    assert await sink.read_all(limit=1000) == before


async def test_events_of_types_the_consumer_does_not_take_are_passed_over(world: World) -> None:
    """Never handed to the handler, no tracking record; the events after them arrive, in order."""
    sink = TrackedSink()
    handler = Recorder()
    published = await world.publish(
        *(
            ack(f"i{n % 2}", f"{n:02d}")
            if n % 3
            else IncidentResolved(incident_id=f"i{n % 2}", by="x", reason="fixed", occurred_at=T0)
            for n in range(30)
        )
    )
    taken = [e.id for e in published if isinstance(e.event, IncidentAcknowledged)]
    async with world.consuming(handler, sink, inputs=frozenset({"IncidentAcknowledged"})) as bus:
        await eventually(lambda: _count(sink, len(taken)), what=f"{len(taken)} seen events")
        await eventually(lambda: _true(bus.lag().get(world.name) == 0), what="no lag once caught up")
        await asyncio.sleep(0.2)  # nothing more trickles in
    assert sorted(handler.calls) == sorted(taken)
    assert sorted(sink.tracked) == sorted(taken)
    for incident in ("i0", "i1"):
        order = [e.event.by.split("|")[0] for e in await sink.read(f"seen-{incident}")]  # type: ignore[attr-defined]
        assert order == [f"{n:02d}" for n in range(30) if n % 3 and f"i{n % 2}" == incident]


async def test_a_poison_event_is_dead_lettered_with_its_reason_and_later_events_flow(world: World) -> None:
    sink = MemoryStore(source=SINK)
    handler = Recorder(poison="bad")
    events = await world.publish(ack("i1", "u1"), ack("i1", "bad"), ack("i1", "u2"), ack("i2", "u3"))
    poison = events[1]
    async with world.consuming(handler, sink):
        await eventually(lambda: _count(sink, 3), what="the 3 good events")
        dead_stream = f"deadletter-{tracking_name(SINK, world.name)}"
        await eventually(lambda: _true(len(sink._streams.get(dead_stream, [])) == 1), what="a dead letter")
    [dead] = await sink.read(dead_stream)
    assert isinstance(dead.event, EventDeadLettered)
    assert dead.event.event_id == poison.id
    assert dead.event.attempts == FAST.attempts
    assert dead.event.reason == "ValueError: cannot digest bad"
    assert handler.calls.count(poison.id) == FAST.attempts
    assert [e.event.by.split("|")[0] for e in await sink.read("seen-i1")] == ["u1", "u2"]  # type: ignore[attr-defined]
    if world.kafka:
        [record] = await _read_topic(world, dlq_topic(world.name), 1)
        assert Envelope.from_json(record.value).id == poison.id
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["dlq_reason"] == "ValueError: cannot digest bad"
        assert headers["dlq_consumer"] == tracking_name(SINK, world.name)
        assert headers["dlq_attempts"] == str(FAST.attempts)
        assert headers["ce_id"] == poison.id


async def test_nothing_is_lost_across_restarts_of_the_publisher_and_the_consumer(world: World) -> None:
    sink = MemoryStore(source=SINK)
    published = await world.publish(*(ack(f"i{n % 3}", f"u{n}") for n in range(10)))
    async with world.consuming(Recorder(), sink):
        await eventually(lambda: _count(sink, 10), what="10 seen events")
        await eventually(lambda: _relayed(world, published[-1]), what="relay checkpoint")
    await world.stop_relay()
    published += await world.publish(*(ack(f"i{n % 3}", f"u{n}") for n in range(10, 20)))
    await world.start_relay()
    async with world.consuming(Recorder(), sink):
        await eventually(lambda: _count(sink, 20), what="20 seen events")
        await eventually(lambda: _relayed(world, published[-1]), what="relay checkpoint")
        if world.relay is not None:
            assert world.relay.published == 10  # resumed from its checkpoint, not from the start
    handled = [e.event.by.split("|")[1] for e in await seen(sink)]  # type: ignore[attr-defined]
    assert sorted(handled) == sorted(e.id for e in published)


async def test_a_consumer_store_outage_delays_events_but_loses_none(world: World) -> None:
    sink = FlakyStore(source=SINK)
    published = await world.publish(*(ack(f"i{n % 3}", f"u{n}") for n in range(5)))
    async with world.consuming(Recorder(), sink) as bus:
        await eventually(lambda: _count(sink, 5), what="5 seen events")
        sink.down = True
        published += await world.publish(*(ack(f"i{n % 3}", f"u{n}") for n in range(5, 15)))
        await eventually(lambda: _true(bus.lag().get(world.name, 0) > 0), what="lag while the store is down")
        await asyncio.sleep(0.2)
        sink.down = False
        await eventually(lambda: _count(sink, 15), what="15 seen events")
    handled = [e.event.by.split("|")[1] for e in await seen(sink)]  # type: ignore[attr-defined]
    assert sorted(handled) == sorted(e.id for e in published)
    assert not any(s.startswith("deadletter-") for s in sink._streams)


async def test_writes_that_keep_conflicting_are_retried_later_not_dropped_nor_fatal(world: World) -> None:
    sink = MemoryStore(source=SINK)
    handler = Recorder()
    conflicts = 2 * (FAST.conflict_retries + 1)  # more than one delivery attempt absorbs

    async def contended(env: Envelope) -> Sequence[Write]:
        nonlocal conflicts
        if env.event.by == "u1" and conflicts > 0:  # type: ignore[attr-defined]
            conflicts -= 1
            raise ConcurrencyError("seen-i1", 0, 1)
        return await handler(env)

    published = await world.publish(ack("i1", "u0"), ack("i1", "u1"), ack("i1", "u2"))
    async with world.consuming(contended, sink):
        await eventually(lambda: _count(sink, 3), what="3 seen events")
    assert [e.event.by.split("|")[1] for e in await sink.read("seen-i1")] == [e.id for e in published]  # type: ignore[attr-defined]
    assert not any(s.startswith("deadletter-") for s in sink._streams)


# --- Kafka only: what has no embedded counterpart ---------------------------------------------


@pytest.fixture
async def kafka_world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    server = request.getfixturevalue("kafka_server")
    if not server.running and not server.external:
        server.start()
    name = f"src{uuid.uuid4().hex[:8]}"
    await ensure_topics(server.bootstrap, [name], partitions=2)
    async with SqliteStore(tmp_path / "src.db", source=name) as source:
        w = World("kafka", source, server.bootstrap)
        await w.start_relay()
        try:
            yield w
        finally:
            await w.close()


@pytest.mark.kafka
async def test_an_undecodable_record_goes_to_the_dlq_with_its_reason(kafka_world: World) -> None:
    world = kafka_world
    assert world.bootstrap is not None
    sink = MemoryStore(source=SINK)
    await world.publish(ack("i1", "u1"))
    producer = make_producer(world.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(events_topic(world.name), value=b"{not json", key=b"i1")
    finally:
        await producer.stop()
    await world.publish(ack("i1", "u2"))
    async with world.consuming(Recorder(), sink):
        await eventually(lambda: _count(sink, 2), what="the 2 good events")
        [record] = await _read_topic(world, dlq_topic(world.name), 1)
    assert record.value == b"{not json"
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["dlq_reason"].startswith("undecodable record: JSONDecodeError")
    assert headers["dlq_topic"] == events_topic(world.name)
    [dead] = await sink.read(f"deadletter-{tracking_name(SINK, world.name)}")
    assert isinstance(dead.event, EventDeadLettered)
    assert dead.event.reason == headers["dlq_reason"]


@pytest.mark.kafka
async def test_a_poison_record_mid_fetch_is_dead_lettered_and_the_rest_of_the_fetch_commits_in_order(
    kafka_world: World,
) -> None:
    world = kafka_world
    sink = MemoryStore(source=SINK)
    handler = Recorder(poison="bad")
    published = await world.publish(*(ack(f"i{n % 4}", "bad" if n == 21 else f"{n:03d}") for n in range(40)))
    await eventually(lambda: _relayed(world, published[-1]), what="relay checkpoint")
    async with world.consuming(
        handler, sink
    ):  # started after the records are there: they come in few fetches
        await eventually(lambda: _count(sink, 39), what="the 39 good events")
        dead_stream = f"deadletter-{tracking_name(SINK, world.name)}"
        await eventually(lambda: _true(len(sink._streams.get(dead_stream, [])) == 1), what="a dead letter")
        [record] = await _read_topic(world, dlq_topic(world.name), 1)
    assert Envelope.from_json(record.value).id == published[21].id
    assert handler.calls.count(published[21].id) == FAST.attempts
    for incident in range(4):
        order = [e.event.by.split("|")[0] for e in await sink.read(f"seen-i{incident}")]  # type: ignore[attr-defined]
        assert order == [f"{n:03d}" for n in range(incident, 40, 4) if n != 21]


class FailingOnce(MemoryStore):
    """A consumer store whose commit of each event in `fail` fails with StoreUnavailable, `times` times."""

    def __init__(self, *, source: str, times: int) -> None:
        super().__init__(source=source)
        self.fail: dict[str, int] = {}
        self.times = times

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Any:
        if tracking is not None and tracking.event_id is not None:
            left = self.fail.get(tracking.event_id, 0)
            if left > 0:
                self.fail[tracking.event_id] = left - 1
                raise StoreUnavailable("database is down")
        return await super().commit(writes, tracking=tracking)


@pytest.mark.kafka
async def test_a_store_failing_mid_fetch_is_re_read_from_the_first_uncommitted_record_losing_nothing(
    kafka_world: World,
) -> None:
    world = kafka_world
    sink = FailingOnce(source=SINK, times=2)
    handler = Recorder()
    published = await world.publish(*(ack(f"i{n % 4}", f"{n:03d}") for n in range(40)))
    sink.fail = {published[10].id: 2, published[27].id: 2}
    await eventually(lambda: _relayed(world, published[-1]), what="relay checkpoint")
    async with world.consuming(handler, sink):
        await eventually(lambda: _count(sink, 40), what="40 seen events")
        await asyncio.sleep(0.2)  # nothing more trickles in
    handled = [e.event.by.split("|")[1] for e in await seen(sink)]  # type: ignore[attr-defined]
    assert sorted(handled) == sorted(e.id for e in published)  # each once
    assert len(handler.calls) > 40, "the records after the failure were not re-read"
    for incident in range(4):
        order = [e.event.by.split("|")[0] for e in await sink.read(f"seen-i{incident}")]  # type: ignore[attr-defined]
        assert order == [f"{n:03d}" for n in range(incident, 40, 4)]
    assert not any(s.startswith("deadletter-") for s in sink._streams)


@pytest.mark.kafka
async def test_a_relay_that_republishes_after_a_crash_only_duplicates_what_consumers_dedup(
    kafka_world: World,
) -> None:
    world = kafka_world
    sink = MemoryStore(source=SINK)
    handler = Recorder()
    published = await world.publish(*(ack(f"i{n % 2}", f"u{n}") for n in range(6)))
    await eventually(lambda: _relayed(world, published[-1]), what="relay checkpoint")
    await world.stop_relay()
    # A crash after the broker's ack but before the checkpoint was saved: the batch goes out again.
    await world.source.commit([], tracking=Tracking(RELAY_CONSUMER, None, checkpoint=START))
    await world.start_relay()
    await eventually(lambda: _relayed(world, published[-1]), what="relay checkpoint again")
    async with world.consuming(handler, sink):
        await eventually(lambda: _true(len(handler.calls) == 12), what="12 deliveries")
    assert await _count(sink, 6)


@pytest.mark.kafka
async def test_two_instances_of_a_consumer_share_the_work_and_a_rebalance_loses_nothing(
    kafka_world: World,
) -> None:
    world = kafka_world
    sink = MemoryStore(source=SINK)
    handler = Recorder()

    async def slow(env: Envelope) -> Sequence[Write]:
        await asyncio.sleep(0.002)  # so that the rebalance finds records in hand
        return await handler(env)

    published = await world.publish(*(ack(f"i{n % 4}", f"{n:03d}") for n in range(40)))
    async with world.consuming(slow, sink):
        await eventually(lambda: _at_least(sink, 5), what="the first instance started")
        async with world.consuming(slow, sink):  # a second instance joins the same group
            published += await world.publish(*(ack(f"i{n % 4}", f"{n:03d}") for n in range(40, 80)))
            await eventually(lambda: _count(sink, 80), what="80 seen events")
    handled = [e.event.by.split("|")[1] for e in await seen(sink)]  # type: ignore[attr-defined]
    assert sorted(handled) == sorted(e.id for e in published)
    for incident in range(4):
        order = [e.event.by.split("|")[0] for e in await sink.read(f"seen-i{incident}")]  # type: ignore[attr-defined]
        assert order == [f"{n:03d}" for n in range(incident, 80, 4)]


@pytest.mark.kafka
async def test_relay_and_consumer_survive_a_broker_restart(
    kafka_world: World, request: pytest.FixtureRequest
) -> None:
    world = kafka_world
    server = request.getfixturevalue("kafka_server")
    if server.external:
        pytest.skip("cannot restart an external broker")
    sink = MemoryStore(source=SINK)
    published = await world.publish(*(ack(f"i{n % 2}", f"u{n}") for n in range(5)))
    async with world.consuming(Recorder(), sink):
        await eventually(lambda: _count(sink, 5), what="5 seen events")
        t0 = time.monotonic()
        await asyncio.to_thread(server.stop)
        published += await world.publish(*(ack(f"i{n % 2}", f"u{n}") for n in range(5, 10)))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(server.start)
        restarted = time.monotonic() - t0
        published += await world.publish(*(ack(f"i{n % 2}", f"u{n}") for n in range(10, 15)))
        await eventually(lambda: _count(sink, 15), what="15 seen events after the restart")
        print(f"broker down+up {restarted:.1f}s, caught up {time.monotonic() - t0:.1f}s after the stop")
    handled = [e.event.by.split("|")[1] for e in await seen(sink)]  # type: ignore[attr-defined]
    assert sorted(handled) == sorted(e.id for e in published)


# --- the relay on its own, with a fake producer -----------------------------------------------


class FakeProducer:
    """Acknowledges every send at once, or fails every send while `down`, as a broker that is away."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []
        self.down = False

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.down:
            ack.set_exception(KafkaConnectionError("broker is away"))
        else:
            self.records.append((topic, key, value))
            ack.set_result(None)
        return ack

    def ids(self) -> list[str]:
        return [Envelope.from_json(value).id for _, _, value in self.records if value is not None]


class Instance:
    """One service instance's view of a shared store, holding session locks as PostgreSQL would."""

    def __init__(self, store: MemoryStore, locks: dict[str, Instance]) -> None:
        self.store = store
        self.source = store.source
        self.locks = locks

    async def try_lock(self, name: str) -> bool:
        return self.locks.setdefault(name, self) is self

    async def release_lock(self, name: str) -> None:
        if self.locks.get(name) is self:
            del self.locks[name]

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Any:
        return await self.store.commit(writes, tracking=tracking)

    async def read_all(self, after: tuple[int, int] = START, limit: int = 1000) -> list[Envelope]:
        return await self.store.read_all(after, limit)

    async def checkpoint(self, consumer: str) -> tuple[int, int]:
        return await self.store.checkpoint(consumer)

    async def wait_for_append(self, timeout: float, after: tuple[int, int] | None = None) -> None:
        await self.store.wait_for_append(timeout, after)


async def test_the_relay_waits_out_a_broker_outage_and_saves_its_checkpoint_only_after_acks() -> None:
    store = MemoryStore(source="intake")
    producer = FakeProducer()
    relay = Relay(store, producer, poll=0.02, first_backoff=0.01, max_backoff=0.02)
    task = asyncio.create_task(relay.run())
    try:
        first = await append_acks(store, 3)
        await eventually(lambda: _true(len(producer.records) == 3), what="3 records")
        producer.down = True
        second = await append_acks(store, 3)
        await asyncio.sleep(0.1)
        assert await store.checkpoint(RELAY_CONSUMER) == first[-1].checkpoint
        producer.down = False
        await eventually(lambda: _true(len(producer.records) == 6), what="6 records")
        await eventually(
            lambda: _true_async(store.checkpoint(RELAY_CONSUMER), second[-1].checkpoint), what="checkpoint"
        )
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert producer.ids() == [e.id for e in first + second]
    topic, key, _ = producer.records[0]
    assert (topic, key) == ("lynchpin.intake.events", b"i0")


class CountingSaves(MemoryStore):
    """Counts the relay's checkpoint saves (a transaction each)."""

    def __init__(self) -> None:
        super().__init__(source="intake")
        self.saves = 0

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed:
        if tracking is not None and tracking.consumer == RELAY_CONSUMER:
            self.saves += 1
        return await super().commit(writes, tracking=tracking)


async def test_the_relay_saves_its_checkpoint_once_quiet_not_after_every_page() -> None:
    """While records keep coming (one every 10 ms, each read as a page of its own) the checkpoint is
    saved at most every `save_every`; once the log goes quiet it is saved at once."""
    store = CountingSaves()
    producer = FakeProducer()
    relay = Relay(store, producer, poll=0.02, quiet=0.25, save_every=10.0)
    task = asyncio.create_task(relay.run())
    try:
        sent: list[Envelope] = []
        for _ in range(30):
            sent += await append_acks(store, 1)
            await asyncio.sleep(0.01)
        assert len(producer.records) >= 10  # published as they came
        assert store.saves == 0
        await eventually(
            lambda: _true_async(store.checkpoint(RELAY_CONSUMER), sent[-1].checkpoint),
            what="saved once quiet",
        )
        assert store.saves == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert producer.ids() == [e.id for e in sent]


@asynccontextmanager
async def two_instances(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[list[Outbox]]:
    """Two instances of the `intake` service over one store: fakes, or two real PostgreSQL stores."""
    if kind == "fake":
        store = MemoryStore(source="intake")
        locks: dict[str, Instance] = {}
        yield [Instance(store, locks), Instance(store, locks)]
        assert locks == {}, "a relay kept its lock after it stopped"
        return
    from shared.store.postgres import PostgresStore

    dsn = request.getfixturevalue("pg_dsn")
    async with PostgresStore(dsn, source="intake") as a, PostgresStore(dsn, source="intake") as b:
        yield [a, b]


@pytest.mark.parametrize("kind", ["fake", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_only_the_relay_holding_the_lock_publishes_and_another_takes_over(
    kind: str, request: pytest.FixtureRequest
) -> None:
    producer = FakeProducer()
    async with two_instances(kind, request) as instances:
        relays = [Relay(i, producer, poll=0.02, lock_retry=0.02) for i in instances]
        tasks = [asyncio.create_task(r.run()) for r in relays]
        try:
            first = await append_acks(instances[0], 5)
            await eventually(
                lambda: _true_async(instances[0].checkpoint(RELAY_CONSUMER), first[-1].checkpoint),
                what="5 records acknowledged and the checkpoint saved",
            )
            [active] = [n for n, r in enumerate(relays) if r.active]
            tasks[active].cancel()  # that instance stops (or dies): its lock goes with it
            with pytest.raises(asyncio.CancelledError):
                await tasks[active]
            second = await append_acks(instances[active], 5)
            await eventually(lambda: _true(relays[1 - active].active), what="the other relay takes over")
            await eventually(lambda: _true(len(producer.records) >= 10), what="10 records")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert producer.ids() == [e.id for e in first + second]


async def test_a_relay_that_loses_its_lock_stops_publishing() -> None:
    store = MemoryStore(source="intake")
    locks: dict[str, Instance] = {}
    producer = FakeProducer()
    relay = Relay(Instance(store, locks), producer, poll=0.02, lock_retry=0.02)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _true(relay.active), what="the relay holds the lock")
        locks["relay:intake"] = Instance(store, locks)  # its session died; another instance took the lock
        await eventually(lambda: _true(not relay.active), what="the relay notices")
        await append_acks(store, 3)
        await asyncio.sleep(0.1)
        assert producer.records == []
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def append_acks(store: Outbox, n: int) -> list[Envelope]:
    return (
        await store.commit([Write(f"incident-i{k}", [ack(f"i{k}", f"u{k}")], None) for k in range(n)])
    ).envelopes


# --- helpers ----------------------------------------------------------------------------------


async def _true(value: bool) -> bool:
    return value


async def _true_async(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def _count(sink: EventStore, n: int) -> bool:
    found = len(await seen(sink))
    assert found <= n, f"{found} seen events, expected {n}: a write landed twice"
    return found == n


async def _at_least(sink: EventStore, n: int) -> bool:
    return len(await seen(sink)) >= n


async def _relayed(world: World, last: Envelope) -> bool:
    if not world.kafka:
        return True
    return await world.source.checkpoint(RELAY_CONSUMER) >= last.checkpoint


async def _read_topic(world: World, topic: str, n: int) -> list[Any]:
    """The first `n` records of `topic` (no group), waiting for them with a deadline."""
    from aiokafka import AIOKafkaConsumer

    reader = AIOKafkaConsumer(topic, bootstrap_servers=world.bootstrap, auto_offset_reset="earliest")
    await reader.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + WAIT
        while len(records) < n and time.monotonic() < deadline:
            for batch in (await reader.getmany(timeout_ms=200)).values():
                records += batch
    finally:
        await reader.stop()
    assert len(records) == n, f"{len(records)} records on {topic}, expected {n}"
    return records


@pytest.mark.parametrize("world", [pytest.param("kafka", marks=pytest.mark.kafka)], indirect=True)
async def test_kafka_offsets_are_committed_once_a_second_under_load_and_at_once_when_quiet(
    world: World,
) -> None:
    """An offset commit is a write on the broker: not one per fetch while records keep coming."""
    from aiokafka.admin import AIOKafkaAdminClient

    assert world.bootstrap is not None
    sink = MemoryStore(source=SINK)
    prefix = f"offsets-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
    await admin.start()

    async def committed() -> int:
        try:
            offsets = await admin.list_consumer_group_offsets(f"{prefix}.{SINK}")
        except KafkaError:  # the group's coordinator is not there yet
            return -1
        return sum(max(o.offset, 0) for o in offsets.values())

    async def committed_is(n: int) -> bool:
        return await committed() == n

    bus = KafkaBus(world.bootstrap, group_prefix=prefix, retry=FAST, first_backoff=0.05, commit_every=60)
    async with bus:
        task = asyncio.create_task(bus.run(SINK, [world.name], Recorder(), sink))
        try:
            await world.publish(ack("i0", "first"))
            await eventually(lambda: committed_is(1), what="the first record's offset, once quiet")
            for n in range(40):  # a record every 50 ms: no fetch comes back empty
                await world.publish(ack(f"i{n % 3}", f"u{n}"))
                await asyncio.sleep(0.05)
            assert len(await seen(sink)) >= 20, "the consumer did not keep up"
            assert await committed() == 1, "offsets were committed fetch by fetch under load"
            await eventually(lambda: committed_is(41), what="every offset, once quiet")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await admin.close()

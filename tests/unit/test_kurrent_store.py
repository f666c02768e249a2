"""The KurrentDB store without a server: its pure helpers, and the store contract run against a fake client.

The fake models what the `kurrentdbclient` documentation says the server does (0-based stream positions,
unique increasing commit positions with gaps, expected-state checks, idempotent appends, inclusive `read_all`
from an existing commit position, prefix filters, an atomic multi-stream append on 25.1+). It checks this
store's logic, not its assumptions about the server: only a real KurrentDB can (LYNCHPIN_TEST_KURRENTDB_URL).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Self, cast

import orjson
import pytest
from kurrentdbclient import NewEvent, NewEvents, RecordedEvent, StreamState
from kurrentdbclient import exceptions as kx

from shared.events import IncidentAcknowledged
from shared.store import START, ConcurrencyError, EventStore, StoreError, StoreUnavailable, Tracking, Write
from shared.store.kurrent import (
    KurrentStore,
    StreamNames,
    current_version,
    decode_metadata,
    encode_metadata,
    output_event_id,
    plan_writes,
    split_url,
    version_of,
)
from tests.contract import test_store_contract as contract

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ack(n: int = 0) -> IncidentAcknowledged:
    return IncidentAcknowledged(incident_id="1", by=f"user-{n}", occurred_at=T0)


# --- pure helpers ---------------------------------------------------------------------------------


def test_url_keeps_the_client_query_and_takes_out_the_namespace() -> None:
    assert split_url("kurrentdb://h:2113?Tls=false") == ("kurrentdb://h:2113?Tls=false", "lynchpin")
    assert split_url("kurrentdb://h:2113?Tls=false&LynchpinNamespace=t1") == (
        "kurrentdb://h:2113?Tls=false",
        "t1",
    )
    assert split_url("esdb://h:2113?lynchpinnamespace=t2") == ("esdb://h:2113", "t2")


def test_stream_names_are_prefixed_by_source_and_bookkeeping_stays_outside_every_data_prefix() -> None:
    names = StreamNames("lynchpin", "intake")
    assert names.data("incident-abc") == "lynchpin-intake-incident-abc"
    assert names.ours("lynchpin-intake-incident-abc") == "incident-abc"
    assert names.ours("lynchpin-triage-incident-abc") is None
    assert names.ours("$stats-0.0.0.0:2113") is None
    bookkeeping = [names.handled("c", "e"), names.checkpoint("triage<-intake"), names.probe]
    for name in bookkeeping:
        assert names.ours(name) is None
        assert not name.startswith("$")
    assert names.handled("a-b", "c") != names.handled("a", "b-c")
    assert names.handled("c", "e") == StreamNames("lynchpin", "intake").handled("c", "e")
    for bad in ("in-take", "in~take", "", "a b"):
        with pytest.raises(ValueError):
            StreamNames("lynchpin", bad)


def test_versions_are_1_based_counts_and_positions_0_based() -> None:
    assert current_version(None) is StreamState.ANY
    assert current_version(0) is StreamState.NO_STREAM
    assert current_version(1) == 0
    assert current_version(5) == 4
    with pytest.raises(ValueError):
        current_version(-1)
    assert version_of(StreamState.NO_STREAM) == 0
    assert version_of(0) == 1
    assert version_of(4) == 5
    assert version_of(None) is None
    assert version_of(StreamState.ANY) is None


def test_metadata_is_a_json_object_of_strings_and_reads_back() -> None:
    raw = encode_metadata("intake", "corr", "cause", 2)
    assert all(isinstance(v, str) for v in orjson.loads(raw).values())
    meta = decode_metadata(raw)
    assert (meta["source"], meta["correlation_id"], meta["causation_id"], meta["schema_version"]) == (
        "intake",
        "corr",
        "cause",
        "2",
    )
    assert "causation_id" not in decode_metadata(encode_metadata("intake", "corr", None, 1))
    assert decode_metadata(b"") == {} and decode_metadata(b"not json") == {} and decode_metadata(b"[1]") == {}


def test_output_event_ids_are_the_same_on_redelivery_and_differ_otherwise() -> None:
    assert output_event_id("triage", "c", "e", 0) == output_event_id("triage", "c", "e", 0)
    ids = {output_event_id("triage", c, e, i) for c in ("c", "d") for e in ("e", "f") for i in (0, 1)}
    assert len(ids) == 8


def test_writes_to_one_stream_are_merged_and_must_agree() -> None:
    [a, b] = plan_writes([Write("a", [ack(1)], 0), Write("b", [ack(2)], None), Write("a", [ack(3)], 1)])
    assert (a.stream, a.expected, [o for o, _, _ in a.events]) == ("a", 0, [0, 2])
    assert (b.stream, b.expected) == ("b", None)
    [a] = plan_writes([Write("a", [ack(1), ack(2)], None), Write("a", [ack(3)], 7)])
    assert a.expected == 5
    with pytest.raises(ConcurrencyError):
        plan_writes([Write("a", [ack(1)], 0), Write("a", [ack(2)], 0)])


async def test_the_store_is_constructed_without_a_server_and_refuses_work_until_opened() -> None:
    store = KurrentStore("kurrentdb://localhost:2113?Tls=false", source="intake")
    assert store.source == "intake" and store.names.prefix == "lynchpin-intake-"
    with pytest.raises(StoreUnavailable):
        await store.commit([Write("s", [ack()], 0)])
    with pytest.raises(ValueError):
        KurrentStore("kurrentdb://localhost:2113", source="in-take")


async def test_an_unreachable_server_is_store_unavailable() -> None:
    store = KurrentStore("kurrentdb://127.0.0.1:1?Tls=false", source="intake", timeout=2)
    with pytest.raises(StoreUnavailable):
        async with store:
            pass


# --- a fake KurrentDB client ------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, events: list[RecordedEvent]) -> None:
        self._events = iter(events)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RecordedEvent:
        try:
            return next(self._events)
        except StopIteration:
            raise StopAsyncIteration from None


class FakeSubscription(FakeResponse):
    def __init__(self, server: FakeKurrent, backlog: list[RecordedEvent], prefix: str) -> None:
        super().__init__([])
        self.queue: asyncio.Queue[RecordedEvent | None] = asyncio.Queue()
        self.prefix = prefix
        self.server = server
        for rec in backlog:
            self.queue.put_nowait(rec)
        server.subscriptions.append(self)

    async def __anext__(self) -> RecordedEvent:
        rec = await self.queue.get()
        if rec is None:
            raise StopAsyncIteration
        return rec

    async def stop(self, *, timeout: float | None = None) -> None:
        if self in self.server.subscriptions:
            self.server.subscriptions.remove(self)


class FakeKurrent:
    """One in-memory 'server' shared by every client made from it."""

    def __init__(self, *, multi_append: bool = True) -> None:
        self.multi_append = multi_append
        self.log: list[RecordedEvent] = []
        self.streams: dict[str, list[RecordedEvent]] = {}
        self.subscriptions: list[FakeSubscription] = []
        self.next_position = 1000
        self.down = False

    def client(self, uri: str) -> FakeKurrent:
        assert "LynchpinNamespace" not in uri
        return self

    async def connect(self) -> None:
        self._check()

    async def close(self) -> None:
        return None

    def _check(self) -> None:
        if self.down:
            raise kx.ServiceUnavailableError("down")

    # writes

    def _conflict(self, name: str, current: int | StreamState, new: list[NewEvent]) -> bool:
        """True when these events were appended already (idempotent), raise when the state is wrong."""
        stream = self.streams.get(name, [])
        last = len(stream) - 1
        ids = [e.id for e in new]
        if current is StreamState.ANY:
            return bool(ids) and all(i in {r.id for r in stream} for i in ids)
        start = 0 if current is StreamState.NO_STREAM else cast(int, current) + 1
        if [r.id for r in stream[start : start + len(ids)]] == ids:
            return True
        if (current is StreamState.NO_STREAM and stream) or (isinstance(current, int) and current != last):
            actual = StreamState.NO_STREAM if not stream else last
            raise kx.WrongCurrentVersionError(
                f"{name}: {actual} not {current}",
                stream_name=name,
                actual_version=actual,
                expected_version=current,
            )
        return False

    def _write(self, name: str, new: Iterable[NewEvent]) -> int:
        stream = self.streams.setdefault(name, [])
        for e in new:
            self.next_position += 37 + len(self.log) % 5  # unique, increasing, with gaps
            rec = RecordedEvent(
                type=e.type,
                data=e.data,
                metadata=e.metadata,
                content_type=e.content_type,
                id=e.id,
                stream_name=name,
                stream_position=len(stream),
                commit_position=self.next_position,
                prepare_position=self.next_position,
                recorded_at=datetime.now(UTC),
            )
            stream.append(rec)
            self.log.append(rec)
            for sub in self.subscriptions:
                if name.startswith(sub.prefix):
                    sub.queue.put_nowait(rec)
        if len(self.log) % 3 == 0:  # the server's own events interleave with ours
            self._write_system()
        return self.next_position

    def _write_system(self) -> None:
        self.next_position += 11
        self.log.append(
            RecordedEvent(
                type="$statsCollected",
                data=b"{}",
                metadata=b"",
                content_type="application/json",
                id=uuid.uuid4(),
                stream_name="$stats-127.0.0.1:2113",
                stream_position=0,
                commit_position=self.next_position,
                prepare_position=self.next_position,
            )
        )

    async def append_to_stream(
        self,
        stream_name: str,
        *,
        events: Iterable[NewEvent],
        current_version: int | StreamState,
        timeout: float | None = None,
    ) -> int:
        self._check()
        await asyncio.sleep(0)
        new = list(events)
        if self._conflict(stream_name, current_version, new):
            return self.streams[stream_name][-1].commit_position
        return self._write(stream_name, new)

    async def multi_append_to_stream(
        self, events: Iterable[NewEvents], *, timeout: float | None = None
    ) -> int:
        self._check()
        await asyncio.sleep(0)
        if not self.multi_append:
            raise kx.GrpcError(
                "<AioRpcError: status = StatusCode.UNIMPLEMENTED, details = 'Method not found'>"
            )
        batches = list(events)
        names = [b.stream_name for b in batches]
        if len(set(names)) < len(names):
            raise kx.MultiAppendToSameStreamError("twice", stream_name=names[0])
        for b in batches:
            for e in b.events:
                meta = orjson.loads(e.metadata) if e.metadata else {}
                if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                    raise kx.ProgrammingError("metadata must be a JSON object of strings")
        fresh = [b for b in batches if not self._conflict(b.stream_name, b.current_version, list(b.events))]
        for b in fresh:
            self._write(b.stream_name, b.events)
        return self.next_position

    async def set_stream_metadata(
        self, stream_name: str, *, metadata: dict[str, Any], timeout: float | None = None
    ) -> None:
        self._check()
        self._write(f"$${stream_name}", [NewEvent(type="$metadata", data=orjson.dumps(metadata))])

    # reads

    async def get_current_version(
        self, stream_name: str, *, timeout: float | None = None
    ) -> int | StreamState:
        self._check()
        stream = self.streams.get(stream_name)
        return len(stream) - 1 if stream else StreamState.NO_STREAM

    async def get_stream(
        self,
        stream_name: str,
        *,
        stream_position: int | None = None,
        backwards: bool = False,
        limit: int = sys.maxsize,
        timeout: float | None = None,
    ) -> tuple[RecordedEvent, ...]:
        self._check()
        await asyncio.sleep(0)
        if stream_name not in self.streams:
            raise kx.NotFoundError(stream_name)
        stream = self.streams[stream_name]
        if backwards:
            end = len(stream) if stream_position is None else stream_position + 1
            return tuple(reversed(stream[:end]))[:limit]
        return tuple(stream[stream_position or 0 :][:limit])

    async def read_all(
        self,
        *,
        commit_position: int | None = None,
        filter_include: tuple[str, ...] = (),
        filter_by_stream_name: bool = False,
        filter_by_prefix: bool = False,
        limit: int = sys.maxsize,
        timeout: float | None = None,
    ) -> FakeResponse:
        self._check()
        await asyncio.sleep(0)
        assert filter_by_stream_name and filter_by_prefix and len(filter_include) == 1
        start = 0
        if commit_position is not None:
            positions = [r.commit_position for r in self.log]
            if commit_position not in positions:
                raise kx.InvalidCommitPositionError(str(commit_position))
            start = positions.index(commit_position)
        page = [r for r in self.log[start:] if r.stream_name.startswith(filter_include[0])][:limit]
        return FakeResponse(page)

    async def subscribe_to_all(
        self,
        *,
        commit_position: int | None = None,
        from_end: bool = False,
        filter_include: tuple[str, ...] = (),
        filter_by_stream_name: bool = False,
        filter_by_prefix: bool = False,
    ) -> FakeSubscription:
        self._check()
        [prefix] = filter_include
        if commit_position is not None:
            backlog = [r for r in self.log if r.commit_position > commit_position]
        else:
            backlog = [] if from_end else list(self.log)
        return FakeSubscription(self, [r for r in backlog if r.stream_name.startswith(prefix)], prefix)


def fake_store(server: FakeKurrent, source: str = "intake") -> KurrentStore:
    factory = cast(Callable[[str], Any], server.client)
    return KurrentStore(
        "kurrentdb://fake:2113?Tls=false&LynchpinNamespace=t", source=source, client_factory=factory
    )


# --- the store contract, run against the fake ------------------------------------------------------


NEED_ATOMIC_COMMITS = {
    "test_wrong_expected_version_is_a_typed_error_and_writes_nothing",
    "test_a_burst_of_commits_is_decided_request_by_request",  # a two-stream request, one conflicting
}


def contract_tests() -> list[Any]:
    """Every contract test that needs only a `store`, against a 25.1+ fake and a pre-25.1 one."""
    tests = []
    for name, fn in sorted(vars(contract).items()):
        if not (name.startswith("test_") and inspect.iscoroutinefunction(fn)):
            continue
        if list(inspect.signature(fn).parameters) != ["store"]:
            continue
        tests.append(pytest.param(fn, False, id=f"atomic-{name}"))
        not_atomic = name in NEED_ATOMIC_COMMITS
        marks = (
            [pytest.mark.xfail(reason="before KurrentDB 25.1 a commit is not atomic")] if not_atomic else []
        )
        tests.append(pytest.param(fn, True, marks=marks, id=f"pre-25.1-{name}"))
    return tests


@pytest.mark.parametrize(("test", "old_server"), contract_tests())
async def test_contract_against_a_fake_server(
    test: Callable[[EventStore], Awaitable[None]], old_server: bool
) -> None:
    async with fake_store(FakeKurrent(multi_append=not old_server)) as store:
        await test(store)


@pytest.fixture
async def server() -> FakeKurrent:
    return FakeKurrent()


@pytest.fixture
async def store(server: FakeKurrent) -> AsyncIterator[KurrentStore]:
    async with fake_store(server) as opened:
        yield opened


async def test_stores_of_two_sources_share_a_server_without_seeing_each_other(server: FakeKurrent) -> None:
    async with fake_store(server, "intake") as intake, fake_store(server, "triage") as triage:
        await intake.commit([Write("incident-1", [ack(1)], 0)])
        await triage.commit([Write("incident-1", [ack(2)], 0)], tracking=Tracking("t", "e", (0, 1)))
        assert [e.event for e in await intake.read_all()] == [ack(1)]
        assert [e.event for e in await triage.read_all()] == [ack(2)]
        assert [e.source for e in await triage.read("incident-1")] == ["triage"]
    assert "t-intake-incident-1" in server.streams and "t-triage-incident-1" in server.streams


async def test_metadata_and_positions_come_back_from_the_server(
    store: KurrentStore, server: FakeKurrent
) -> None:
    [env] = (await store.commit([Write("s", [ack()], 0, correlation_id="c", causation_id="x")])).envelopes
    [rec] = server.streams["t-intake-s"]
    assert (env.position, env.version, env.id) == (rec.commit_position, 1, str(rec.id))
    [back] = await store.read("s")
    assert (back.correlation_id, back.causation_id, back.position, back.tx) == ("c", "x", env.position, 0)


async def test_several_events_and_streams_in_one_commit_are_read_back_in_write_order(
    store: KurrentStore,
) -> None:
    writes = [Write("a", [ack(1), ack(2)], 0), Write("b", [ack(3)], None), Write("a", [ack(4)], 2)]
    envelopes = (await store.commit(writes)).envelopes
    assert [(e.stream, e.version, e.event) for e in envelopes] == [
        ("a", 1, ack(1)),
        ("a", 2, ack(2)),
        ("b", 1, ack(3)),
        ("a", 3, ack(4)),
    ]
    assert [e.id for e in await store.read_all()] == [
        e.id for e in sorted(envelopes, key=lambda e: e.position)
    ]


async def test_a_redelivered_output_keeps_its_ids(store: KurrentStore) -> None:
    first = await store.commit([Write("x", [ack()], None)], tracking=Tracking("c", "e1"))
    other = await store.commit([Write("x", [ack()], None)], tracking=Tracking("c", "e2"))
    assert first.envelopes[0].id == str(output_event_id("intake", "c", "e1", 0))
    assert first.envelopes[0].id != other.envelopes[0].id


async def test_a_lost_server_is_store_unavailable_and_a_bad_checkpoint_a_store_error(
    store: KurrentStore, server: FakeKurrent
) -> None:
    await store.commit([Write("s", [ack()], 0)])
    with pytest.raises(StoreError) as err:
        await store.read_all(after=(0, 7))  # not a position of this store
    assert not isinstance(err.value, StoreUnavailable)
    server.down = True
    for call in (store.ping(), store.read("s"), store.read_all(), store.commit([Write("s", [ack()], 1)])):
        with pytest.raises(StoreUnavailable):
            await call


async def test_wait_for_append_is_woken_by_another_store_through_the_subscription(
    server: FakeKurrent,
) -> None:
    async with fake_store(server) as follower, fake_store(server) as writer:
        [env] = (await writer.commit([Write("s", [ack()], 0)])).envelopes
        waiter = asyncio.create_task(follower.wait_for_append(timeout=10, after=START))
        await asyncio.wait_for(waiter, timeout=2)  # behind: the subscription from START delivers env
        assert env.checkpoint > START
        waiter = asyncio.create_task(follower.wait_for_append(timeout=10))
        await asyncio.sleep(0.05)
        await writer.commit([Write("s", [ack()], 1)])
        await asyncio.wait_for(waiter, timeout=2)

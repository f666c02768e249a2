"""PostgreSQL-only rules beyond the shared contract: many instances writing one store at once, with long and
short transactions interleaved, a follower that never skips; server-side conflicts as ConcurrencyError;
an unreachable or restarting server as StoreUnavailable, and recovery without help."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import asyncpg
import pytest

from shared.envelope import Checkpoint, Envelope
from shared.events import IncidentAcknowledged
from shared.store import START, ConcurrencyError, StoreUnavailable, Write, append
from shared.store.postgres import PostgresStore
from shared.testing.servers import ExternalPostgres, PostgresServer

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS = '"intake".events'


def ack(stream: str, n: int = 0) -> IncidentAcknowledged:
    return IncidentAcknowledged(incident_id=stream, by=f"user-{n}", occurred_at=T0)


async def insert_raw(conn: asyncpg.Connection, stream: str, version: int) -> None:
    """An event written by another session, outside any store instance (same table, same rules)."""
    await conn.execute(
        f"INSERT INTO {EVENTS} (id, stream, version, type, data, source, correlation_id, schema_version,"
        " recorded_at) VALUES (gen_random_uuid(), $1, $2, 'IncidentAcknowledged', $3::jsonb, 'intake', $1, 1,"
        " now())",
        stream,
        version,
        ack(stream, version).model_dump_json(),
    )


@pytest.fixture
async def raw(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with PostgresStore(pg_dsn, source="intake"):  # creates the tables
        pass
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def follow(store: PostgresStore, seen: list[Envelope], done: asyncio.Event) -> None:
    at: Checkpoint = START
    while True:
        page = await store.read_all(after=at, limit=50)
        seen.extend(page)
        if page:
            at = page[-1].checkpoint
        elif done.is_set():
            page = await store.read_all(after=at)
            if not page:
                return
            seen.extend(page)
            at = page[-1].checkpoint
        else:
            await store.wait_for_append(timeout=0.05, after=at)


async def test_a_follower_sees_every_event_once_in_stream_order_under_many_instances_and_long_transactions(
    pg_dsn: str, raw: asyncpg.Connection
) -> None:
    instances, callers, per_caller = 8, 3, 20
    done = asyncio.Event()
    seen: list[Envelope] = []
    async with AsyncExitStack() as stack:
        stores = [
            await stack.enter_async_context(PostgresStore(pg_dsn, source="intake")) for _ in range(instances)
        ]
        follower_store = await stack.enter_async_context(PostgresStore(pg_dsn, source="intake"))

        async def caller(store: PostgresStore, c: int) -> None:
            rng = random.Random(c)
            for n in range(per_caller):
                own = Write(f"own-{c}-{rng.randrange(2)}", [ack("own", n), ack("own", n + 1)], None)
                shared = Write(f"shared-{rng.randrange(3)}", [ack("shared", n)], None)
                await store.commit(rng.choice([[own], [shared], [own, shared], [shared, own]]))

        async def long_transactions() -> None:
            """Hold a version of a shared stream in an open transaction while everyone else commits:
            writers of that stream block inside their batch transactions (which already hold rows and an
            xid), others commit around them, and positions commit far out of order."""
            rng = random.Random(-1)
            committed = 0
            while committed < 6:
                stream = f"shared-{rng.randrange(3)}"
                try:
                    async with raw.transaction():
                        head = await raw.fetchval(
                            f"SELECT coalesce(max(version), 0) FROM {EVENTS} WHERE stream = $1", stream
                        )
                        await insert_raw(raw, stream, head + 1)
                        await raw.execute("SELECT pg_sleep($1)", rng.uniform(0.1, 0.4))
                    committed += 1
                except asyncpg.UniqueViolationError:
                    pass  # someone took that version first: try again at the new head
                await asyncio.sleep(0.02)

        follower = asyncio.create_task(follow(follower_store, seen, done))
        stack.callback(follower.cancel)
        await asyncio.gather(
            long_transactions(),
            *(caller(stores[c % instances], c) for c in range(instances * callers)),
        )
        done.set()
        await asyncio.wait_for(follower, timeout=60)

        ids = {r[0] for r in await raw.fetch(f"SELECT id::text FROM {EVENTS}")}
        assert len(ids) >= instances * callers * per_caller
        assert len(seen) == len(ids)
        assert {e.id for e in seen} == ids
        by_stream: dict[str, list[int]] = {}
        for e in seen:
            by_stream.setdefault(e.stream, []).append(e.version)
        for stream, versions in by_stream.items():
            assert versions == list(range(1, len(versions) + 1)), stream
        positions = [e.position for e in seen]
        assert positions != sorted(positions), "the follower saw positions commit out of order"


async def test_two_instances_racing_on_one_version_have_one_winner_and_a_concurrency_error(
    pg_dsn: str,
) -> None:
    async with PostgresStore(pg_dsn, source="intake") as a, PostgresStore(pg_dsn, source="intake") as b:

        async def attempt(store: PostgresStore, stream: str) -> ConcurrencyError | None:
            try:
                await append(store, stream, [ack(stream)], expected_version=0)
            except ConcurrencyError as e:
                return e
            return None

        streams = [f"race-{n}" for n in range(30)]
        results = await asyncio.gather(*(attempt(s, x) for x in streams for s in (a, b)))
        for stream, (first, second) in zip(
            streams, zip(results[::2], results[1::2], strict=True), strict=True
        ):
            errors = [e for e in (first, second) if e is not None]
            assert len(errors) == 1, stream
            assert (errors[0].stream, errors[0].expected, errors[0].actual) == (stream, 0, 1)
            assert [e.version for e in await a.read(stream)] == [1]


async def test_a_version_taken_by_a_transaction_still_open_ends_as_a_concurrency_error(
    pg_dsn: str, raw: asyncpg.Connection
) -> None:
    async with PostgresStore(pg_dsn, source="intake") as store:
        tx = raw.transaction()
        await tx.start()
        await insert_raw(raw, "held", 1)
        blocked = asyncio.create_task(
            store.commit(
                [Write("other", [ack("other")], 0), Write("held", [ack("held")], expected_version=0)]
            )
        )
        anywhere = asyncio.create_task(append(store, "held", [ack("held", 2)], expected_version=None))
        await asyncio.sleep(0.3)  # both wait on the unique index, behind the open transaction
        assert not blocked.done() and not anywhere.done()
        await tx.commit()

        with pytest.raises(ConcurrencyError) as err:
            await blocked
        assert (err.value.stream, err.value.expected, err.value.actual) == ("held", 0, 1)
        assert await store.read("other") == []
        assert [e.version for e in await anywhere] == [2]
        assert [e.version for e in await store.read("held")] == [1, 2]


async def test_an_open_transaction_delays_a_follower_and_loses_nothing(
    pg_dsn: str, raw: asyncpg.Connection
) -> None:
    async with PostgresStore(pg_dsn, source="intake") as store:
        tx = raw.transaction()
        await tx.start()
        await insert_raw(raw, "slow", 1)  # takes position 1 first, commits last
        [env] = await append(store, "fast", [ack("fast")], expected_version=0)
        assert env.position > 1
        assert await store.read_all() == []
        before = asyncio.get_running_loop().time()
        await store.wait_for_append(timeout=0.2, after=START)  # nothing to read yet: wait, don't spin
        assert asyncio.get_running_loop().time() - before >= 0.15
        await tx.commit()
        log = await store.read_all()
        assert [(e.stream, e.position) for e in log] == [("slow", 1), ("fast", env.position)]
        assert [e.tx for e in log] == sorted(e.tx for e in log)
        assert log[1].checkpoint == env.checkpoint


async def test_the_log_is_in_transaction_order_as_numbers_not_as_text(
    pg_dsn: str, raw: asyncpg.Connection
) -> None:
    for tx, stream in (("10", "ten"), ("9", "nine")):  # "10" < "9" as text
        await raw.execute(
            f"INSERT INTO {EVENTS} (tx, id, stream, version, type, data, source, correlation_id,"
            " schema_version, recorded_at) VALUES ($1::text::xid8, gen_random_uuid(), $2, 1,"
            " 'IncidentAcknowledged', $3::jsonb, 'intake', $2, 1, now())",
            tx,
            stream,
            ack(stream).model_dump_json(),
        )
    async with PostgresStore(pg_dsn, source="intake") as store:
        log = await store.read_all()
        assert [(e.tx, e.stream) for e in log] == [(9, "nine"), (10, "ten")]
        assert [e.stream for e in await store.read_all(after=log[0].checkpoint)] == ["ten"]


async def test_appends_in_one_instance_wake_followers_in_another(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn, source="intake") as a, PostgresStore(pg_dsn, source="intake") as b:
        await asyncio.sleep(0.2)  # let b's LISTEN connection come up
        waiter = asyncio.create_task(b.wait_for_append(timeout=30))
        await asyncio.sleep(0.05)
        await append(a, "s", [ack("s")], expected_version=0)
        await asyncio.wait_for(waiter, timeout=5)


async def test_stores_of_different_sources_share_a_database_without_sharing_tables(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn, source="intake") as a, PostgresStore(pg_dsn, source="triage") as b:
        await append(a, "s", [ack("s")], expected_version=0)
        assert await b.read("s") == []
        await append(b, "s", [ack("s")], expected_version=0)


async def test_only_one_instance_holds_a_named_lock(pg_dsn: str) -> None:
    async with PostgresStore(pg_dsn, source="intake") as a, PostgresStore(pg_dsn, source="intake") as b:
        assert await a.try_lock("relay")
        assert await a.try_lock("relay")
        assert not await b.try_lock("relay")
        assert await b.try_lock("other")
        await a.release_lock("relay")
        assert await b.try_lock("relay")
        assert not await a.try_lock("relay")
    async with PostgresStore(pg_dsn, source="intake") as c:
        assert await c.try_lock("relay")  # closing b released its locks


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_closed_port_is_store_unavailable_not_a_driver_error() -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{closed_port()}/lynchpin"
    with pytest.raises(StoreUnavailable):
        async with PostgresStore(dsn, source="intake"):
            pass


@pytest.mark.slow
async def test_the_store_is_unavailable_while_the_server_is_down_and_recovers_by_itself(
    pg_dsn: str, postgres_server: PostgresServer | ExternalPostgres
) -> None:
    if isinstance(postgres_server, ExternalPostgres):
        pytest.skip("cannot stop an external PostgreSQL server")
    async with (
        PostgresStore(pg_dsn, source="intake") as store,
        PostgresStore(pg_dsn, source="intake") as other,
    ):
        await append(store, "s", [ack("s", 1)], expected_version=0)
        assert await store.try_lock("relay")
        postgres_server.stop()
        try:
            with pytest.raises(StoreUnavailable):
                await append(store, "s", [ack("s", 2)], expected_version=1)
            with pytest.raises(StoreUnavailable):
                await store.read_all()
            with pytest.raises(StoreUnavailable):
                await store.ping()
            with pytest.raises(StoreUnavailable):
                await store.try_lock("relay")
        finally:
            postgres_server.start()
        await store.ping()
        [env] = await append(store, "s", [ack("s", 2)], expected_version=1)
        assert env.version == 2
        assert [e.version for e in await other.read_all()] == [1, 2]
        assert await store.try_lock("relay")

        async def woken_by_notify() -> bool:
            waiter = asyncio.create_task(other.wait_for_append(timeout=2))
            await asyncio.sleep(0.05)
            await append(store, "t", [ack("t")], expected_version=None)
            started = asyncio.get_running_loop().time()
            await waiter
            return asyncio.get_running_loop().time() - started < 1

        fast = 0
        for _ in range(30):  # the LISTEN connection comes back on its own, after a back-off
            fast = fast + 1 if await woken_by_notify() else 0
            if fast == 2:
                break
        assert fast == 2


async def test_followers_find_what_is_new_through_the_index_not_by_scanning_the_log(pg_dsn: str) -> None:
    """Every wake-up of every follower asks whether anything is visible past its checkpoint: a scan of
    the whole log there grows with it (4.5 ms at 50,000 events)."""
    async with PostgresStore(pg_dsn, source="intake") as store:
        for k in range(20):
            await store.commit([Write(f"incident-{k}-{n}", [ack("x", n)], None) for n in range(100)])
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f"ANALYZE {EVENTS}")
            await conn.execute("SET plan_cache_mode = force_generic_plan")  # as a prepared statement is
            for sql, args in ((store._sql_visible, ("1", 1)), (store._sql_read_all, ("1", 1, 1000))):
                plan = "\n".join(r[0] for r in await (await conn.prepare(f"EXPLAIN {sql}")).fetch(*args))
                assert "Seq Scan" not in plan and "events_tx_position" in plan, plan
        finally:
            await conn.close()

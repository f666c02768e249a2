"""The PostgreSQL event store, for production and scale-out: asyncpg, group commit, an xid8 horizon.

Layout: each store lives in its own PostgreSQL schema, named by `schema` or else by `source` (so several
services share one database without clashing): `"<schema>".events`, `.handled` and `.checkpoints`.

Never skipping an event: identity positions are taken at INSERT but transactions commit in another order, so
every row also records its writing transaction (`tx xid8 DEFAULT pg_current_xact_id()`). A follower reads
rows after its checkpoint `(tx, position)` whose transaction is older than the oldest one still running
(`tx < pg_snapshot_xmin(pg_current_snapshot())`), in `(tx, position)` order: every such row is committed (or
gone), and any row written later gets a larger tx. A long transaction delays followers; it never loses events.

Writes (group commit): concurrent `commit` calls are queued and one writer task commits a batch in one
transaction. First set-wise: one statement takes the xid and reads every stream head, one
checks the tracking records, then one inserts the new `handled` rows, one the checkpoints and one every event
(`INSERT ... SELECT FROM unnest(...)`), so a batch costs about six round trips whatever its size. Conflicts
inside the batch are settled in Python against the heads. If that meets another instance's rows (a unique
violation, or a row lock held longer than `LOCK_WAIT`), the batch is rolled back and run again carefully: one
savepoint per request, so that one request's conflict does not fail the others. UNIQUE (stream, version) is
the optimistic-concurrency check across instances: its violation becomes ConcurrencyError (or a retry at the
new head when `expected_version` is None). Only a batch's first request waits on another transaction as long
as it takes; later ones, whose batch already holds locks, wait `LOCK_WAIT` and then move to the next
transaction, so instances do not deadlock each other (should one happen anyway, the batch runs again).
NOTIFY (payload: the batch's last checkpoint) wakes followers in every process.

Per-stream order under the (tx, position) order needs one more rule when several instances write the same
tables: a stream's versions must be written in tx order. In the careful path a transaction already has its
xid when it reads a later request's stream head, and may find that head written by a younger transaction
that committed meanwhile. That request is rolled back to its savepoint and runs first in the next
transaction, whose xid is taken in the very statement that reads the head (so after that commit).

Availability: lost or refused connections become StoreUnavailable; the pool reconnects on the next call, the
LISTEN connection is re-established by its own task, and a batch that failed before COMMIT was sent is run
again. A batch whose COMMIT got no answer fails with StoreUnavailable: it may or may not have committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self

import asyncpg
import orjson

from shared.envelope import Checkpoint, Envelope
from shared.events import Event, parse_event
from shared.store.base import (
    START,
    Committed,
    ConcurrencyError,
    StoreError,
    StoreUnavailable,
    Tracking,
    Write,
)
from shared.store.kept import Kept

UNAVAILABLE: Final[tuple[type[BaseException], ...]] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect timeout
    asyncpg.PostgresConnectionError,  # 08xxx, and a connection that died mid-query
    asyncpg.InterfaceError,  # the connection or pool is closed
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutting down, starting up, query cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby after failover
    # A pooled connection whose server died mid-operation (the postmaster was SIGKILLed) can fail with
    # "cannot switch to state N; another operation is in progress" instead of a connection error.
    asyncpg.InternalClientError,
)
CONNECT_TIMEOUT: Final = 5.0
POOL_MAX: Final = 10
REQUEST_ATTEMPTS: Final = 20  # per request and transaction: retries at a moved stream head
BATCH_ATTEMPTS: Final = 5  # per batch: reruns after a deadlock or a connection lost before COMMIT
LOCK_WAIT: Final = "50ms"  # how long a request waits on another transaction while its batch holds locks
MAX_DEFERRALS: Final = 20  # per request: moves out of a batch it led (tx order could not be kept)
LISTEN_CHECK: Final = 10.0  # seconds between liveness checks of the LISTEN connection
VERSION_KEY: Final = "events_stream_version_key"

DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
    id uuid NOT NULL UNIQUE,
    stream text NOT NULL,
    version integer NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    source text NOT NULL,
    correlation_id text NOT NULL,
    causation_id text,
    schema_version integer NOT NULL,
    recorded_at timestamptz NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream, version)
);
CREATE INDEX IF NOT EXISTS events_tx_position ON {s}.events (tx, position);
CREATE TABLE IF NOT EXISTS {s}.handled (
    consumer text NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE TABLE IF NOT EXISTS {s}.checkpoints (
    consumer text PRIMARY KEY,
    tx bigint NOT NULL,
    position bigint NOT NULL
);
"""

# Renamed on purpose: an output column named `tx` (text) would be what `ORDER BY tx` sorts by.
COLUMNS = (
    "position, tx::text AS tx_text, id::text AS id_text, stream, version, data::text AS data_text, source,"
    " correlation_id, causation_id, schema_version, recorded_at"
)


class _Deferred(Exception):
    """The request must run in a younger transaction (see the module docstring)."""


class _CommitUnknown(Exception):
    """The connection was lost while COMMIT was in flight."""


class _Contended(Exception):
    """The set-wise batch met another instance's rows: run it again, one savepoint per request."""


@dataclass(slots=True, eq=False)
class Request:
    writes: Sequence[Write]
    tracking: Tracking | None
    future: asyncio.Future[Committed]
    deferrals: int = 0


@dataclass(slots=True)
class Outcome:
    committed: Committed | None = None
    error: BaseException | None = None
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    write: Write
    version: int
    event: Event
    correlation_id: str


def plan(writes: Sequence[Write], versions: dict[str, int]) -> list[Row]:
    """The events of one request, numbered from the stream heads in `versions` (moved past them when the
    expected versions hold; left as they were when ConcurrencyError is raised)."""
    moved: dict[str, int] = {}
    rows: list[Row] = []
    for write in writes:
        actual = moved.get(write.stream, versions.get(write.stream, 0))
        if write.expected_version is not None and write.expected_version != actual:
            raise ConcurrencyError(write.stream, write.expected_version, actual)
        for event in write.events:
            actual += 1
            correlation = write.correlation_id or event.partition_key or write.stream
            rows.append(Row(str(uuid.uuid4()), write, actual, event, correlation))
        moved[write.stream] = actual
    versions.update(moved)
    return rows


def last_checkpoint(outcomes: list[Outcome]) -> Checkpoint | None:
    return max(
        (e.checkpoint for o in outcomes if o.committed is not None for e in o.committed.envelopes),
        default=None,
    )


def handled_key(tracking: Tracking | None) -> tuple[str, str] | None:
    if tracking is None or tracking.event_id is None:
        return None
    return (tracking.consumer, tracking.event_id)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def row_to_envelope(row: asyncpg.Record) -> Envelope:
    position, tx, id_, stream, version, data, source, corr, cause, schema, recorded = row
    return Envelope(
        id=id_,
        stream=stream,
        version=version,
        position=position,
        event=parse_event(orjson.loads(data), schema),
        recorded_at=recorded,
        source=source,
        correlation_id=corr,
        causation_id=cause,
        schema_version=schema,
        tx=int(tx),
    )


async def _session_is_clean(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a pooled connection is released: this store takes only transaction-scoped
    locks and `SET LOCAL` on them (session locks and LISTEN have connections of their own), and asyncpg
    rolls back a transaction left open. Skipping asyncpg's default reset (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL) saves a round trip on every release: a consumer's every event."""


class PostgresStore:
    def __init__(self, dsn: str, *, source: str, batch_max: int = 500, schema: str | None = None) -> None:
        self.source = source
        self.dsn = dsn
        self.batch_max = batch_max
        self.schema = source if schema is None else schema
        s = quote_ident(self.schema)
        self._t = s
        self._channel = f"lynchpin_events_{self.schema}".encode()[:63].decode(errors="ignore")
        self._pool: asyncpg.Pool | None = None
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        self._batch: list[Request] = []  # in flight
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._appended = asyncio.Event()
        self._last: Checkpoint = START  # the newest commit this process knows of (its own, or NOTIFY'd)
        self._lock_conn: asyncpg.Connection | None = None
        self._lock_guard = asyncio.Lock()
        self._held: set[str] = set()
        self._kept = Kept()  # what this process committed lately, handed back on reads
        self._sql_heads = (  # the xid is taken while this runs, after its snapshot was: see the docstring
            "SELECT coalesce(h.version, 0), coalesce(h.tx > me.tx, false)"
            " FROM (SELECT pg_current_xact_id() AS tx) AS me CROSS JOIN"
            " unnest($1::text[]) WITH ORDINALITY AS s(stream, n) LEFT JOIN LATERAL"
            f" (SELECT version, tx FROM {s}.events e WHERE e.stream = s.stream ORDER BY version DESC LIMIT 1)"
            " h ON true ORDER BY s.n"
        )
        after = (
            "WHERE (tx, position) > ($1::text::xid8, $2::bigint)"
            " AND tx < pg_snapshot_xmin(pg_current_snapshot())"
        )
        self._sql_read_all = f"SELECT {COLUMNS} FROM {s}.events {after} ORDER BY tx, position LIMIT $3"
        # ordered as the index is, or the planner may scan the whole log for the first row it finds
        self._sql_visible = f"SELECT 1 FROM {s}.events {after} ORDER BY tx, position LIMIT 1"
        self._sql_insert = (
            f"INSERT INTO {s}.events (id, stream, version, type, data, source, correlation_id, causation_id,"
            " schema_version, recorded_at)"
            " SELECT i::uuid, st, v, ty, d::jsonb, $7, c, ca, sv, $10"
            " FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $8::text[],"
            " $9::int[]) WITH ORDINALITY AS u(i, st, v, ty, d, c, ca, sv, n) ORDER BY n"
            " RETURNING id::text AS id_text, position, tx::text AS tx_text"
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": f"lynchpin-{self.source}"},
                reset=_session_is_clean,
            )
            async with self._pool.acquire() as conn, conn.transaction():
                # IF NOT EXISTS alone races with a concurrent creator (duplicate key in the catalogue).
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"lynchpin:ddl:{self.schema}"
                )
                await conn.execute(DDL.format(s=self._t))
        except UNAVAILABLE as e:
            await self._close_pool()
            raise StoreUnavailable(f"cannot open the {self.source} store: {e!r}") from e
        except BaseException:
            await self._close_pool()
            raise
        self._task = asyncio.create_task(self._write_loop(), name=f"pg-writer-{self.source}")
        self._listener = asyncio.create_task(self._listen_loop(), name=f"pg-listener-{self.source}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in (self._task, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        left = [*self._batch, *(self._queue.get_nowait() for _ in range(self._queue.qsize()))]
        for request in left:  # an in-flight batch cut short may or may not have committed
            if not request.future.done():
                request.future.set_exception(StoreUnavailable(f"the {self.source} store is closed"))
        async with self._lock_guard:
            await self._close_lock_conn()
        await self._close_pool()

    async def _close_pool(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        try:
            await asyncio.wait_for(pool.close(), 10)
        except UNAVAILABLE:
            pool.terminate()

    def _alive(self) -> asyncpg.Pool:
        if self._pool is None or self._task is None or self._task.done():
            raise StoreUnavailable(f"the {self.source} store is not open")
        return self._pool

    # --- writes (group commit) --------------------------------------------------------------

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed:
        self._alive()
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Request(writes, tracking, future))
        return await future

    async def _write_loop(self) -> None:
        carry: list[Request] = []
        while True:
            batch = self._batch = carry if carry else [await self._queue.get()]
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            outcomes = await self._run_batch(batch)
            carry = []
            for i, (request, outcome) in enumerate(zip(batch, outcomes, strict=True)):
                if outcome.committed is not None:
                    self._kept.keep(outcome.committed.envelopes)
                elif isinstance(outcome.error, ConcurrencyError):
                    self._kept.doubt(outcome.error.stream)
                if outcome.deferred and request.deferrals < MAX_DEFERRALS:
                    request.deferrals += i == 0  # a later one moves up, so it is bound to lead a batch
                    carry.append(request)
                elif request.future.done():
                    continue
                elif outcome.committed is not None:
                    request.future.set_result(outcome.committed)
                else:
                    request.future.set_exception(
                        outcome.error or StoreUnavailable(f"stream head kept moving in {self.source}")
                    )
            newest = last_checkpoint(outcomes)
            if newest is not None:
                self._last = max(self._last, newest)
                self._wake()

    async def _run_batch(self, batch: list[Request]) -> list[Outcome]:
        pool = self._pool
        assert pool is not None
        failure: BaseException | None = None
        careful = False
        for _ in range(BATCH_ATTEMPTS):
            try:
                async with pool.acquire() as conn:
                    if not careful:
                        try:
                            return await self._transaction(conn, batch, careful=False)
                        except _Contended:
                            careful = True
                    return await self._transaction(conn, batch, careful=True)
            except asyncpg.exceptions.TransactionRollbackError as e:  # deadlock with another instance
                failure = StoreUnavailable(f"conflicting writers in {self.source}: {e}")
                careful = True
                await asyncio.sleep(random.uniform(0, 0.05))
            except _CommitUnknown as e:
                failure = StoreUnavailable(f"lost the connection while committing to {self.source}: {e}")
                break
            except UNAVAILABLE as e:  # nothing committed: safe to run again on a fresh connection
                failure = StoreUnavailable(f"cannot write the {self.source} store: {e!r}")
                await asyncio.sleep(0.05)
            except Exception as e:  # a bug or an unexpected server error: hand it to the callers
                failure = e
                break
        return [Outcome(error=failure)] * len(batch)

    async def _transaction(
        self, conn: asyncpg.Connection, batch: list[Request], *, careful: bool
    ) -> list[Outcome]:
        """One transaction for the batch: set-wise statements first (fast), or one savepoint per request
        (careful) when the fast way met another instance's rows."""
        await conn.execute("BEGIN" if careful else f"BEGIN; SET LOCAL lock_timeout = '{LOCK_WAIT}'")
        try:
            if careful:
                outcomes: list[Outcome] = []
                for request in batch:
                    if len(outcomes) == 1:  # from now on this transaction holds locks others may wait on
                        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
                    outcomes.append(await self._careful_request(conn, request))
            else:
                try:
                    outcomes = await self._fast_batch(conn, batch)
                except (asyncpg.UniqueViolationError, asyncpg.exceptions.LockNotAvailableError) as e:
                    raise _Contended from e
        except BaseException:
            if not conn.is_closed():
                with contextlib.suppress(*UNAVAILABLE):
                    await conn.execute("ROLLBACK")
            raise
        newest = last_checkpoint(outcomes)
        # NOTIFY takes the database's notification lock at COMMIT, held by every committer while it
        # commits: a wait for it is no deadlock risk, and the short lock_timeout set above must not turn
        # a busy moment into a failed batch ("canceling statement due to lock timeout").
        notify = f"NOTIFY {quote_ident(self._channel)}, '{newest[0]} {newest[1]}'" if newest else ""
        end = f"SET LOCAL lock_timeout = 0; {notify}; COMMIT" if notify else "COMMIT"
        try:
            await conn.execute(end)
        except UNAVAILABLE as e:
            raise _CommitUnknown(repr(e)) from e
        return outcomes

    async def _fast_batch(self, conn: asyncpg.Connection, batch: list[Request]) -> list[Outcome]:
        # The heads are read in the statement that takes this transaction's xid: no head can be younger.
        heads = await self._heads(conn, list(dict.fromkeys(w.stream for r in batch for w in r.writes)))
        keys = [k for r in batch if (k := handled_key(r.tracking)) is not None]
        done = await self._already_handled(conn, keys) if keys else set()
        versions = {stream: version for stream, (version, _) in heads.items()}
        decided: list[Outcome | list[Row]] = []
        rows: list[Row] = []
        handled: list[tuple[str, str]] = []
        checkpoints: dict[str, Checkpoint] = {}
        for request in batch:
            key = handled_key(request.tracking)
            if key is not None and key in done:
                decided.append(Outcome(committed=Committed(duplicate=True)))
                continue
            if any(heads[w.stream][1] for w in request.writes):
                decided.append(Outcome(deferred=True))
                continue
            try:
                planned = plan(request.writes, versions)
            except ConcurrencyError as e:
                decided.append(Outcome(error=e))
                continue
            decided.append(planned)
            rows.extend(planned)
            if key is not None:
                done.add(key)
                handled.append(key)
            if request.tracking is not None and request.tracking.checkpoint is not None:
                checkpoints[request.tracking.consumer] = request.tracking.checkpoint
        if handled and await self._insert_handled(conn, handled) < len(handled):
            raise _Contended  # another instance handled one of these since we looked
        if checkpoints:
            await self._save_checkpoints(conn, checkpoints)
        now = datetime.now(UTC)
        stored = await self._insert_events(conn, rows, now)
        return [d if isinstance(d, Outcome) else self._committed(d, stored, now) for d in decided]

    async def _careful_request(self, conn: asyncpg.Connection, request: Request) -> Outcome:
        undo = "ROLLBACK TO SAVEPOINT request; RELEASE SAVEPOINT request"
        for _ in range(REQUEST_ATTEMPTS):
            await conn.execute("SAVEPOINT request")
            try:
                outcome = await self._write_request(conn, request)
            except asyncpg.UniqueViolationError as e:
                await conn.execute(undo)
                if e.constraint_name != VERSION_KEY:
                    return Outcome(error=StoreError(f"cannot write to {self.source}: {e}"))
                continue  # another instance took this version: look at the stream heads again
            except ConcurrencyError as e:
                await conn.execute(undo)
                return Outcome(error=e)
            except (_Deferred, asyncpg.exceptions.LockNotAvailableError):
                await conn.execute(undo)  # wait, or retry, first in the next transaction
                return Outcome(deferred=True)
            except asyncpg.PostgresError as e:
                if isinstance(e, (*UNAVAILABLE, asyncpg.exceptions.TransactionRollbackError)):
                    raise
                await conn.execute(undo)
                return Outcome(error=StoreError(f"cannot write to {self.source}: {e!r}"))
            await conn.execute("RELEASE SAVEPOINT request")
            return outcome
        return Outcome(deferred=True)

    async def _write_request(self, conn: asyncpg.Connection, request: Request) -> Outcome:
        writes, tracking = request.writes, request.tracking
        # First: in a fresh transaction this statement takes the xid, after reading the heads.
        heads = await self._heads(conn, list(dict.fromkeys(w.stream for w in writes)))
        key = handled_key(tracking)
        if key is not None and await self._insert_handled(conn, [key]) == 0:
            return Outcome(committed=Committed(duplicate=True))
        if any(inverted for _, inverted in heads.values()):
            raise _Deferred
        rows = plan(writes, {stream: version for stream, (version, _) in heads.items()})
        if tracking is not None and tracking.checkpoint is not None:
            await self._save_checkpoints(conn, {tracking.consumer: tracking.checkpoint})
        now = datetime.now(UTC)
        return self._committed(rows, await self._insert_events(conn, rows, now), now)

    async def _heads(self, conn: asyncpg.Connection, streams: list[str]) -> dict[str, tuple[int, bool]]:
        """Each stream's version, and whether its last event is younger than this transaction."""
        if not streams:
            return {}
        records = await conn.fetch(self._sql_heads, streams)
        return {stream: (r[0], r[1]) for stream, r in zip(streams, records, strict=True)}

    async def _already_handled(
        self, conn: asyncpg.Connection, keys: list[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        records = await conn.fetch(
            f"SELECT k.c, k.e FROM unnest($1::text[], $2::text[]) AS k(c, e) WHERE EXISTS"
            f" (SELECT 1 FROM {self._t}.handled h WHERE h.consumer = k.c AND h.event_id = k.e)",
            [c for c, _ in keys],
            [e for _, e in keys],
        )
        return {(c, e) for c, e in records}

    async def _insert_handled(self, conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> int:
        """How many of `keys` were new."""
        records = await conn.fetch(
            f"INSERT INTO {self._t}.handled (consumer, event_id) SELECT * FROM unnest($1::text[], $2::text[])"
            " ON CONFLICT DO NOTHING RETURNING 1",
            [c for c, _ in keys],
            [e for _, e in keys],
        )
        return len(records)

    async def _save_checkpoints(self, conn: asyncpg.Connection, checkpoints: dict[str, Checkpoint]) -> None:
        await conn.execute(
            f"INSERT INTO {self._t}.checkpoints (consumer, tx, position)"
            " SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])"
            " ON CONFLICT (consumer) DO UPDATE SET tx = excluded.tx, position = excluded.position",
            list(checkpoints),
            [tx for tx, _ in checkpoints.values()],
            [position for _, position in checkpoints.values()],
        )

    async def _insert_events(
        self, conn: asyncpg.Connection, rows: list[Row], now: datetime
    ) -> dict[str, tuple[int, int]]:
        """Insert in one statement; each event's (position, tx) by id."""
        if not rows:
            return {}
        records = await conn.fetch(
            self._sql_insert,
            [r.id for r in rows],
            [r.write.stream for r in rows],
            [r.version for r in rows],
            [str(getattr(r.event, "type")) for r in rows],  # noqa: B009 - not on Event
            [r.event.model_dump_json() for r in rows],
            [r.correlation_id for r in rows],
            self.source,
            [r.write.causation_id for r in rows],
            [r.event.schema_version for r in rows],
            now,
        )
        return {id_: (position, int(tx)) for id_, position, tx in records}

    def _committed(self, rows: list[Row], stored: dict[str, tuple[int, int]], now: datetime) -> Outcome:
        envelopes = [
            Envelope(
                id=r.id,
                stream=r.write.stream,
                version=r.version,
                position=stored[r.id][0],
                event=r.event,
                recorded_at=now,
                source=self.source,
                correlation_id=r.correlation_id,
                causation_id=r.write.causation_id,
                schema_version=r.event.schema_version,
                tx=stored[r.id][1],
            )
            for r in rows
        ]
        return Outcome(committed=Committed(envelopes))

    # --- reads ------------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        pool = self._alive()
        for attempt in (1, 2):  # a connection the server dropped is replaced on the second try
            try:
                async with pool.acquire() as conn:
                    rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
                    return rows
            except UNAVAILABLE as e:
                if attempt == 2:
                    raise StoreUnavailable(f"cannot read the {self.source} store: {e!r}") from e
        raise AssertionError("unreachable")

    async def read(self, stream: str, after_version: int = 0) -> list[Envelope]:
        rows = await self._fetch(
            f"SELECT {COLUMNS} FROM {self._t}.events WHERE stream = $1 AND version > $2 ORDER BY version",
            stream,
            after_version,
        )
        self._kept.read(stream)
        return [self._kept.get(r[0]) or row_to_envelope(r) for r in rows]

    def committed_here(self, stream: str, after_version: int) -> list[Envelope] | None:
        return self._kept.after(stream, after_version)

    async def read_all(self, after: Checkpoint = START, limit: int = 1000) -> list[Envelope]:
        rows = await self._fetch(self._sql_read_all, str(after[0]), after[1], limit)
        return [self._kept.get(r[0]) or row_to_envelope(r) for r in rows]

    async def checkpoint(self, consumer: str) -> Checkpoint:
        rows = await self._fetch(
            f"SELECT tx, position FROM {self._t}.checkpoints WHERE consumer = $1", consumer
        )
        return (rows[0][0], rows[0][1]) if rows else START

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    # --- followers: in-process event, LISTEN/NOTIFY, polling by the timeout --------------------

    async def _visible_after(self, after: Checkpoint) -> bool:
        """Whether `read_all(after)` has something now: a commit this process knows of may still be hidden
        behind an older open transaction, and returning at once for it would make followers spin."""
        try:
            rows = await self._fetch(self._sql_visible, str(after[0]), after[1])
        except StoreUnavailable:
            return False  # wait, rather than have the caller spin on a store that is down
        return bool(rows)

    def _wake(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        tx, _, position = payload.partition(" ")
        if tx.isdigit() and position.isdigit():
            self._last = max(self._last, (int(tx), int(position)))
        self._wake()

    async def wait_for_append(self, timeout: float, after: Checkpoint | None = None) -> None:
        if after is not None and self._last > after and await self._visible_after(after):
            return  # committed after the caller's read and before this wait: don't sleep through it
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires, and a follower that ignores its cancellation hangs shutdown.
            async with asyncio.timeout(timeout):
                await self._appended.wait()
        except TimeoutError:
            return

    async def _listen_loop(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
            except (*UNAVAILABLE, asyncpg.PostgresError):  # down, or not there yet: followers poll meanwhile
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            lost = asyncio.Event()

            def on_lost(_: object, lost: asyncio.Event = lost) -> None:
                lost.set()

            try:
                conn.add_termination_listener(on_lost)
                await conn.add_listener(self._channel, self._on_notify)
                self._wake()  # something may have been appended while we were not listening
                delay = 0.1
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), LISTEN_CHECK)
                    except TimeoutError:
                        await asyncio.wait_for(conn.execute("SELECT 1"), CONNECT_TIMEOUT)
            except UNAVAILABLE:
                pass
            finally:
                conn.terminate()

    # --- one instance at a time (a session advisory lock on its own connection) -----------------

    async def try_lock(self, name: str) -> bool:
        """Take the named lock unless another session holds it. True while this store still holds it:
        call again to check. A lost connection loses the lock, so what it guards must tolerate a short
        overlap with another instance (the relay publishes at least once)."""
        async with self._lock_guard:
            try:
                if self._lock_conn is None or self._lock_conn.is_closed():
                    self._held.clear()
                    self._lock_conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
                if name in self._held:
                    await self._lock_conn.execute("SELECT 1")  # the session, and so the lock, is alive
                    return True
                got = bool(
                    await self._lock_conn.fetchval(
                        "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", self._lock_key(name)
                    )
                )
            except UNAVAILABLE as e:
                await self._close_lock_conn()
                raise StoreUnavailable(f"cannot take lock {name!r}: {e!r}") from e
            if got:
                self._held.add(name)
            return got

    async def release_lock(self, name: str) -> None:
        async with self._lock_guard:
            if name not in self._held or self._lock_conn is None:
                return
            self._held.discard(name)
            try:
                await self._lock_conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", self._lock_key(name)
                )
            except UNAVAILABLE:
                await self._close_lock_conn()  # the session is gone, and the lock with it

    def _lock_key(self, name: str) -> str:
        return f"lynchpin:lock:{self.schema}:{name}"

    async def _close_lock_conn(self) -> None:
        conn, self._lock_conn = self._lock_conn, None
        self._held.clear()
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT)
            except UNAVAILABLE:
                conn.terminate()

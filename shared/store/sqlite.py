"""The SQLite event store, the embedded default: one file per service, WAL, group commit.

SQLite serialises writers, so global positions are assigned in commit order and a follower
reading `position > last` never skips a committed event. Concurrent `commit` calls are queued
and written by one writer thread in one transaction (group commit: one fsync for the batch),
each request inside its own savepoint so that one request's conflict does not fail the others.

Reads run on the event loop's own thread: in WAL mode a reader never waits for the writer, the
pages it reads are in the OS cache, and a hop to a reader thread cost more than the read itself
(the sqlite3 module lets go of the GIL around every row it steps, and a thread taking it back
from a busy loop is a context switch each time).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from shared.envelope import Checkpoint, Envelope
from shared.events import parse_event
from shared.store.base import (
    START,
    Committed,
    ConcurrencyError,
    StoreUnavailable,
    Tracking,
    Write,
)
from shared.store.kept import Kept

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    source TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    causation_id TEXT,
    schema_version INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS handled (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer TEXT PRIMARY KEY,
    tx INTEGER NOT NULL,
    position INTEGER NOT NULL
);
"""

COLUMNS = (
    "position, id, stream, version, data, source, correlation_id, causation_id, schema_version, recorded_at"
)

Request = tuple[Sequence[Write], Tracking | None, "asyncio.Future[Committed]"]


def row_to_envelope(row: tuple[Any, ...]) -> Envelope:
    position, id_, stream, version, data, source, corr, cause, schema, recorded = row
    return Envelope(
        id=id_,
        stream=stream,
        version=version,
        position=position,
        event=parse_event(orjson.loads(data), schema),
        recorded_at=datetime.fromisoformat(recorded),
        source=source,
        correlation_id=corr,
        causation_id=cause,
        schema_version=schema,
    )


class SqliteStore:
    def __init__(self, path: str | Path, *, source: str, batch_max: int = 500) -> None:
        self.source = source
        self.path = str(path)
        self.batch_max = batch_max
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-w-{source}")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._appended = asyncio.Event()
        self._last_position = 0
        self._kept = Kept()
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        try:
            self._writer = await loop.run_in_executor(self._writer_pool, self._open_writer)
            self._reader = self._open_reader()
            if self.path != ":memory:":
                st = os.stat(self.path)
                self._identity = (st.st_dev, st.st_ino)
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailable(f"cannot open {self.path}: {e}") from e
        self._task = asyncio.create_task(self._write_loop(), name=f"sqlite-writer-{self.source}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            await loop.run_in_executor(self._writer_pool, self._writer.close)
        if self._reader is not None:
            self._reader.close()
        self._writer_pool.shutdown()

    def _open_writer(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        return conn

    def _open_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA query_only=ON")
        return conn

    # --- writes (group commit) --------------------------------------------------------------

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed:
        if self._task is None or self._task.done():
            raise StoreUnavailable(f"store {self.path} is not open")
        future: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((writes, tracking, future))
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                self._check_file()
                results = await loop.run_in_executor(self._writer_pool, self._commit_batch, batch)
            except sqlite3.Error as e:
                failure = StoreUnavailable(f"cannot write {self.path}: {e}")
                results = [failure] * len(batch)
            except StoreUnavailable as e:
                results = [e] * len(batch)
            for (_, _, future), result in zip(batch, results, strict=True):
                if isinstance(result, Committed) and result.envelopes:
                    self._last_position = max(self._last_position, result.envelopes[-1].position)
                    self._kept.keep(result.envelopes)
                elif isinstance(result, ConcurrencyError):
                    self._kept.doubt(result.stream)
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            self._appended.set()
            self._appended = asyncio.Event()

    def _commit_batch(self, batch: list[Request]) -> list[Committed | BaseException]:
        conn = self._writer
        assert conn is not None
        results: list[Committed | BaseException] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for writes, tracking, _ in batch:
                conn.execute("SAVEPOINT request")
                try:
                    results.append(self._commit_one(conn, writes, tracking))
                    conn.execute("RELEASE request")
                except (ConcurrencyError, sqlite3.IntegrityError) as e:
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    results.append(e if isinstance(e, ConcurrencyError) else StoreUnavailable(str(e)))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _commit_one(
        self, conn: sqlite3.Connection, writes: Sequence[Write], tracking: Tracking | None
    ) -> Committed:
        if tracking is not None:
            if tracking.event_id is not None:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO handled (consumer, event_id) VALUES (?, ?)",
                    (tracking.consumer, tracking.event_id),
                )
                if cur.rowcount == 0:
                    return Committed(duplicate=True)
            if tracking.checkpoint is not None:
                conn.execute(
                    "INSERT INTO checkpoints (consumer, tx, position) VALUES (?, ?, ?) "
                    "ON CONFLICT (consumer) DO UPDATE SET tx = excluded.tx, position = excluded.position",
                    (tracking.consumer, *tracking.checkpoint),
                )
        now = datetime.now(UTC)
        recorded = now.isoformat()
        out: list[Envelope] = []
        for write in writes:
            (actual,) = conn.execute(
                "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", (write.stream,)
            ).fetchone()
            if write.expected_version is not None and write.expected_version != actual:
                raise ConcurrencyError(write.stream, write.expected_version, actual)
            for event in write.events:
                actual += 1
                env_id = str(uuid.uuid4())
                corr = write.correlation_id or event.partition_key or write.stream
                cur = conn.execute(
                    "INSERT INTO events (id, stream, version, type, data, source, correlation_id,"
                    " causation_id, schema_version, recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        env_id,
                        write.stream,
                        actual,
                        event.type,
                        event.model_dump_json(),
                        self.source,
                        corr,
                        write.causation_id,
                        event.schema_version,
                        recorded,
                    ),
                )
                out.append(
                    Envelope(
                        id=env_id,
                        stream=write.stream,
                        version=actual,
                        position=int(cur.lastrowid or 0),
                        event=event,
                        recorded_at=now,
                        source=self.source,
                        correlation_id=corr,
                        causation_id=write.causation_id,
                        schema_version=event.schema_version,
                    )
                )
        return Committed(out)

    # --- reads ------------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise StoreUnavailable(f"store {self.path} is not open")
        try:
            return self._reader.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot read {self.path}: {e}") from e

    async def read(self, stream: str, after_version: int = 0) -> list[Envelope]:
        rows = self._query(
            f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version > ? ORDER BY version",
            (stream, after_version),
        )
        self._kept.read(stream)
        return [self._kept.get(r[0]) or row_to_envelope(r) for r in rows]

    def committed_here(self, stream: str, after_version: int) -> list[Envelope] | None:
        return self._kept.after(stream, after_version)

    async def read_all(self, after: Checkpoint = START, limit: int = 1000) -> list[Envelope]:
        rows = self._query(
            f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after[1], limit),
        )
        return [self._kept.get(r[0]) or row_to_envelope(r) for r in rows]

    async def checkpoint(self, consumer: str) -> Checkpoint:
        rows = self._query("SELECT tx, position FROM checkpoints WHERE consumer = ?", (consumer,))
        return (rows[0][0], rows[0][1]) if rows else START

    async def wait_for_append(self, timeout: float, after: Checkpoint | None = None) -> None:
        if after is not None and self._last_position > after[1]:
            return
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires, and a follower that ignores its cancellation hangs shutdown.
            async with asyncio.timeout(timeout):
                await self._appended.wait()
        except TimeoutError:
            return

    async def ping(self) -> None:
        if self._task is None or self._task.done():
            raise StoreUnavailable(f"store {self.path} is not open")
        self._query("SELECT 1", ())
        self._check_file()

    def _check_file(self) -> None:
        """Refuse to write (and to answer ready) while the file at the path is not the one opened: moved
        away, deleted or replaced. The open connections would go on writing to a file nobody finds again,
        and a 202 for that would be a lie. When the file comes back, writes resume by themselves; a
        different file put there (a restored backup, say) is never adopted by a running process."""
        if self._identity is None:
            return
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise StoreUnavailable(f"store file {self.path} is unavailable: {e.strerror}") from e
        if (st.st_dev, st.st_ino) != self._identity:
            raise StoreUnavailable(f"store file {self.path} is not the file this process opened")

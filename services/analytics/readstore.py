"""Analytics' read models in SQLite: incident views and timelines, with tracking and checkpoints.

Read models are disposable: each analytics instance keeps its own file (or `:memory:`) and can
rebuild it from the services' logs at any time. Applying an event and recording that it was
handled commit in one transaction, so a redelivered event changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from services.analytics.projections import IncidentView, project, timeline_entry
from shared.envelope import Checkpoint, Envelope
from shared.store import START, Committed, StoreUnavailable, Tracking, Write

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    priority TEXT,
    service TEXT NOT NULL,
    opened_at TEXT,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents (opened_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    at TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline (incident_id, at, seq);
CREATE TABLE IF NOT EXISTS handled (
    consumer TEXT, event_id TEXT, PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (consumer TEXT PRIMARY KEY, tx INTEGER, position INTEGER);
CREATE TABLE IF NOT EXISTS dead_letters (event_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
"""


def encode_cursor(opened_at: str, incident_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([opened_at, incident_id])).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        opened_at, incident_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(opened_at), str(incident_id)
    except (ValueError, TypeError, orjson.JSONDecodeError) as e:
        raise ValueError("cursor is not one this API returned") from e


class ReadStore:
    source = "analytics"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="analytics-w")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="analytics-r")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        uri = self.path == ":memory:"
        target = "file:analytics?mode=memory&cache=shared" if uri else self.path
        if not uri:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            return conn

        def open_writer() -> sqlite3.Connection:
            conn = connect()
            if not uri:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            return conn

        try:
            self._writer = await loop.run_in_executor(self._writer_pool, open_writer)
            self._reader = await loop.run_in_executor(self._reader_pool, connect)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open {self.path}: {e}") from e
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._reader is not None:
            await loop.run_in_executor(self._reader_pool, self._reader.close)
        if self._writer is not None:
            await loop.run_in_executor(self._writer_pool, self._writer.close)
        self._writer_pool.shutdown()
        self._reader_pool.shutdown()

    # --- writes -----------------------------------------------------------------------------

    async def commit(self, items: Sequence[Any], *, tracking: Tracking | None = None) -> Committed:
        """Apply envelopes (and dead-letter records, as `Write`s) with their tracking record."""
        async with self._lock:
            try:
                duplicate = await asyncio.get_running_loop().run_in_executor(
                    self._writer_pool, self._apply, list(items), tracking
                )
            except sqlite3.Error as e:
                raise StoreUnavailable(f"cannot write {self.path}: {e}") from e
        return Committed(duplicate=duplicate)

    def _apply(self, items: list[Any], tracking: Tracking | None) -> bool:
        conn = self._writer
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            if tracking is not None:
                if tracking.event_id is not None:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO handled VALUES (?, ?)", (tracking.consumer, tracking.event_id)
                    )
                    if cur.rowcount == 0:
                        conn.execute("ROLLBACK")
                        return True
                if tracking.checkpoint is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)",
                        (tracking.consumer, *tracking.checkpoint),
                    )
            for item in items:
                if isinstance(item, Envelope):
                    self._apply_envelope(conn, item)
                elif isinstance(item, Write):
                    for event in item.events:
                        conn.execute(
                            "INSERT OR REPLACE INTO dead_letters VALUES (?, ?)",
                            (getattr(event, "event_id", ""), event.model_dump_json()),
                        )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return False

    def _apply_envelope(self, conn: sqlite3.Connection, env: Envelope) -> None:
        incident_id = env.event.partition_key
        if incident_id is None:
            return
        row = conn.execute("SELECT doc FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        before = IncidentView.from_json(orjson.loads(row[0])) if row else None
        after = project(before, env.event)
        if after is not None and after != before:
            conn.execute(
                "INSERT INTO incidents (id, status, priority, service, opened_at, doc) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT (id) DO UPDATE SET status=excluded.status, priority=excluded.priority, "
                "service=excluded.service, opened_at=excluded.opened_at, doc=excluded.doc",
                (
                    after.id,
                    after.status,
                    after.priority,
                    after.service,
                    after.opened_at.isoformat() if after.opened_at else None,
                    orjson.dumps(after.to_json()),
                ),
            )
        entry = timeline_entry(env)
        if entry is not None:
            doc = {
                "event_id": entry.event_id,
                "type": entry.type,
                "at": entry.at.isoformat(),
                "by": entry.by,
                "summary": entry.summary,
                "source": entry.source,
            }
            conn.execute(
                "INSERT OR IGNORE INTO timeline (incident_id, event_id, at, doc) VALUES (?,?,?,?)",
                (entry.incident_id, entry.event_id, entry.at.isoformat(), orjson.dumps(doc)),
            )

    async def checkpoint(self, consumer: str) -> Checkpoint:
        rows = await self._query("SELECT tx, position FROM checkpoints WHERE consumer = ?", (consumer,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else START

    # --- reads ------------------------------------------------------------------------------

    async def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            assert self._reader is not None
            return self._reader.execute(sql, args).fetchall()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader_pool, run)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot read {self.path}: {e}") from e

    async def ping(self) -> None:
        await self._query("SELECT 1", ())

    async def incidents(
        self,
        *,
        status: str | None = None,
        priority: str | None = None,
        service: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        where, args = [], []
        for column, value in (("status", status), ("priority", priority), ("service", service)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if cursor is not None:
            opened_at, incident_id = decode_cursor(cursor)
            where.append("(coalesce(opened_at, ''), id) < (?, ?)")
            args += [opened_at, incident_id]
        sql = "SELECT doc, coalesce(opened_at, ''), id FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY coalesce(opened_at, '') DESC, id DESC LIMIT ?"
        rows = await self._query(sql, (*args, limit + 1))
        items = [orjson.loads(r[0]) for r in rows[:limit]]
        more = len(rows) > limit
        return items, (encode_cursor(rows[limit - 1][1], rows[limit - 1][2]) if more else None)

    async def incident(self, incident_id: str) -> dict[str, Any] | None:
        rows = await self._query("SELECT doc FROM incidents WHERE id = ?", (incident_id,))
        return orjson.loads(rows[0][0]) if rows else None

    async def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        rows = await self._query(
            "SELECT doc FROM timeline WHERE incident_id = ? ORDER BY at, seq", (incident_id,)
        )
        return [orjson.loads(r[0]) for r in rows]

    async def count(self) -> int:
        rows = await self._query("SELECT count(*) FROM incidents", ())
        return int(rows[0][0])

"""Analytics' read models in SQLite: incident views and timelines, with tracking and checkpoints.

Read models are disposable: each analytics instance keeps its own file (or `:memory:`) and can
rebuild it from the services' logs at any time (`services.analytics.rebuild`). Applying an event
and recording that it was handled commit in one transaction, so a redelivered event changes nothing.
A file written by an older schema is dropped and refilled from the start of the logs.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import orjson

from services.analytics.metrics import FIGURES, figures
from services.analytics.projections import Fact, IncidentView, TimelineEntry, project, timeline_entry
from shared.envelope import Checkpoint, Envelope
from shared.events import TokenRevoked
from shared.policy.analytics import AnalyticsPolicy
from shared.store import START, Committed, StoreUnavailable, Tracking, Write

log = logging.getLogger("lynchpin.analytics")

T = TypeVar("T")
SCHEMA_VERSION = 4
CHECKPOINT_EVERY = 500
"""Commits between two checkpoints of the WAL into the file. Commits run on the event loop's thread
with SQLite's automatic checkpoints off (one would stall the loop for its copy and fsync); the writing
thread runs them instead, with a connection of its own, while commits wait: a checkpoint that runs
beside new commits never catches up with them, and the WAL is only started again from its beginning
after one that did."""
SOURCE_RANK = {"intake": 0, "triage": 1, "comms": 2, "analytics": 3}

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    priority TEXT,
    service TEXT NOT NULL,
    team TEXT,
    major TEXT,
    opened_at TEXT,
    resolved_at TEXT,
    search TEXT NOT NULL DEFAULT '',
    category TEXT,
    opened_us INTEGER,
    resolved_us INTEGER,
    opened_day TEXT,
    resolved_day TEXT,
    tta_us INTEGER,
    ttr_us INTEGER,
    ttd_us INTEGER,
    csat INTEGER,
    latencies BLOB,
    response_sla TEXT,
    response_due INTEGER,
    resolution_sla TEXT,
    resolution_due INTEGER,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_list ON incidents (opened_at DESC, id DESC, search);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status, opened_at DESC);
CREATE INDEX IF NOT EXISTS incidents_service ON incidents (service, opened_at DESC);
CREATE INDEX IF NOT EXISTS incidents_team ON incidents (team, opened_at DESC);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (
    coalesce(nullif(priority, ''), 'P9'), opened_at, id, major
) WHERE status NOT IN ('resolved', 'closed');
CREATE INDEX IF NOT EXISTS incidents_figures ON incidents (
    opened_at, service, priority, category, status, major, opened_us, resolved_us, opened_day,
    resolved_day, tta_us, ttr_us, ttd_us, csat, response_sla, response_due, resolution_sla,
    resolution_due, latencies, id
);
CREATE TABLE IF NOT EXISTS timeline (
    event_id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    at TEXT NOT NULL,
    rank INTEGER NOT NULL,
    position INTEGER NOT NULL,
    type TEXT NOT NULL,
    by TEXT NOT NULL,
    summary TEXT NOT NULL,
    why TEXT,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline (incident_id, at, rank, position);
CREATE TABLE IF NOT EXISTS handled (
    consumer TEXT, event_id TEXT, PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (consumer TEXT PRIMARY KEY, tx INTEGER, position INTEGER);
CREATE TABLE IF NOT EXISTS dead_letters (event_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_tokens (token_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS freshness (source TEXT PRIMARY KEY, recorded_at TEXT, occurred_at TEXT);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
SECONDARY_INDEXES = (
    "incidents_list",
    "incidents_status",
    "incidents_service",
    "incidents_team",
    "incidents_open",
    "incidents_figures",
    "timeline_incident",
)
LOAD_CACHE_KIB = -262144
"""The page cache while a rebuild loads its tables (negative: KiB, so 256 MiB)."""
VIEWS_REMEMBERED = 2048
"""Incident views kept parsed between commits (`ReadStore._views`)."""
TABLES = ("incidents", "timeline", "handled", "checkpoints", "dead_letters", "freshness", "settings")


def utc(at: datetime) -> str:
    """A sortable text form: every instant in UTC, so SQLite can compare them as strings."""
    if at.tzinfo is UTC:  # most are, as stored and as folded (`projections._utc`)
        return at.isoformat()
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def utc_day(at: datetime) -> str:
    """The day (UTC) an instant falls on, as the `opened_day` column has it."""
    return utc(at)[:10]


def encode_cursor(opened_at: str, incident_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([opened_at, incident_id])).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        opened_at, incident_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(opened_at), str(incident_id)
    except (ValueError, TypeError, orjson.JSONDecodeError) as e:
        raise ValueError("cursor is not one this API returned") from e


def incident_row(v: IncidentView, policy: AnalyticsPolicy) -> tuple[Any, ...]:
    search = " ".join((v.id, v.title, v.service, v.description, v.team or "", v.assignee or "")).lower()
    return (
        v.id,
        v.status,
        v.priority,
        v.service,
        v.team,
        v.major,
        utc(v.opened_at) if v.opened_at else None,
        utc(v.resolved_at) if v.resolved_at else None,
        search,
        *figures(v, policy),
        orjson.dumps(v.to_json()),
    )


def timeline_row(e: TimelineEntry) -> tuple[Any, ...]:
    return (
        e.event_id,
        e.incident_id,
        e.at.isoformat() if e.at.tzinfo is UTC else utc(e.at),
        SOURCE_RANK.get(e.source, 9),
        e.position,
        e.type,
        e.by,
        e.summary,
        e.why,
        e.source,
    )


TIMELINE_COLUMNS = (
    "event_id",
    "incident_id",
    "at",
    "rank",
    "position",
    "type",
    "by",
    "summary",
    "why",
    "source",
)
SHOWN = ("event_id", "type", "at", "by", "summary", "why", "source")
"""A timeline entry as the API shows it (`TimelineEntry.to_json`, the instant in UTC)."""


INCIDENT_COLUMNS = (
    "id",
    "status",
    "priority",
    "service",
    "team",
    "major",
    "opened_at",
    "resolved_at",
    "search",
    *FIGURES,
    "doc",
)
UPSERT_INCIDENT = (
    f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(INCIDENT_COLUMNS))}) "
    "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in INCIDENT_COLUMNS if c != "id")
)
UPDATE_FIGURES = f"UPDATE incidents SET {', '.join(f'{c} = ?' for c in FIGURES)} WHERE id = ?"


def policy_key(policy: AnalyticsPolicy) -> str:
    """What of the policy the stored figures depend on (the SLA clocks'), as text."""
    return policy.model_dump_json(
        include={
            "response_targets",
            "resolution_targets",
            "business_hours_priorities",
            "business_hours",
            "calendars",
        }
    )


INSERT_TIMELINE = (
    f"INSERT OR IGNORE INTO timeline ({', '.join(TIMELINE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(TIMELINE_COLUMNS))})"
)


class ReadStore:
    source = "analytics"

    def __init__(self, path: str | Path, *, policy: AnalyticsPolicy | None = None) -> None:
        self.path = str(path)
        self.policy = policy if policy is not None else AnalyticsPolicy()
        """The analytics policy the SLA figures are judged under (`metrics.sla_standing`); a file
        written under another one has its figures computed again when opened."""
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="analytics-w")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="analytics-r")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing: asyncio.Task[None] | None = None
        self._commits = 0
        self.latest: dict[str, datetime] = {}
        """When the newest event handled from each source was recorded (for lag in seconds)."""
        self.generation = 0
        """Bumped by every committed write: an answer computed at one generation is still true
        at the same one (`services.analytics.results`)."""
        self.epoch = 0
        """Bumped by a load (rebuild): every day's incidents may have changed."""
        self.day_versions: dict[str, int] = {}
        """Per UTC day, bumped by every committed write that changed an incident opened that day
        (`services.analytics.aggregates` keeps a day's sums as long as its version stays)."""
        self._views: dict[str, IncidentView] = {}
        """The views of the incidents written last, as committed (oldest first, at most
        `VIEWS_REMEMBERED`): the next event of an incident is mostly for one of them, and reading its
        document back and parsing it cost more than the rest of applying the event."""

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        uri = self.path == ":memory:"
        target = f"file:analytics-{id(self)}?mode=memory&cache=shared" if uri else self.path
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
                conn.execute("PRAGMA wal_autocheckpoint=0")  # `_checkpoint`, off the event loop
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for table in TABLES:  # an older layout: start again from the beginning of the logs
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.executescript(SCHEMA)
            self._judge_under_policy(conn)
            return conn

        try:
            self._writer = await loop.run_in_executor(self._writer_pool, open_writer)
            if uri:  # one connection in memory: shared-cache table locks would fail concurrent reads
                self._reader_pool.shutdown()
                self._reader_pool, self._reader = self._writer_pool, self._writer
            else:
                self._reader = await loop.run_in_executor(self._reader_pool, connect)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open {self.path}: {e}") from e
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._checkpointing is not None:
            await asyncio.wait([self._checkpointing])  # it logs its own failures
        if self._reader is not None and self._reader is not self._writer:
            await loop.run_in_executor(self._reader_pool, self._reader.close)
        if self._writer is not None:
            if self._reader is not self._writer:
                await loop.run_in_executor(self._writer_pool, self._checkpoint)
            await loop.run_in_executor(self._writer_pool, self._writer.close)
        if self._checkpointer is not None:
            await loop.run_in_executor(self._writer_pool, self._checkpointer.close)
        self._writer_pool.shutdown()
        self._reader_pool.shutdown()

    def measure_under(self, policy: AnalyticsPolicy) -> None:
        """Judge SLA figures under `policy` (the service's), before the store is opened."""
        if self._writer is not None:
            raise RuntimeError("the read store is open: give it its policy before")
        self.policy = policy

    def _judge_under_policy(self, conn: sqlite3.Connection) -> None:
        """Every incident's figures again from its document when the policy they were judged
        under is not this store's (one pass over the incidents, in one transaction)."""
        key = policy_key(self.policy)
        row = conn.execute("SELECT value FROM settings WHERE name = 'policy'").fetchone()
        if row is not None and row[0] == key:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            docs = conn.execute("SELECT doc FROM incidents").fetchall()
            conn.executemany(
                UPDATE_FIGURES,
                (
                    (*figures(v, self.policy), v.id)
                    for v in (IncidentView.from_json(orjson.loads(d)) for (d,) in docs)
                ),
            )
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('policy', ?)", (key,))
            conn.execute("COMMIT")
            self.epoch += 1
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # --- writes -----------------------------------------------------------------------------

    async def commit(self, items: Sequence[Any], *, tracking: Tracking | None = None) -> Committed:
        """Apply envelopes (and dead-letter records, as `Write`s) with their tracking record."""
        return (await self.commit_all([(items, tracking)]))[0]

    async def commit_all(self, commits: Sequence[tuple[Sequence[Any], Tracking | None]]) -> list[Committed]:
        """Several commits, in order, in one transaction: each as `commit` would apply it (one whose
        tracking record is already there changes nothing and says `duplicate`). Either all of them
        land or none. Nothing the consumer decides rests on this store, so a page of events can
        commit together (`shared.consumer.deliver_page`).

        On the event loop's thread: a commit is a few indexed writes to pages in memory (no fsync:
        the read store can always be filled again from the logs), and handing each of them to a
        writing thread cost more than the work itself (the sqlite3 module lets go of the GIL around
        every statement, and the thread taking it back from a busy loop is a context switch each time).
        """
        batch = [(list(items), tracking) for items, tracking in commits]
        if self._reader is self._writer:  # in memory: one connection, used on its one thread
            duplicates = await self._write(self._apply, batch)
        else:
            async with self._lock:  # not in the middle of a load
                try:
                    duplicates = self._apply(batch)
                except sqlite3.Error as e:
                    raise StoreUnavailable(f"cannot write {self.path}: {e}") from e
            self._commits += 1
            if self._commits >= CHECKPOINT_EVERY and (
                self._checkpointing is None or self._checkpointing.done()
            ):
                self._commits = 0
                self._checkpointing = asyncio.create_task(self._checkpoint_between_commits())
        return [Committed(duplicate=d) for d in duplicates]

    async def _checkpoint_between_commits(self) -> None:
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(self._writer_pool, self._checkpoint)

    def _checkpoint(self) -> None:
        """Copy the WAL's committed pages into the file, without waiting for anyone (PASSIVE)."""
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:  # the next one tries again; meanwhile the WAL grows
            log.warning("analytics: cannot checkpoint %s: %s", self.path, e)

    async def _write(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn, *args)
            except sqlite3.Error as e:
                raise StoreUnavailable(f"cannot write {self.path}: {e}") from e

    def _apply(self, batch: list[tuple[list[Any], Tracking | None]]) -> list[bool]:
        """One transaction for the batch; which of its commits were duplicates."""
        conn = self._writer
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            touched: set[str] = set()
            written: dict[str, IncidentView] = {}
            duplicates = [
                self._apply_one(conn, items, tracking, touched, written) for items, tracking in batch
            ]
            conn.execute("COMMIT")
            self.generation += 1
            for day in touched:
                self.day_versions[day] = self.day_versions.get(day, 0) + 1
            self._remember(written)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return duplicates

    def _apply_one(
        self,
        conn: sqlite3.Connection,
        items: list[Any],
        tracking: Tracking | None,
        touched: set[str],
        written: dict[str, IncidentView],
    ) -> bool:
        """One commit's items and tracking record, inside `_apply`'s transaction; True (and nothing
        applied) when its tracking record was there before."""
        if tracking is not None:
            if tracking.event_id is not None:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO handled VALUES (?, ?)", (tracking.consumer, tracking.event_id)
                )
                if cur.rowcount == 0:
                    return True
            if tracking.checkpoint is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)",
                    (tracking.consumer, *tracking.checkpoint),
                )
        for item in items:
            if isinstance(item, Envelope):
                touched |= self._apply_envelope(conn, item, written)
            elif isinstance(item, Write):
                for event in item.events:
                    conn.execute(
                        "INSERT OR REPLACE INTO dead_letters VALUES (?, ?)",
                        (getattr(event, "event_id", ""), event.model_dump_json()),
                    )
        return False

    def _view(
        self, conn: sqlite3.Connection, incident_id: str, written: dict[str, IncidentView]
    ) -> IncidentView | None:
        """The incident's view as this transaction left it so far."""
        view = written.get(incident_id) or self._views.get(incident_id)
        if view is not None:
            return view
        row = conn.execute("SELECT doc FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        return IncidentView.from_json(orjson.loads(row[0])) if row else None

    def _remember(self, written: dict[str, IncidentView]) -> None:
        views = self._views
        for incident_id, view in written.items():
            views.pop(incident_id, None)
            views[incident_id] = view
        while len(views) > VIEWS_REMEMBERED:
            del views[next(iter(views))]

    def _apply_envelope(
        self, conn: sqlite3.Connection, env: Envelope, written: dict[str, IncidentView]
    ) -> set[str]:
        """Apply one event; the days (UTC) on which the incidents it changed were opened. The
        incident's new view goes into `written`, remembered once the transaction commits."""
        if isinstance(env.event, TokenRevoked):  # honoured by this service's auth after a restart too
            conn.execute("INSERT OR IGNORE INTO revoked_tokens VALUES (?)", (env.event.token_id,))
        fact = Fact.of(env)
        self.latest[env.source] = env.recorded_at
        conn.execute(
            "INSERT OR REPLACE INTO freshness VALUES (?, ?, ?)",
            (env.source, utc(env.recorded_at), utc(fact.at)),
        )
        if fact.incident_id is None:
            return set()
        before = self._view(conn, fact.incident_id, written)
        after = project(before, fact)
        touched = set()
        if after is not None and after != before:
            conn.execute(UPSERT_INCIDENT, incident_row(after, self.policy))
            written[fact.incident_id] = after
            touched = {utc_day(v.opened_at) for v in (before, after) if v is not None and v.opened_at}
        entry = timeline_entry(fact)
        if entry is not None:
            conn.execute(INSERT_TIMELINE, timeline_row(entry))
        return touched

    async def load(
        self,
        views: Iterable[IncidentView],
        entries: Iterable[TimelineEntry],
        handled: Iterable[tuple[str, str]],
        checkpoints: dict[str, Checkpoint],
        freshness: dict[str, tuple[str, str]],
        *,
        batch: int = 20_000,
    ) -> None:
        """Write a whole replayed state into empty tables, in large transactions (rebuild).

        Rows given in key order append to the primary keys' b-trees instead of splitting pages all
        over them; the secondary indexes are dropped for the load and built once at the end (a sort
        each, rather than an insert per row), with a large page cache while it lasts."""

        def run() -> None:
            conn = self._writer
            assert conn is not None
            self._views.clear()
            cache = conn.execute("PRAGMA cache_size").fetchone()[0]
            conn.execute(f"PRAGMA cache_size={LOAD_CACHE_KIB}")
            conn.execute("PRAGMA wal_autocheckpoint=1000")  # on this thread: the WAL stays small
            for index in SECONDARY_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {index}")
            for sql, rows in (
                (UPSERT_INCIDENT, (incident_row(v, self.policy) for v in views)),
                (INSERT_TIMELINE, (timeline_row(e) for e in entries)),
                ("INSERT OR IGNORE INTO handled VALUES (?, ?)", iter(handled)),
            ):
                while chunk := [r for _, r in zip(range(batch), rows, strict=False)]:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(sql, chunk)
                    conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)",
                [(k, *v) for k, v in checkpoints.items()],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO freshness VALUES (?, ?, ?)", [(k, *v) for k, v in freshness.items()]
            )
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('policy', ?)", (policy_key(self.policy),))
            conn.execute("COMMIT")
            conn.executescript(SCHEMA)  # the indexes again
            conn.execute(f"PRAGMA cache_size={int(cache)}")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self.generation += 1
            self.epoch += 1

        await self._write(run)

    async def checkpoint(self, consumer: str) -> Checkpoint:
        rows = await self._query("SELECT tx, position FROM checkpoints WHERE consumer = ?", (consumer,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else START

    # --- reads ------------------------------------------------------------------------------

    async def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return await self.read(lambda conn: conn.execute(sql, args).fetchall())

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(connection)` on the reader's thread: several queries, one read of the store."""

        def run() -> T:
            assert self._reader is not None
            return fn(self._reader)

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
        team: str | None = None,
        major: str | None = None,
        opened_from: datetime | None = None,
        opened_to: datetime | None = None,
        text: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        where: list[str] = []
        args: list[Any] = []
        for column, value in (
            ("status", status),
            ("priority", priority),
            ("service", service),
            ("team", team),
            ("major", major),
        ):
            if value is not None:
                values = [v.strip() for v in value.split(",") if v.strip()]  # "open,acknowledged": either
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                args += values
        if opened_from is not None:
            where.append("opened_at >= ?")
            args.append(utc(opened_from))
        if opened_to is not None:
            where.append("opened_at < ?")
            args.append(utc(opened_to))
        if text:
            escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("search LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")
        if cursor is not None:
            opened_at, incident_id = decode_cursor(cursor)
            where.append("(coalesce(opened_at, ''), id) < (?, ?)")
            args += [opened_at, incident_id]
        sql = "SELECT doc, coalesce(opened_at, ''), id FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # The order of the indexes (NULL sorts last, as '' does in the cursor): a page reads its own rows
        # and no others, and a text search tests incidents_list's copy of `search`, not every row.
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        rows = await self._query(sql, (*args, limit + 1))
        items = [orjson.loads(r[0]) for r in rows[:limit]]
        more = len(rows) > limit
        return items, (encode_cursor(rows[limit - 1][1], rows[limit - 1][2]) if more else None)

    async def views(
        self,
        *,
        service: str | None = None,
        priority: str | None = None,
        open_only: bool = False,
        opened_from: datetime | None = None,
        opened_to: datetime | None = None,
    ) -> list[IncidentView]:
        """The incident views (for metrics and reports), optionally one service's or priority's,
        or those opened in [opened_from, opened_to)."""
        where: list[str] = ["opened_at IS NOT NULL"]
        args: list[Any] = []
        if opened_from is not None:
            where.append("opened_at >= ?")
            args.append(utc(opened_from))
        if opened_to is not None:
            where.append("opened_at < ?")
            args.append(utc(opened_to))
        if service is not None:
            where.append("service = ?")
            args.append(service)
        if priority is not None:
            where.append("priority = ?")
            args.append(priority)
        if open_only:
            where.append("status NOT IN ('resolved', 'closed')")
        sql = f"SELECT doc FROM incidents WHERE {' AND '.join(where)} ORDER BY opened_at, id"
        rows = await self._query(sql, tuple(args))
        return [IncidentView.from_json(orjson.loads(r[0])) for r in rows]

    async def open_views(self, *, first: int) -> tuple[int, list[IncidentView], list[IncidentView]]:
        """For the dashboard: how many incidents are open, the open major ones (accepted), and the
        `first` open ones by priority (none last), then opening; only those documents are read."""
        where = "opened_at IS NOT NULL AND status NOT IN ('resolved', 'closed')"
        order = "ORDER BY coalesce(nullif(priority, ''), 'P9'), opened_at, id"

        def run(conn: sqlite3.Connection) -> tuple[int, list[bytes], list[bytes]]:
            (count,) = conn.execute(
                f"SELECT count(*) FROM incidents INDEXED BY incidents_open WHERE {where}"
            ).fetchone()
            majors = conn.execute(
                f"SELECT doc FROM incidents WHERE {where} AND major = 'accepted' {order}"
            ).fetchall()
            top = conn.execute(
                f"SELECT doc FROM incidents WHERE {where} {order} LIMIT ?", (first,)
            ).fetchall()
            return int(count), [r[0] for r in majors], [r[0] for r in top]

        count, majors, top = await self.read(run)
        return (
            count,
            [IncidentView.from_json(orjson.loads(d)) for d in majors],
            [IncidentView.from_json(orjson.loads(d)) for d in top],
        )

    async def incident(self, incident_id: str) -> dict[str, Any] | None:
        rows = await self._query("SELECT doc FROM incidents WHERE id = ?", (incident_id,))
        return orjson.loads(rows[0][0]) if rows else None

    async def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        rows = await self._query(
            f"SELECT {', '.join(SHOWN)} FROM timeline WHERE incident_id = ? "
            "ORDER BY at, rank, position, event_id",
            (incident_id,),
        )
        return [dict(zip(SHOWN, r, strict=True)) for r in rows]

    async def revoked_tokens(self) -> set[str]:
        return {r[0] for r in await self._query("SELECT token_id FROM revoked_tokens", ())}

    async def count(self) -> int:
        rows = await self._query("SELECT count(*) FROM incidents", ())
        return int(rows[0][0])

    async def freshness(self) -> dict[str, dict[str, str]]:
        rows = await self._query("SELECT source, recorded_at, occurred_at FROM freshness ORDER BY source", ())
        return {r[0]: {"last_recorded_at": r[1], "last_occurred_at": r[2]} for r in rows}

    async def dump(self) -> dict[str, Any]:
        """The whole projected state in a canonical order (what a rebuild must reproduce)."""
        incidents = await self._query(f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM incidents ORDER BY id", ())
        timeline = await self._query(
            f"SELECT {', '.join(TIMELINE_COLUMNS)} FROM timeline ORDER BY event_id", ()
        )
        checkpoints = await self._query(
            "SELECT consumer, tx, position FROM checkpoints ORDER BY consumer", ()
        )
        return {
            "incidents": [(*r[:-1], orjson.loads(r[-1])) for r in incidents],
            "timeline": timeline,
            "checkpoints": checkpoints,
        }

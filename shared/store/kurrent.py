"""The KurrentDB (formerly EventStoreDB) event store: an OPTIONAL backend, `kurrentdb://host:2113?Tls=false`.

UNTESTED AGAINST A REAL SERVER. No KurrentDB server can run where this was written (it ships only as
Docker images and vendor packages), so it was written from the API and documentation of `kurrentdbclient`
1.3 (`pip install lynchpin[kurrentdb]`) and exercised only against an in-process fake that models the
documented behaviour (tests/unit/test_kurrent_store.py). Run tests/contract with LYNCHPIN_TEST_KURRENTDB_URL
set (each test needs a fresh namespace, see below) before relying on it.

Names. Several services share one server, so our stream `incident-abc` of source `intake` is the KurrentDB
stream `lynchpin-intake-incident-abc` (prefix `<namespace>-<source>-`; namespace `lynchpin`, or the
`LynchpinNamespace=` query parameter, which is removed from the URL before the client sees it). A source or
namespace may not contain `-` or `~` (so that no source's prefix is a prefix of another's). Bookkeeping
streams use `~` after the source and so never match the data prefix: `lynchpin-intake~handled-<uuid>` and
`lynchpin-intake~checkpoint-<consumer>`.

Versions. Ours are 1-based counts, KurrentDB's stream positions 0-based: expected version 0 is
`StreamState.NO_STREAM`, n > 0 is position n - 1, None is `StreamState.ANY`; an event at position p has
version p + 1. Metadata (source, correlation and causation ids, schema version; string values only, as the
multi-stream append requires) is the event's JSON metadata; data is `event.model_dump_json()`, type the
event type. (Assumed, not seen: that KurrentDB returns the "properties" of a multi-stream append as that
JSON metadata on reads; if not, reads fall back to this store's source and the partition key as
correlation id.)

Positions. `Envelope.position` is the event's commit position in `$all` (unique per event, increasing,
with gaps), and `tx` is always 0, so a checkpoint is `(0, commit position)` and survives a trip through a
CloudEvent. `read_all(after)` reads `$all` forwards from that commit position, filtered on the server by
stream-name prefix, and drops the (inclusive) starting event and any system (`$`) event. A checkpoint given
to `read_all` must come from an envelope of this store: KurrentDB only reads from existing positions.

Writes. One stream: one `append_to_stream` with the expected state, atomic. Several streams (including the
tracking streams below): one `multi_append_to_stream`, atomic, on KurrentDB >= 25.1. On an older server
(the call is UNIMPLEMENTED) the store falls back, once and for good, to appending stream by stream in order
of the writes, each with its expected state: NOT atomic. A conflict on a later stream then leaves the
earlier ones written, and a crash between appends leaves a partial commit. With expected versions set, a
retry then fails with ConcurrencyError rather than duplicating. Several writes to one stream are merged
into one append (KurrentDB forbids one stream twice in a multi-append); a write with no events but an
expected version is checked by a read first (not atomic with the append).

Tracking. `(consumer, event_id)` is recorded as a one-event stream `...~handled-<uuid5(consumer, event_id)>`
appended with `NO_STREAM` in the same multi-append as the writes: a redelivery conflicts there and the
commit is `Committed(duplicate=True)` with nothing written. (Event-id deduplication alone is not enough:
KurrentDB only dedups recent appends or appends at a known version, so the marker is a stream, whose
existence is exact.) On the non-atomic fallback the marker is checked first and appended after the writes,
so a crash in between re-runs the handler (at least once). The ids of a tracked commit's own events are
uuid5(source, consumer, event_id, index), so that a retried append of the same output can be recognised
by KurrentDB's idempotent append (best effort: recent appends, or at the same expected position).
Markers are never deleted: one small stream per handled event. A checkpoint is an event in
`...~checkpoint-<consumer>` (its last event wins; the store asks, best-effort, for `$maxCount` 16 on that
stream).

Envelopes of a commit. KurrentDB returns only the commit position of an append's last event, so after a
commit the store reads the new events back (forwards from the expected position, or backwards from the
end for `None`), except for the common single event at a known version. If that read fails, the commit
raises StoreUnavailable although its events are stored.

Waiting. `wait_for_append` returns at once when `after` is behind the last data position this store has
seen (its own commits, its reads and its watcher); otherwise it waits, up to the timeout, for a local
commit or for the watcher: a catch-up subscription to `$all`, filtered by the data prefix, started at the
first wait from the caller's position and restarted (from the last position seen) when it fails.

Errors. WrongCurrentVersionError becomes ConcurrencyError(stream, expected, actual) (actual re-read from
the server when the error does not carry it); unreachable, unavailable, timed-out, not-leader and other
gRPC failures become StoreUnavailable. The client itself reconnects and retries a call once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self

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

try:
    import kurrentdbclient.exceptions as kx
    from kurrentdbclient import AsyncKurrentDBClient, NewEvent, NewEvents, RecordedEvent, StreamState
except ImportError as e:  # pragma: no cover - the optional dependency is missing
    raise ImportError("the KurrentDB store needs `kurrentdbclient`: pip install 'lynchpin[kurrentdb]'") from e

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE: Final = "lynchpin"
NAMESPACE_PARAM: Final = "lynchpinnamespace"  # compared case-insensitively, like the client's own fields
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_.]+")
IDS: Final = uuid.UUID("6c1f7e0e-3d4a-5b8e-9f61-2a7c4e9b0d13")  # uuid5 namespace of this store's ids
HANDLED_TYPE: Final = "LynchpinHandled"
CHECKPOINT_TYPE: Final = "LynchpinCheckpoint"
CHECKPOINT_MAX_COUNT: Final = 16
READ_BACK_PAGE: Final = 64
READ_BACK_PAGES: Final = 64

UNAVAILABLE: Final[tuple[type[BaseException], ...]] = (
    kx.GrpcError,  # unavailable, deadline, cancelled, internal, "exception thrown by handler", ...
    kx.DeadlineExceededError,  # includes the server's append timeout
    kx.DiscoveryFailedError,  # no cluster member answered gossip
    kx.NodeIsNotLeaderError,  # failover in progress
    kx.AbortedByServerError,  # e.g. consumer too slow
    kx.UnknownError,
    kx.UnauthenticatedError,  # misconfigured, but the store cannot serve either way
    kx.AccessDeniedError,
    OSError,
    TimeoutError,
)


# --- pure helpers (unit-tested without a server) ----------------------------------------------


def split_url(url: str) -> tuple[str, str]:
    """The client's connection string, and our namespace (`LynchpinNamespace=`, taken out of the query)."""
    base, _, query = url.partition("?")
    namespace = DEFAULT_NAMESPACE
    kept: list[str] = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        if name.lower() == NAMESPACE_PARAM:
            namespace = value
        elif item:
            kept.append(item)
    return (f"{base}?{'&'.join(kept)}" if kept else base), namespace


@dataclass(frozen=True, slots=True)
class StreamNames:
    """How one store's streams are named on a shared server."""

    namespace: str
    source: str

    def __post_init__(self) -> None:
        for what, value in (("namespace", self.namespace), ("source", self.source)):
            if not NAME_PATTERN.fullmatch(value):
                raise ValueError(f"KurrentDB store {what} must match {NAME_PATTERN.pattern}: {value!r}")

    @property
    def prefix(self) -> str:
        """Every data stream of this store, and nothing else, starts with this."""
        return f"{self.namespace}-{self.source}-"

    def data(self, stream: str) -> str:
        return self.prefix + stream

    def ours(self, name: str) -> str | None:
        """Our stream name for a KurrentDB stream name, None when it is not one of our data streams."""
        return name[len(self.prefix) :] if name.startswith(self.prefix) else None

    def handled(self, consumer: str, event_id: str) -> str:
        key = uuid.uuid5(IDS, orjson.dumps([consumer, event_id]).decode())
        return f"{self.namespace}-{self.source}~handled-{key}"

    def checkpoint(self, consumer: str) -> str:
        return f"{self.namespace}-{self.source}~checkpoint-{consumer}"

    @property
    def probe(self) -> str:
        return f"{self.namespace}-{self.source}~ping"


def current_version(expected: int | None) -> int | StreamState:
    """KurrentDB's expected state for our expected version (a 1-based count; None: any)."""
    if expected is None:
        return StreamState.ANY
    if expected < 0:
        raise ValueError(f"expected version must be >= 0 or None, not {expected}")
    return StreamState.NO_STREAM if expected == 0 else expected - 1


def version_of(actual: int | StreamState | None) -> int | None:
    """Our 1-based version for KurrentDB's current stream state; None when it does not say."""
    if actual is StreamState.NO_STREAM:
        return 0
    if isinstance(actual, int):
        return actual + 1 if actual >= 0 else 0
    return None


def encode_metadata(source: str, correlation_id: str, causation_id: str | None, schema_version: int) -> bytes:
    """A JSON object of strings (what the multi-stream append accepts); `$correlationId` and
    `$causationId` are KurrentDB's own conventions, for its projections."""
    meta = {
        "source": source,
        "correlation_id": correlation_id,
        "$correlationId": correlation_id,
        "schema_version": str(schema_version),
    }
    if causation_id is not None:
        meta["causation_id"] = causation_id
        meta["$causationId"] = causation_id
    return orjson.dumps(meta)


def decode_metadata(raw: bytes) -> dict[str, str]:
    try:
        value = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str | int) and not isinstance(v, bool)}


def output_event_id(source: str, consumer: str, event_id: str, index: int) -> uuid.UUID:
    """The id of the `index`th event a consumer commits for one input event: the same on redelivery."""
    return uuid.uuid5(IDS, orjson.dumps([source, consumer, event_id, index]).decode())


@dataclass(slots=True)
class Planned:
    """The events a commit appends to one stream, in order, with the version expected before them."""

    stream: str
    expected: int | None
    events: list[tuple[int, Event, Write]] = field(default_factory=list)  # (order in the commit, ...)


def plan_writes(writes: Sequence[Write]) -> list[Planned]:
    """Merge the writes of one commit by stream (first appearance order), checking that several writes
    to one stream agree with each other about its version."""
    planned: dict[str, Planned] = {}
    order = 0
    for write in writes:
        plan = planned.get(write.stream)
        if plan is None:
            plan = planned[write.stream] = Planned(write.stream, write.expected_version)
        elif write.expected_version is not None:
            so_far = len(plan.events)
            if plan.expected is None:
                if write.expected_version < so_far:
                    raise ConcurrencyError(write.stream, write.expected_version, so_far)
                plan.expected = write.expected_version - so_far
            elif plan.expected + so_far != write.expected_version:
                raise ConcurrencyError(write.stream, write.expected_version, plan.expected + so_far)
        for event in write.events:
            plan.events.append((order, event, write))
            order += 1
    return list(planned.values())


def is_unimplemented(error: BaseException) -> bool:
    """An old server without the requested gRPC service (multi-stream append needs 25.1)."""
    return "UNIMPLEMENTED" in str(error).upper()


# --- the store ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    name: str
    current: int | StreamState
    events: list[NewEvent]
    plan: Planned | None = None


class _AlreadyHandled(Exception):
    pass


ClientFactory = Callable[[str], AsyncKurrentDBClient]


class KurrentStore:
    def __init__(
        self,
        url: str,
        *,
        source: str,
        timeout: float = 10.0,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.source = source
        self.url = url
        self.timeout = timeout
        self._uri, namespace = split_url(url)
        self._names = StreamNames(namespace, source)
        self._factory: ClientFactory = client_factory or (lambda uri: AsyncKurrentDBClient(uri=uri))
        self._client: AsyncKurrentDBClient | None = None
        self._multi_append: bool | None = None  # None: not known yet whether the server has it
        self._trimmed: set[str] = set()
        self._last_position = 0  # the last data commit position this store has seen
        self._appended = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def names(self) -> StreamNames:
        return self._names

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        client = self._factory(self._uri)
        self._client = client
        try:
            with self._guard("open"):
                await client.connect()
                await client.get_current_version(self._names.probe, timeout=self.timeout)
        except BaseException:
            await self._close_client()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._close_client()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception as e:  # never connected, or the channel is gone already
                log.debug("closing the KurrentDB client of %s: %r", self.source, e)

    def _alive(self) -> AsyncKurrentDBClient:
        if self._client is None:
            raise StoreUnavailable(f"the {self.source} store is not open")
        return self._client

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except StoreError:
            raise
        except UNAVAILABLE as e:
            raise StoreUnavailable(f"cannot {action} the {self.source} store on KurrentDB: {e!r}") from e

    # --- writes -----------------------------------------------------------------------------

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed:
        client = self._alive()
        plans = plan_writes(writes)
        marker = None
        if tracking is not None and tracking.event_id is not None:
            marker = self._names.handled(tracking.consumer, tracking.event_id)
        with self._guard("write"):
            for plan in plans:  # a write of no events only checks the version (not atomically)
                if not plan.events and plan.expected is not None:
                    actual = await self._version(client, plan.stream)
                    if actual != plan.expected:
                        if marker is not None and await self._exists(client, marker):
                            return Committed(duplicate=True)
                        raise ConcurrencyError(plan.stream, plan.expected, actual)
            plans = [plan for plan in plans if plan.events]
            batches = self._batches(plans, tracking, marker)
            if not batches:
                return Committed()
            try:
                position = await self._append(client, batches, marker)
            except _AlreadyHandled:
                return Committed(duplicate=True)
            except kx.WrongCurrentVersionError as e:
                if marker is not None and await self._exists(client, marker):
                    return Committed(duplicate=True)
                raise await self._conflict(client, e, plans) from None
            envelopes = await self._committed(client, batches, position)
            if tracking is not None and tracking.checkpoint is not None:
                await self._trim(client, self._names.checkpoint(tracking.consumer))
        if envelopes:
            self._saw(max(env.position for env in envelopes))
            self._wake()
        return Committed(envelopes)

    def _batches(self, plans: list[Planned], tracking: Tracking | None, marker: str | None) -> list[_Batch]:
        """Marker first (its conflict means "duplicate"), then the data streams, then the checkpoint."""
        batches: list[_Batch] = []
        if tracking is not None and marker is not None:
            data = orjson.dumps({"consumer": tracking.consumer, "event_id": tracking.event_id})
            batches.append(_Batch(marker, StreamState.NO_STREAM, [NewEvent(type=HANDLED_TYPE, data=data)]))
        index = 0
        for plan in plans:
            events: list[NewEvent] = []
            for _, event, write in plan.events:
                if tracking is not None and tracking.event_id is not None:
                    event_uuid = output_event_id(self.source, tracking.consumer, tracking.event_id, index)
                else:
                    event_uuid = uuid.uuid4()
                index += 1
                correlation = write.correlation_id or event.partition_key or write.stream
                events.append(
                    NewEvent(
                        type=event.type,
                        data=event.model_dump_json().encode(),
                        metadata=encode_metadata(
                            self.source, correlation, write.causation_id, event.schema_version
                        ),
                        id=event_uuid,
                    )
                )
            batches.append(
                _Batch(self._names.data(plan.stream), current_version(plan.expected), events, plan)
            )
        if tracking is not None and tracking.checkpoint is not None:
            tx, position = tracking.checkpoint
            data = orjson.dumps({"consumer": tracking.consumer, "tx": tx, "position": position})
            name = self._names.checkpoint(tracking.consumer)
            batches.append(_Batch(name, StreamState.ANY, [NewEvent(type=CHECKPOINT_TYPE, data=data)]))
        return batches

    async def _append(self, client: AsyncKurrentDBClient, batches: list[_Batch], marker: str | None) -> int:
        """Append the batches, atomically when the server can; the commit position of the last event."""
        if len(batches) == 1:
            [batch] = batches
            return await client.append_to_stream(
                batch.name, events=batch.events, current_version=batch.current, timeout=self.timeout
            )
        if self._multi_append is not False:
            try:
                position = await client.multi_append_to_stream(
                    [NewEvents(b.name, b.events, b.current) for b in batches], timeout=self.timeout
                )
            except kx.GrpcError as e:
                if not is_unimplemented(e):
                    raise
                log.warning(
                    "KurrentDB has no multi-stream append (needs 25.1): %s commits are no longer atomic",
                    self.source,
                )
                self._multi_append = False
            else:
                self._multi_append = True
                return position
        return await self._append_in_turn(client, batches, marker)

    async def _append_in_turn(
        self, client: AsyncKurrentDBClient, batches: list[_Batch], marker: str | None
    ) -> int:
        """The fallback for servers before 25.1: stream by stream, data first, NOT atomic."""
        if marker is not None and await self._exists(client, marker):
            raise _AlreadyHandled
        position = 0
        data = [b for b in batches if b.plan is not None]
        rest = [b for b in batches if b.plan is None]  # the marker, then the checkpoint
        for batch in data + rest:
            try:
                position = await client.append_to_stream(
                    batch.name, events=batch.events, current_version=batch.current, timeout=self.timeout
                )
            except kx.WrongCurrentVersionError:
                if batch.name != marker:
                    raise
                # Handled concurrently by another instance after our check: both outputs are in now.
                log.warning("%s: %s was handled twice concurrently", self.source, marker)
        return position

    async def _conflict(
        self, client: AsyncKurrentDBClient, error: kx.WrongCurrentVersionError, plans: list[Planned]
    ) -> ConcurrencyError:
        by_name = {self._names.data(plan.stream): plan for plan in plans}
        plan = by_name.get(error.stream_name or "")
        if plan is not None and plan.expected is not None:
            actual = version_of(error.actual_version)
            if actual is None:
                actual = await self._version(client, plan.stream)
            return ConcurrencyError(plan.stream, plan.expected, actual)
        # The error does not say which stream (or names one we expected nothing of): ask the server.
        checked = [plan for plan in plans if plan.expected is not None]
        for plan in checked:
            assert plan.expected is not None
            actual = await self._version(client, plan.stream)
            if actual != plan.expected:
                return ConcurrencyError(plan.stream, plan.expected, actual)
        first = checked[0] if checked else plans[0]
        return ConcurrencyError(first.stream, first.expected or 0, await self._version(client, first.stream))

    async def _committed(
        self, client: AsyncKurrentDBClient, batches: list[_Batch], position: int
    ) -> list[Envelope]:
        """The envelopes of the events just appended, in the order of the writes."""
        data = [(batch, batch.plan) for batch in batches if batch.plan is not None]
        if len(batches) == 1 and len(data) == 1:
            batch, plan = data[0]
            if len(plan.events) == 1 and plan.expected is not None:
                # One event appended alone at a known version: the returned commit position is its own.
                [(_, event, write)] = plan.events
                return [
                    Envelope(
                        id=str(batch.events[0].id),
                        stream=plan.stream,
                        version=plan.expected + 1,
                        position=position,
                        event=event,
                        recorded_at=datetime.now(UTC),
                        source=self.source,
                        correlation_id=write.correlation_id or event.partition_key or write.stream,
                        causation_id=write.causation_id,
                        schema_version=event.schema_version,
                    )
                ]
        ordered: list[tuple[int, Envelope]] = []
        for batch, plan in data:
            ids = [new.id for new in batch.events]
            recorded = await self._locate(client, batch.name, ids, plan.expected)
            for (order, _, _), rec in zip(plan.events, recorded, strict=True):
                env = self._to_envelope(rec)
                if env is None:
                    raise StoreUnavailable(f"read back an unexpected event {rec.id} in {rec.stream_name}")
                ordered.append((order, env))
        ordered.sort(key=lambda pair: pair[0])
        return [env for _, env in ordered]

    async def _locate(
        self, client: AsyncKurrentDBClient, name: str, ids: list[uuid.UUID], first: int | None
    ) -> list[RecordedEvent]:
        """Read back the events with these ids from the end of a stream."""
        if first is not None:
            page = await client.get_stream(name, stream_position=first, limit=len(ids), timeout=self.timeout)
            if [rec.id for rec in page] == ids:
                return list(page)
        wanted = set(ids)
        found: dict[uuid.UUID, RecordedEvent] = {}
        position: int | None = None  # None: from the end
        limit = max(READ_BACK_PAGE, 2 * len(ids))
        for _ in range(READ_BACK_PAGES):
            page = await client.get_stream(
                name, stream_position=position, backwards=True, limit=limit, timeout=self.timeout
            )
            found.update((rec.id, rec) for rec in page if rec.id in wanted)
            if len(found) == len(wanted) or len(page) < limit or page[-1].stream_position == 0:
                break
            position = page[-1].stream_position - 1
        if len(found) < len(wanted):
            raise StoreUnavailable(f"appended to {name} but could not read the events back")
        return [found[i] for i in ids]

    async def _version(self, client: AsyncKurrentDBClient, stream: str) -> int:
        state = await client.get_current_version(self._names.data(stream), timeout=self.timeout)
        version = version_of(state)
        return 0 if version is None else version

    async def _exists(self, client: AsyncKurrentDBClient, name: str) -> bool:
        state = await client.get_current_version(name, timeout=self.timeout)
        return state is not StreamState.NO_STREAM

    async def _trim(self, client: AsyncKurrentDBClient, name: str) -> None:
        """Best effort, once per stream and process: keep only the last checkpoints."""
        if name in self._trimmed:
            return
        self._trimmed.add(name)
        try:
            await client.set_stream_metadata(
                name, metadata={"$maxCount": CHECKPOINT_MAX_COUNT}, timeout=self.timeout
            )
        except (kx.KurrentDBClientError, OSError) as e:
            log.info("cannot set $maxCount on %s (checkpoints will accumulate): %r", name, e)

    # --- reads ------------------------------------------------------------------------------

    def _to_envelope(self, rec: RecordedEvent) -> Envelope | None:
        stream = self._names.ours(rec.stream_name)
        if stream is None or rec.is_system_event:
            return None
        meta = decode_metadata(rec.metadata)
        schema = int(meta.get("schema_version", "1"))
        event = parse_event(orjson.loads(rec.data), schema)
        return Envelope(
            id=str(rec.id),
            stream=stream,
            version=rec.stream_position + 1,
            position=rec.commit_position,
            event=event,
            recorded_at=rec.recorded_at or datetime.now(UTC),
            source=meta.get("source") or self.source,
            correlation_id=meta.get("correlation_id") or event.partition_key or stream,
            causation_id=meta.get("causation_id") or None,
            schema_version=schema,
        )

    def committed_here(self, stream: str, after_version: int) -> list[Envelope] | None:
        return None  # not kept here: every load reads the server

    async def read(self, stream: str, after_version: int = 0) -> list[Envelope]:
        client = self._alive()
        with self._guard("read"):
            try:
                recorded = await client.get_stream(
                    self._names.data(stream),
                    stream_position=after_version if after_version > 0 else None,
                    timeout=self.timeout,
                )
            except kx.NotFoundError:
                return []
        return [env for rec in recorded if (env := self._to_envelope(rec)) is not None]

    async def read_all(self, after: Checkpoint = START, limit: int = 1000) -> list[Envelope]:
        client = self._alive()
        out: list[Envelope] = []
        position: int | None = after[1] if after[1] > 0 else None
        with self._guard("read"), self._known_position(after):
            while len(out) < limit:
                want = limit - len(out) + (1 if position is not None else 0)  # + the inclusive start
                async with await client.read_all(
                    commit_position=position,
                    filter_include=(self._names.prefix,),
                    filter_by_stream_name=True,
                    filter_by_prefix=True,
                    limit=want,
                    timeout=self.timeout,
                ) as response:
                    page = [rec async for rec in response]
                for rec in page:
                    if position is not None and rec.commit_position <= position:
                        continue
                    env = self._to_envelope(rec)
                    if env is not None and len(out) < limit:
                        out.append(env)
                if len(page) < want:
                    break  # the end of the log
                position = page[-1].commit_position  # some were skipped: read on
        if out:
            self._saw(out[-1].position)
        return out

    @contextlib.contextmanager
    def _known_position(self, after: Checkpoint) -> Iterator[None]:
        try:
            yield
        except kx.InvalidCommitPositionError as e:
            raise StoreError(f"{after} is not a position in the {self.source} store on KurrentDB") from e

    async def checkpoint(self, consumer: str) -> Checkpoint:
        client = self._alive()
        with self._guard("read"):
            try:
                recorded = await client.get_stream(
                    self._names.checkpoint(consumer), backwards=True, limit=1, timeout=self.timeout
                )
            except kx.NotFoundError:
                return START
        if not recorded:
            return START
        data = orjson.loads(recorded[0].data)
        return (int(data["tx"]), int(data["position"]))

    async def ping(self) -> None:
        client = self._alive()
        with self._guard("reach"):
            await client.get_current_version(self._names.probe, timeout=self.timeout)

    # --- waiting ----------------------------------------------------------------------------

    def _saw(self, position: int) -> None:
        self._last_position = max(self._last_position, position)

    def _wake(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def wait_for_append(self, timeout: float, after: Checkpoint | None = None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._client is not None and (self._watcher is None or self._watcher.done()):
            # From the caller's position (so that nothing after it is missed), else from what we saw.
            start = after[1] if after is not None else (self._last_position or None)
            self._watcher = asyncio.create_task(self._watch(start), name=f"kurrentdb-watch-{self.source}")
        while True:
            if after is not None and self._last_position > after[1]:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._appended.wait(), remaining)
            except TimeoutError:
                return
            if after is None:
                return

    async def _watch(self, start: int | None) -> None:
        """Follow data events with a catch-up subscription (from `start`, exclusive; 0: the beginning;
        None: the end) and wake waiters on each new one; restart from the last one seen when lost."""
        delay = 0.5
        position = start
        while self._client is not None:
            client = self._client
            try:
                subscription = await client.subscribe_to_all(
                    commit_position=position or None,
                    from_end=position is None,
                    filter_include=(self._names.prefix,),
                    filter_by_stream_name=True,
                    filter_by_prefix=True,
                )
                try:
                    delay = 0.5
                    async for rec in subscription:
                        if self._names.ours(rec.stream_name) is None or rec.is_system_event:
                            continue
                        position = max(position or 0, rec.commit_position)
                        if rec.commit_position > self._last_position:
                            self._saw(rec.commit_position)
                            self._wake()
                finally:
                    await subscription.stop()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # lost: waiters fall back to their timeouts until it is back
                log.info("%s: KurrentDB subscription lost, restarting: %r", self.source, e)
            if self._last_position > (position or 0):
                position = self._last_position
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

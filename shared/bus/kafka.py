"""The Kafka bus: a consumer group per consuming service over the producing services' topics.

Each fetch is decoded from its structured CloudEvents and handed to `shared.consumer.deliver_page`, as the
embedded bus does with a page of a log: every record's writes commit with its tracking record (so a
redelivered record changes nothing), the commits of different incidents in flight together so that the
store's group commit writes them in one transaction, and one incident's records (one partition, by key)
handled in order. Kafka offsets are the position: a partition's offset moves only past records whose
commits are all in the store; it is committed after that (at most every `commit_every` seconds while
records keep coming, at once when a fetch comes back empty), and before a rebalance takes partitions
away. A crash redelivers what was handled since the last offset commit: each a no-op by its tracking
record.
When the store cannot take a record now, each partition is re-read from its first record not yet
committed, after a pause. A record that `deliver_page` dead-letters, or that cannot be decoded at all, is
copied to `lynchpin.<source>.dlq` with the reason in its headers, before the consumer's store records it
as handled (a crash in between copies it twice, never zero times) and before its offset is committed:
nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from shared.bus.base import Handler, Sink, tracking_name
from shared.consumer import RetryPolicy, SetAside, deliver_page
from shared.envelope import TYPE_PREFIX, Envelope
from shared.events import EventDeadLettered
from shared.relay import dlq_topic, events_topic
from shared.store import ConcurrencyError, StoreUnavailable, Tracking, Write

log = logging.getLogger("lynchpin.bus")

UNDECODABLE = (ValueError, KeyError, TypeError, AttributeError)
"""What `Envelope.from_json` raises on a record that is not one of our CloudEvents (JSON and pydantic
errors are ValueErrors)."""


DEFAULT_RETRY = RetryPolicy()


class RetryLater(Exception):
    """The consumer's store cannot take the record now; re-read it after a pause."""


@dataclass
class _Positions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Offsets handled but not yet committed, and the rebalance hook that commits them in time."""

    consumer: Any = None
    done: dict[Any, int] = field(default_factory=dict)
    """Next offset to commit, per partition (handled, not yet committed)."""
    at: dict[Any, int] = field(default_factory=dict)
    """Next offset to handle, per partition this consumer handled something on (for `lag`)."""
    generation: int = 0
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def commit(self) -> None:
        if not self.done:
            return
        offsets = dict(self.done)
        try:
            await self.consumer.commit(offsets)
        except KafkaError as error:  # redelivered later, and deduplicated by the tracking records
            log.warning("offset commit failed, will retry: %r", error)
            return
        for tp, offset in offsets.items():
            if self.done.get(tp) == offset:
                del self.done[tp]

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.busy:  # let the fetch in hand finish, then hand its offsets over
            self.generation += 1
            await self.commit()
            self.done.clear()
            self.at.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class KafkaBus:
    """Consumes `lynchpin.<source>.events` topics; owns the producer that writes dead letters."""

    def __init__(
        self,
        bootstrap: str,
        *,
        group_prefix: str = "lynchpin",
        namespace: str = "lynchpin",
        retry: RetryPolicy = DEFAULT_RETRY,
        batch: int = 200,
        poll: float = 0.5,
        commit_every: float = 1.0,
        first_backoff: float = 0.1,
        max_backoff: float = 5.0,
        client_id: str = "lynchpin",
        consumer_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.group_prefix = group_prefix
        self.namespace = namespace
        self.retry = retry
        self.batch = batch
        self.poll = poll
        self.commit_every = commit_every
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.client_id = client_id
        self.consumer_options = dict(consumer_options or {})
        self.producer_options = dict(producer_options or {})
        self._producer: Any = None
        self._producer_lock = asyncio.Lock()
        self._lag: dict[str, int] = {}

    async def __aenter__(self) -> Self:
        try:
            await self._dlq_producer()
        except KafkaError as error:  # not fatal: started again when a dead letter needs it
            log.warning("kafka bus: producer not started yet: %r", error)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def lag(self) -> dict[str, int]:
        return dict(self._lag)

    # --- consuming --------------------------------------------------------------------------

    async def run(
        self,
        consumer: str,
        sources: Sequence[str],
        handler: Handler,
        store: Sink,
        inputs: Collection[str] | None = None,
    ) -> None:
        topics = {events_topic(source, self.namespace): source for source in sources}
        delay = self.first_backoff
        while True:
            kafka = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=f"{self.group_prefix}.{consumer}",
                client_id=f"{self.client_id}.{consumer}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **self.consumer_options,
            )
            positions = _Positions(kafka)
            kafka.subscribe(list(topics), listener=positions)
            try:
                await kafka.start()
                delay = self.first_backoff
                await self._consume(kafka, positions, consumer, topics, handler, store, inputs)
            except KafkaError as error:
                log.warning("kafka bus %s: %r; reconnecting in %.1fs", consumer, error, delay)
            finally:
                try:  # bounded: during a broker outage a commit would wait for the broker
                    await asyncio.wait_for(positions.commit(), self.max_backoff)
                except TimeoutError:
                    log.warning("kafka bus %s: last offset commit timed out", consumer)
                finally:
                    await kafka.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def _consume(
        self,
        kafka: Any,
        positions: _Positions,
        consumer: str,
        topics: Mapping[str, str],
        handler: Handler,
        store: Sink,
        inputs: Collection[str] | None,
    ) -> None:
        delay = self.first_backoff
        clock = asyncio.get_running_loop().time
        committed_at = clock()
        while True:
            try:
                batches = await kafka.getmany(timeout_ms=int(self.poll * 1000), max_records=self.batch)
            except KafkaError as error:
                log.warning("kafka bus %s: fetch failed: %r", consumer, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            generation = positions.generation
            pause = False
            async with positions.busy:  # a rebalance waits for the fetch in hand, then takes its offsets
                if positions.generation == generation:  # else revoked meanwhile: the new owner resumes
                    pending = await self._deliver_fetch(
                        batches, positions, consumer, topics, handler, store, inputs
                    )
                    for tp, offset in pending.items():  # re-read from the first record not yet committed
                        kafka.seek(tp, offset)
                    pause = bool(pending)
                    # An offset commit is a write on the broker: one a second under load, not one a fetch.
                    if pause or not batches or clock() - committed_at >= self.commit_every:
                        await positions.commit()
                        committed_at = clock()
            self._update_lag(kafka, positions, topics)
            if pause:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            else:
                delay = self.first_backoff

    async def _deliver_fetch(
        self,
        batches: Mapping[Any, Sequence[Any]],
        positions: _Positions,
        consumer: str,
        topics: Mapping[str, str],
        handler: Handler,
        store: Sink,
        inputs: Collection[str] | None = None,
    ) -> dict[Any, int]:
        """Deliver a fetch as one page (`shared.consumer.deliver_page`: commits in flight together, one
        incident's events in order) and move each partition's offset past the records committed in the
        store without a gap. A record whose type (its `ce_type` header) is not among `inputs` is passed
        over without being decoded. Returns, per partition left with records the store could not take
        now, the first of them: the caller re-reads from there after a pause (what did commit is
        deduplicated)."""
        left: dict[Any, list[Any]] = {tp: list(records) for tp, records in batches.items() if records}
        for tp, records in left.items():
            positions.at.setdefault(tp, records[0].offset)
        origin: dict[int, tuple[Any, Any, str]] = {}  # id(envelope): (partition, record, tracking name)
        committed: set[tuple[Any, int]] = set()  # (partition, offset): in the store now
        error: RetryLater | None = None
        try:
            decoded: list[list[Envelope]] = []
            for tp, records in left.items():
                source = topics[tp.topic]
                name = tracking_name(consumer, source)
                decoded.append([])
                for record in records:
                    kind = _type_of(record)
                    if inputs is not None and kind is not None and kind not in inputs:
                        committed.add((tp, record.offset))
                        continue
                    try:
                        env = Envelope.from_json(record.value)
                    except UNDECODABLE as bad:  # set aside at once: it has no effects to keep in order
                        await self._undecodable(record, source, name, store, bad)
                        committed.add((tp, record.offset))
                        continue
                    origin[id(env)] = (tp, record, name)
                    decoded[-1].append(env)
            page = [env for envs in decoded for env in envs]  # each partition's records in order

            def set_aside(env: Envelope) -> SetAside:
                tp, record, name = origin[id(env)]

                async def publish(dead: EventDeadLettered) -> None:
                    await self._dead_letter(
                        record, topics[tp.topic], name, dead.reason, attempts=dead.attempts
                    )

                return publish

            def handled(env: Envelope) -> None:
                tp, record, _ = origin[id(env)]
                committed.add((tp, record.offset))

            await deliver_page(
                page,
                consumer=lambda env: origin[id(env)][2],
                handler=handler,
                store=store,
                retry=self.retry,
                set_aside=set_aside,
                checkpoint=False,
                handled=handled,
                inputs=inputs,
            )
        except (StoreUnavailable, ConcurrencyError) as failure:
            error = RetryLater(f"{type(failure).__name__}: {failure}")
        except RetryLater as failure:
            error = failure
        pending: dict[Any, int] = {}
        for tp, records in left.items():
            first = next((r.offset for r in records if (tp, r.offset) not in committed), None)
            if first is None:
                positions.done[tp] = positions.at[tp] = records[-1].offset + 1
                continue
            if first > records[0].offset:
                positions.done[tp] = positions.at[tp] = first
            pending[tp] = first
        if error is not None:
            log.warning("kafka bus %s: %s; will re-read %s", consumer, error, pending)
        return pending

    async def _undecodable(self, record: Any, source: str, name: str, store: Sink, error: Exception) -> None:
        reason = f"undecodable record: {type(error).__name__}: {error}"[:2000]
        log.error("%s: %s at %s[%d]@%d", name, reason, record.topic, record.partition, record.offset)
        await self._dead_letter(record, source, name, reason, attempts=1)
        await self._record_undecodable(record, name, reason, store)

    async def _record_undecodable(self, record: Any, name: str, reason: str, store: Sink) -> None:
        """Note the bad record in the consumer's store too, as deliver does for a dead-lettered event."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        headers = dict(record.headers or ())
        dead = EventDeadLettered(
            consumer=name,
            event_id=headers.get("ce_id", b"").decode(errors="replace") or where,
            event_type=headers.get("ce_type", b"").decode(errors="replace") or "unknown",
            stream=where,
            attempts=1,
            reason=reason,
            occurred_at=datetime.now(UTC),
        )
        try:
            await store.commit(
                [Write(f"deadletter-{name}", [dead], None)], tracking=Tracking(name, f"kafka:{where}")
            )
        except StoreUnavailable as error:
            raise RetryLater(f"StoreUnavailable: {error}") from error

    # --- dead letters -----------------------------------------------------------------------

    async def _dlq_producer(self) -> Any:
        async with self._producer_lock:
            if self._producer is None:
                options: dict[str, Any] = {"enable_idempotence": True, "client_id": f"{self.client_id}.dlq"}
                options.update(self.producer_options)
                producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, **options)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def _dead_letter(self, record: Any, source: str, consumer: str, reason: str, attempts: int) -> None:
        """Copy `record` to the source's DLQ topic with the reason; retry until the broker took it."""
        headers = [
            *(record.headers or ()),
            ("dlq_reason", reason.encode()),
            ("dlq_consumer", consumer.encode()),
            ("dlq_attempts", str(attempts).encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
        ]
        delay = self.first_backoff
        while True:
            try:
                producer = await self._dlq_producer()
                await producer.send_and_wait(
                    dlq_topic(source, self.namespace),
                    value=record.value if record.value is not None else b"",
                    key=record.key,
                    headers=headers,
                )
                return
            except KafkaError as error:
                log.warning("%s: cannot publish dead letter yet: %r", consumer, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)

    # --- lag --------------------------------------------------------------------------------

    def _update_lag(self, kafka: Any, positions: _Positions, topics: Mapping[str, str]) -> None:
        lag: dict[str, int] = dict.fromkeys(topics.values(), 0)
        try:
            for tp in kafka.assignment():
                highwater = kafka.highwater(tp)
                if highwater is None:
                    continue
                position = positions.at.get(tp)
                if position is not None:
                    lag[topics[tp.topic]] += max(0, highwater - position)
        except (AssertionError, AttributeError, KafkaError):  # reassigned meanwhile: keep the last figures
            return
        self._lag.update(lag)


def _type_of(record: Any) -> str | None:
    """The event type a record's `ce_type` header names; None without one (decoded to find out)."""
    for key, value in record.headers or ():
        if key == "ce_type":
            return bytes(value).decode(errors="replace").removeprefix(TYPE_PREFIX)
    return None

"""The relay: publish a service's own store log to its Kafka topic (the store is the outbox).

It tails the log from its checkpoint, sends a batch with the idempotent producer (key = incident id, so one
incident's events stay in order on one partition), and waits until the broker acknowledged every record
before it goes on. It saves its checkpoint in the store (a transaction of its own) once the log goes quiet,
at most every second while records keep coming, and when it stops; a crash re-publishes what was sent since
the last save: at-least-once, and consumers deduplicate by event id. Broker and store outages are retried
with backoff, never skipped.

With a store that offers `try_lock`/`release_lock` (PostgreSQL advisory locks), only the instance holding
`relay:<source>` publishes, so N instances of a service run one active relay between them.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Protocol

from aiokafka.errors import KafkaError

from shared.envelope import SPEC_VERSION, TYPE_PREFIX, Checkpoint, Envelope
from shared.store import START, Committed, StoreUnavailable, Tracking, Write

log = logging.getLogger("lynchpin.relay")

RELAY_CONSUMER = "relay:kafka"
CONTENT_TYPE = b"application/cloudevents+json; charset=utf-8"
TOPIC_EXISTS = 36


def events_topic(source: str, namespace: str = "lynchpin") -> str:
    return f"{namespace}.{source}.events"


def dlq_topic(source: str, namespace: str = "lynchpin") -> str:
    return f"{namespace}.{source}.dlq"


class Outbox(Protocol):
    """The part of an `EventStore` the relay uses (any EventStore is one)."""

    source: str

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed: ...

    async def read_all(self, after: Checkpoint = START, limit: int = 1000) -> list[Envelope]: ...

    async def checkpoint(self, consumer: str) -> Checkpoint: ...

    async def wait_for_append(self, timeout: float, after: Checkpoint | None = None) -> None: ...


class Producer(Protocol):
    """The part of `aiokafka.AIOKafkaProducer` the relay uses."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]: ...


def make_producer(bootstrap: str, **options: Any) -> Any:
    """An idempotent aiokafka producer (acks=all, one batch in flight per partition); start it yourself."""
    from aiokafka import AIOKafkaProducer

    settings: dict[str, Any] = {"enable_idempotence": True, "client_id": "lynchpin-relay"}
    settings.update(options)
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **settings)


def cloudevent_headers(env: Envelope) -> list[tuple[str, bytes]]:
    return [
        ("ce_id", env.id.encode()),
        ("ce_type", (TYPE_PREFIX + env.type).encode()),
        ("ce_source", f"lynchpin/{env.source}".encode()),
        ("ce_specversion", SPEC_VERSION.encode()),
        ("content-type", CONTENT_TYPE),
    ]


class Relay:
    """Publishes `store`'s log to `topic` (default `lynchpin.<source>.events`) through a started producer."""

    def __init__(
        self,
        store: Outbox,
        producer: Producer,
        topic: str | None = None,
        *,
        batch: int = 500,
        poll: float = 0.5,
        quiet: float = 0.1,
        save_every: float = 1.0,
        first_backoff: float = 0.1,
        max_backoff: float = 5.0,
        lock_retry: float = 2.0,
    ) -> None:
        self.store = store
        self.producer = producer
        self.topic = topic if topic is not None else events_topic(store.source)
        self.batch = batch
        self.poll = poll
        self.quiet = quiet
        """The checkpoint is saved once the log has had nothing new for this long (seconds)..."""
        self.save_every = save_every
        """...and at most this often while records keep coming."""
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.lock_retry = lock_retry
        self.lock_name = f"relay:{store.source}"
        self.published = 0
        self._backoff = first_backoff
        self.active = False

    async def run(self) -> None:
        """Publish forever (until cancelled). Never raises for broker or store outages."""
        while True:
            try:
                if not await self._lock():
                    await asyncio.sleep(self.lock_retry)
                    continue
                try:
                    self.active = True
                    await self._publish()
                    log.warning("relay %s: lost lock %s", self.topic, self.lock_name)
                finally:
                    self.active = False
                    await self._unlock()
            except (StoreUnavailable, KafkaError) as error:
                log.warning("relay %s: %r; retrying in %.1fs", self.topic, error, self._backoff)
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, self.max_backoff)

    async def _publish(self) -> None:
        """Publish page after page while this instance holds the lock. A page shorter than `batch`
        reached the end of the log: wait for the next append rather than read again at once."""
        clock = asyncio.get_running_loop().time
        at = saved = await self.store.checkpoint(RELAY_CONSUMER)
        due = clock() + self.save_every
        log.info("relay %s: publishing after %s", self.topic, at)
        try:
            while await self._lock():  # a store with locks says each time whether it still holds it
                page = await self._publish_after(at)
                self._backoff = self.first_backoff  # the broker and the store answered
                if page:
                    at = page[-1].checkpoint
                if at != saved and (not page or clock() >= due):
                    await self._save(at)
                    saved, due = at, clock() + self.save_every
                if len(page) < self.batch:
                    await self.store.wait_for_append(self.poll if at == saved else self.quiet, after=at)
        except BaseException:
            # An outage, or a stop: keep what the broker acknowledged, if the store still can.
            if at != saved:
                try:
                    await asyncio.shield(self._save(at))
                except Exception as error:  # its next run starts from the last save: a few sent again
                    log.warning("relay %s: could not save checkpoint: %r", self.topic, error)
            raise

    async def _save(self, at: Checkpoint) -> None:
        await self.store.commit([], tracking=Tracking(RELAY_CONSUMER, None, checkpoint=at))

    async def _publish_after(self, at: Checkpoint) -> list[Envelope]:
        """Send one page after `at` and wait for the broker to acknowledge all of it; the page."""
        page = await self.store.read_all(after=at, limit=self.batch)
        if not page:
            return page
        t0 = time.monotonic()
        acks: list[Awaitable[Any]] = []
        try:
            for env in page:
                acks.append(
                    await self.producer.send(
                        self.topic,
                        value=env.to_json(),
                        key=env.partition_key.encode(),
                        headers=cloudevent_headers(env),
                    )
                )
        except BaseException:
            for ack in acks:  # the queued sends still complete or fail: do not leave their errors unread
                asyncio.ensure_future(ack).add_done_callback(_ignore_result)
            raise
        results = await asyncio.gather(*acks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.published += len(page)
        log.debug("relay %s: %d records acknowledged in %.3fs", self.topic, len(page), time.monotonic() - t0)
        return page

    async def _lock(self) -> bool:
        try_lock = getattr(self.store, "try_lock", None)
        if try_lock is None:
            return True
        return bool(await _maybe_await(try_lock(self.lock_name)))

    async def _unlock(self) -> None:
        release = getattr(self.store, "release_lock", None)
        if release is None:
            return
        try:
            await asyncio.shield(_maybe_await(release(self.lock_name)))
        except StoreUnavailable as error:  # the session is gone, and its lock with it
            log.warning("relay %s: could not release %s: %r", self.topic, self.lock_name, error)


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def run_relay(store: Outbox, producer: Producer, topic: str | None = None, **options: Any) -> None:
    """Run a `Relay` forever (until cancelled)."""
    await Relay(store, producer, topic, **options).run()


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    dlq: bool = True,
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
    namespace: str = "lynchpin",
) -> None:
    """Create `lynchpin.<svc>.events` (and `lynchpin.<svc>.dlq`) for each service name in `names`.

    Existing topics (error 36) are fine. Returns once every partition has a leader.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topics: list[str] = []
    for name in names:
        topics.append(events_topic(name, namespace))
        if dlq:
            topics.append(dlq_topic(name, namespace))
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="lynchpin-admin")
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(t, partitions, replication_factor) for t in topics], timeout_ms=int(timeout * 1000)
        )
        errors = [
            f"{entry[0]}: error {entry[1]} {entry[2] if len(entry) > 2 else ''}".strip()
            for entry in response.topic_errors
            if entry[1] not in (0, TOPIC_EXISTS)
        ]
        if errors:
            raise RuntimeError("create_topics failed: " + "; ".join(errors))
        deadline = time.monotonic() + timeout
        while True:
            described = await admin.describe_topics(topics)
            if len(described) == len(topics) and all(
                t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics {topics} have no leader after {timeout:.0f}s")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()

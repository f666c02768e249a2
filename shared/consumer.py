"""Deliver one input event to a handler and commit its effects exactly once.

Shared by both bus modes. Concurrency conflicts are retried at once (the handler reloads);
other failures are retried with backoff, then dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.bus.base import Handler, Sink
from shared.envelope import Checkpoint, Envelope
from shared.events import EventDeadLettered
from shared.logging import log_context
from shared.store import Committed, ConcurrencyError, StoreUnavailable, Tracking, Write

log = logging.getLogger("lynchpin.consumer")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    first_delay: float = 0.05
    max_delay: float = 2.0
    conflict_retries: int = 50


SetAside = Callable[[EventDeadLettered], Awaitable[None]]
"""Keeps a dead letter outside the consumer's store too (Kafka: the DLQ topic); awaited before the store."""


class DeadLettered(Exception):
    """Raised after an event was set aside; carries the dead-letter record."""

    def __init__(self, record: EventDeadLettered) -> None:
        super().__init__(record.reason)
        self.record = record


async def deliver(
    env: Envelope,
    *,
    consumer: str,
    handler: Handler,
    store: Sink,
    checkpoint: Checkpoint | None = None,
    retry: RetryPolicy = RetryPolicy(),
    already_failed: int = 0,
    set_aside: SetAside | None = None,
) -> Committed:
    """Run `handler` on `env` and commit its writes with a tracking record in `store`.

    Returns the commit (`duplicate` when the event was handled before). After `retry.attempts`
    failures the event is recorded as dead-lettered in the consumer's store and `DeadLettered`
    is raised. `set_aside` is awaited first, with the record: where a mode keeps dead letters
    elsewhere (Kafka's DLQ topic) they are written there before the tracking record makes the event
    handled, so that a crash in between publishes a dead letter twice rather than never.
    StoreUnavailable is never dead-lettered: the store being down is not the event's fault.
    """
    with log_context(correlation_id=env.correlation_id, incident_id=env.event.partition_key, event_id=env.id):
        return await _deliver(
            env,
            consumer=consumer,
            handler=handler,
            store=store,
            checkpoint=checkpoint,
            retry=retry,
            already_failed=already_failed,
            set_aside=set_aside,
        )


async def _deliver(
    env: Envelope,
    *,
    consumer: str,
    handler: Handler,
    store: Sink,
    checkpoint: Checkpoint | None,
    retry: RetryPolicy,
    already_failed: int,
    set_aside: SetAside | None,
) -> Committed:
    tracking = Tracking(consumer, env.id, checkpoint)
    failures = already_failed
    conflicts = 0
    delay = retry.first_delay
    while True:
        try:
            writes = await handler(env)
            return await store.commit(writes, tracking=tracking)
        except ConcurrencyError:
            conflicts += 1
            if conflicts > retry.conflict_retries:
                raise
            await asyncio.sleep(0)
        except StoreUnavailable:
            raise
        except Exception as error:  # a handler bug or a poison event: count it, then set it aside
            failures += 1
            log.warning("%s failed on %s %s (attempt %d): %r", consumer, env.type, env.id, failures, error)
            if failures >= retry.attempts:
                record = EventDeadLettered(
                    consumer=consumer,
                    event_id=env.id,
                    event_type=env.type,
                    stream=env.stream,
                    attempts=failures,
                    reason=f"{type(error).__name__}: {error}"[:2000],
                    occurred_at=datetime.now(UTC),
                )
                if set_aside is not None:
                    await set_aside(record)
                dead = Write(f"deadletter-{consumer}", [record], None, causation_id=env.id)
                await store.commit([dead], tracking=tracking)
                raise DeadLettered(record) from error
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry.max_delay)


async def deliver_page(
    page: Sequence[Envelope],
    *,
    consumer: str,
    handler: Handler,
    store: Sink,
    retry: RetryPolicy = RetryPolicy(),
) -> None:
    """Deliver a page of a checkpointed subscription, with its commits in flight together.

    Each event's effects commit with its own tracking record, as in `deliver`, but without waiting
    for the previous commit: the store's group commit writes them in one transaction. An event of
    an incident whose commit is still in flight waits for it first, so its handler sees it; so does
    an event whose writes go to a stream another commit of the page is still writing (a service-wide
    stream, say): it is handled again once that commit is done, instead of conflicting with it. The
    checkpoint moves to the end of the page only once every event of the page is committed. A
    handler failure or a conflict falls back to `deliver` (retries, then dead letters) for that event.
    """
    in_flight: dict[str | None, tuple[Envelope, asyncio.Task[Committed]]] = {}
    writing: dict[str, tuple[Envelope, asyncio.Task[Committed]]] = {}
    submitted: list[tuple[Envelope, asyncio.Task[Committed]]] = []
    redone: set[asyncio.Task[Committed]] = set()

    async def fallback(env: Envelope, *, failed: int) -> None:
        try:
            await deliver(
                env, consumer=consumer, handler=handler, store=store, retry=retry, already_failed=failed
            )
        except DeadLettered as dead:
            log.error("%s dead-lettered %s: %s", consumer, env.id, dead.record.reason)

    async def settle(env: Envelope, task: asyncio.Task[Committed]) -> None:
        """An earlier event of the same incident whose commit conflicted is delivered again now,
        before the next one's handler runs: one incident's events keep their order."""
        if task not in redone and not task.cancelled() and isinstance(task.exception(), ConcurrencyError):
            redone.add(task)
            await fallback(env, failed=0)

    try:
        for env in page:
            earlier = in_flight.get(env.partition_key)
            if earlier is not None:
                await asyncio.wait([earlier[1]])
                await settle(*earlier)
            try:
                items = list(await handler(env))
                for _ in range(retry.conflict_retries):
                    streams = {item.stream for item in items if isinstance(item, Write)}
                    busy = [writing[s] for s in streams if s in writing and not writing[s][1].done()]
                    if not busy:
                        break
                    await asyncio.wait([task for _, task in busy])
                    for earlier_env, earlier_task in busy:
                        await settle(earlier_env, earlier_task)
                    items = list(await handler(env))  # again, now that the stream moved on
            except StoreUnavailable:
                raise
            except Exception:  # counted as the first attempt; `deliver` retries or sets it aside
                await fallback(env, failed=1)
                continue
            task = asyncio.create_task(store.commit(items, tracking=Tracking(consumer, env.id)))
            in_flight[env.partition_key] = (env, task)
            for item in items:
                if isinstance(item, Write):
                    writing[item.stream] = (env, task)
            submitted.append((env, task))
        for env, task in submitted:
            try:
                await task
            except ConcurrencyError:
                if task not in redone:
                    await fallback(env, failed=0)
    finally:
        for _, task in submitted:
            if not task.done():
                task.cancel()
        await asyncio.gather(*(t for _, t in submitted), return_exceptions=True)
    await store.commit([], tracking=Tracking(consumer, None, page[-1].checkpoint))

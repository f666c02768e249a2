"""Deliver one input event to a handler and commit its effects exactly once.

Shared by both bus modes. Concurrency conflicts are retried at once (the handler reloads);
other failures are retried with backoff, then dead-lettered with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeGuard

from shared.aggregates import deciding
from shared.bus.base import Handler, PageSink, Sink
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


AT_ONCE = 64
"""Events per transaction of a `PageSink`. A read model applies them on the event loop's thread, and
a page of 500 held everything else the process serves for 50 ms; 64 take a few."""


def takes_pages(store: Sink) -> TypeGuard[PageSink]:
    """Whether `store` is a `PageSink`, asked once per class: a check against a runtime protocol
    walks its members every time (15 microseconds), and this is asked for every page."""
    return _page_sink_class(type(store))


@cache
def _page_sink_class(kind: type) -> bool:
    return issubclass(kind, PageSink)


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
            writes = await decide(handler, env)
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


async def decide(handler: Handler, env: Envelope) -> list[Any]:
    """What `handler` makes of `env`, led by assertions of the stream versions its decision rested on
    without reading them (`shared.aggregates.deciding`)."""
    with deciding() as grounds:
        items = list(await handler(env))
    return [*grounds.assertions(items), *items]


async def _at_once(
    events: Sequence[Envelope], name: Callable[[Envelope], str], handler: Handler, store: PageSink
) -> bool:
    """The events of a page the consumer takes, in page order, in few commits (`AT_ONCE` events
    each), each event with its tracking record: no event waits for another's commit, since nothing
    the handler decides rests on the store. False when a handler or a commit failed (a poison event,
    a projection bug): the page then goes event by event, where retries and dead letters find the
    culprit (what did commit is a no-op the second time)."""
    try:
        commits = [(await decide(handler, env), Tracking(name(env), env.id)) for env in events]
        for start in range(0, len(commits), AT_ONCE):
            await store.commit_all(commits[start : start + AT_ONCE])
    except StoreUnavailable:
        raise
    except Exception as error:
        log.warning(
            "%s: a page of %d events failed to commit at once (%r): one by one",
            name(events[0]),
            len(events),
            error,
        )
        return False
    return True


def _named(consumer: str) -> Callable[[Envelope], str]:
    return lambda env: consumer


async def deliver_page(
    page: Sequence[Envelope],
    *,
    consumer: str | Callable[[Envelope], str],
    handler: Handler,
    store: Sink,
    retry: RetryPolicy = RetryPolicy(),
    set_aside: Callable[[Envelope], SetAside | None] | None = None,
    checkpoint: bool = True,
    handled: Callable[[Envelope], None] | None = None,
    parallel: int = 32,
    inputs: Collection[str] | None = None,
) -> None:
    """Deliver a page of events, with their commits in flight together.

    The page is split by partition key (the incident): each incident's events are handled in page
    order, each waiting for the commit of the one before it, so that its handler sees it; while an
    incident waits, the other incidents' events are handled (up to `parallel` handlers at once), as
    Kafka's partitions would be. Each event's effects commit with its own tracking record, as in
    `deliver`, but without waiting for the other incidents' commits: the store's group commit
    writes them in one transaction. An event whose writes go to a stream another commit of the
    page is still writing (a service-wide stream, say) waits for that commit and is handled again,
    instead of conflicting with it. A handler failure, or a commit that conflicted or failed, falls
    back to `deliver` for that event (retries, then a dead letter), before the incident's next one.
    A page of one incident (at everyday rates, mostly a single event) has nothing to overlap: its
    events go through `deliver` one after another, without the tasks and locks of the above.

    A `PageSink` (a read model: nothing the handler decides rests on it) takes the page's events in
    a few transactions instead (`AT_ONCE` events each), each event with its tracking record; if a
    handler or a commit fails, the page goes the way above.

    `consumer` is the tracking name, or a function giving each event's (a Kafka fetch mixes the
    logs of several sources). `set_aside` gives, per event, where `deliver` keeps its dead letter
    before the store (Kafka: the DLQ topic, with the record's offsets). With `checkpoint`, the last
    event's checkpoint is saved once every event of the page is committed (a subscription on one
    log); Kafka commits offsets instead, and learns through `handled` which events are done: it is
    called with each event once its effects (or its dead letter) are in the store, or were before.

    `inputs`: the event types the handler acts on (None: all). Any other event is passed over: no
    handler, no tracking record (it would have no effects however often it came), `handled` at once.

    StoreUnavailable (and a conflict that outlasts `retry.conflict_retries`) stops that incident's
    events there; the other incidents go on as far as they can, every commit sent is waited for (so
    `handled` tells what committed), then the error is raised. Delivering the page again changes
    nothing for what did commit.
    """
    if not page:
        return
    name = consumer if callable(consumer) else _named(consumer)
    incidents: dict[str | None, list[Envelope]] = {}
    taken: list[Envelope] = []
    passed_over: list[Envelope] = []
    for env in page:
        if inputs is None or env.type in inputs:
            incidents.setdefault(env.partition_key, []).append(env)
            taken.append(env)
        else:
            passed_over.append(env)
    handlers = asyncio.Semaphore(parallel)
    writing: dict[str, list[tuple[Envelope, asyncio.Task[Committed]]]] = {}
    submitted: list[tuple[Envelope, asyncio.Task[Committed]]] = []
    settling: dict[asyncio.Task[Committed], asyncio.Lock] = {}
    settled: dict[asyncio.Task[Committed], BaseException | None] = {}
    turns: dict[str, asyncio.Lock] = {}

    def done(env: Envelope) -> None:
        if handled is not None:
            handled(env)

    for env in passed_over:
        done(env)

    if takes_pages(store) and taken and await _at_once(taken, name, handler, store):
        for env in taken:
            done(env)
        if checkpoint:
            last = page[-1]
            await store.commit([], tracking=Tracking(name(last), None, last.checkpoint))
        return

    async def alone(env: Envelope, *, failed: int) -> None:
        """`env` delivered by itself (`deliver`: retries, then a dead letter), then reported done."""
        try:
            await deliver(
                env,
                consumer=name(env),
                handler=handler,
                store=store,
                retry=retry,
                already_failed=failed,
                set_aside=set_aside(env) if set_aside is not None else None,
            )
        except DeadLettered as dead:
            log.error("%s dead-lettered %s: %s", name(env), env.id, dead.record.reason)
        done(env)

    async def settle(env: Envelope, task: asyncio.Task[Committed]) -> None:
        """Wait for `env`'s commit; if it conflicted or failed, deliver `env` again one by one now,
        before anything that waited for it. Once per commit, however many wait for it."""
        if (lock := settling.get(task)) is None:
            lock = settling[task] = asyncio.Lock()
        async with lock:
            if task not in settled:
                if not task.done():
                    await asyncio.wait([task])
                error = task.exception()
                try:
                    if error is None:
                        done(env)
                    elif isinstance(error, StoreUnavailable):
                        raise error
                    else:
                        await alone(env, failed=0 if isinstance(error, ConcurrencyError) else 1)
                except Exception as failure:
                    settled[task] = failure
                    raise
                settled[task] = None
                return
        if (outcome := settled[task]) is not None:
            raise outcome

    def submit(env: Envelope, items: list[Any]) -> tuple[Envelope, asyncio.Task[Committed]]:
        entry = (env, asyncio.create_task(store.commit(items, tracking=Tracking(name(env), env.id))))
        submitted.append(entry)
        for item in items:
            if isinstance(item, Write) and item.events:  # an assertion moves nothing: nobody waits on it
                writing.setdefault(item.stream, []).append(entry)
        return entry

    def contended(streams: set[str]) -> bool:
        return any(
            (s in turns and turns[s].locked()) or any(w[1] not in settled for w in writing.get(s, ()))
            for s in streams
        )

    async def handle(env: Envelope) -> tuple[Envelope, asyncio.Task[Committed]] | None:
        """Handle `env` and send its commit; None when it was delivered one by one instead.

        When its writes go to a stream another commit of the page is still writing, it takes its
        turn on that stream: it waits for those commits, runs again and sends its commit before the
        next event in line runs again. Each waiting event runs twice, not once per commit that lands
        before it."""
        try:
            async with handlers:
                items = await decide(handler, env)
            for _ in range(retry.conflict_retries):
                streams = {item.stream for item in items if isinstance(item, Write)}
                if not contended(streams):
                    return submit(env, items)
                async with AsyncExitStack() as held:
                    for stream in sorted(streams):  # one order for everyone: no two wait on each other
                        await held.enter_async_context(turns.setdefault(stream, asyncio.Lock()))
                    for stream in sorted(streams):
                        for earlier in list(writing.get(stream, ())):
                            if earlier[1] not in settled:
                                await settle(*earlier)
                    async with handlers:
                        items = await decide(handler, env)  # again, now that the streams moved on
                    if {item.stream for item in items if isinstance(item, Write)} <= streams:
                        return submit(env, items)
        except StoreUnavailable:
            raise
        except ConcurrencyError:  # the handler's own read met a moving stream: not a failure
            await alone(env, failed=0)
            return None
        except Exception:  # counted as the first attempt; `deliver` retries or sets it aside
            await alone(env, failed=1)
            return None
        return submit(env, items)  # the streams kept moving: the store decides, a conflict falls back

    async def incident(events: list[Envelope]) -> None:
        earlier: tuple[Envelope, asyncio.Task[Committed]] | None = None
        for env in events:
            if earlier is not None:
                await settle(*earlier)
                earlier = None
            sent = await handle(env)
            if sent is not None:
                earlier = sent
        if earlier is not None:
            await settle(*earlier)

    async def together() -> None:
        chains = [asyncio.create_task(incident(events)) for events in incidents.values()]
        try:
            outcomes = await asyncio.gather(*chains, return_exceptions=True)
        except BaseException:  # cancelled: a commit cut short may or may not land; redelivery dedups it
            for task in (*chains, *(task for _, task in submitted)):
                task.cancel()
            await asyncio.gather(*chains, *(task for _, task in submitted), return_exceptions=True)
            raise
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            # What was sent to the store is waited for, not abandoned: whatever commits is reported.
            await asyncio.gather(*(task for _, task in submitted), return_exceptions=True)
            for env, task in submitted:
                if task not in settled and task.exception() is None:
                    done(env)
            raise failures[0]

    if len(incidents) == 1:  # one incident (mostly one event): in order, nothing to overlap
        for env in next(iter(incidents.values())):
            await alone(env, failed=0)
    else:
        await together()
    if checkpoint:
        last = page[-1]
        await store.commit([], tracking=Tracking(name(last), None, last.checkpoint))

"""What every service's `create_app` shares: the lifespan that owns store and bus, the background
tasks (consumer, relay, workers) under supervision, health, metrics and problem+json errors."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

from shared.auth import Credentials, hash_secret
from shared.bus.base import Bus, Handler
from shared.clock import Clock
from shared.envelope import Envelope
from shared.events import TokenRevoked
from shared.logging import LogContext, service_var
from shared.settings import Settings
from shared.store import StoreUnavailable, Write
from shared.web import BodyLimit, Metrics, install_errors, install_health

log = logging.getLogger("lynchpin.service")

Worker = Callable[[], Awaitable[None]]


def credentials_from(settings: Settings) -> Credentials:
    """Every service derives the same credentials from the same settings: no calls between them."""
    secret = settings.secret
    if secret is None:
        secret = hash_secret("lynchpin-signing:" + (settings.admin_token or secrets.token_urlsafe(32)))
    return Credentials(
        secret=secret,
        admin_token_hash=hash_secret(settings.admin_token) if settings.admin_token else None,
        integration_key_hashes=frozenset(
            {hash_secret(settings.integration_key)} if settings.integration_key else ()
        ),
    )


@dataclass
class Wiring:
    """Everything a service's app runs. Built by each service's `create_app`."""

    name: str
    settings: Settings
    store: Any  # an EventStore, or analytics' read store
    clock: Clock
    bus: Bus | None = None
    sources: Sequence[str] = ()
    handler: Handler | None = None
    inputs: Collection[str] | None = None
    """The event types `handler` acts on (None: every type); the bus passes over the others. A
    TokenRevoked always reaches the consumer (`honouring_revocations`)."""
    workers: dict[str, Worker] = field(default_factory=dict)
    relay: bool = True
    credentials: Credentials | None = None
    overload_status: Callable[[Request], int] | None = None
    resources: list[AbstractAsyncContextManager[Any]] = field(default_factory=list)
    exclusive: frozenset[str] = frozenset()
    """Names of `workers` that run on one instance at a time: under the store's lock `<worker>:<service>`
    where the store has locks (PostgreSQL advisory locks), in every instance otherwise."""


async def supervise(name: str, work: Worker, *, pause: float = 1.0) -> None:
    """Run `work` forever; a crash is logged and the work restarted, never silently dropped."""
    while True:
        try:
            await work()
            return
        except asyncio.CancelledError:
            raise
        except StoreUnavailable as e:
            log.warning("%s: store unavailable (%s); restarting in %.1fs", name, e, pause)
        except Exception:
            log.exception("%s crashed; restarting in %.1fs", name, pause)
        await asyncio.sleep(pause)


async def exclusively(store: Any, lock: str, work: Worker, *, check: float = 2.0) -> None:
    """Run `work` only while this instance holds `store`'s lock `lock`; stop it when the lock is lost.

    The instances that do not hold it try again every `check` seconds. A store without locks runs `work`.
    """
    try_lock = getattr(store, "try_lock", None)
    if try_lock is None:
        await work()
        return
    while True:
        while not await try_lock(lock):
            await asyncio.sleep(check)
        log.info("%s: took the lock, running here", lock)
        task = asyncio.ensure_future(work())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=check)
                if not task.done() and not await try_lock(lock):
                    log.warning("%s: lost the lock, stopping here", lock)
                    break
            else:
                task.result()  # a crash goes to `supervise`
                return
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                await asyncio.shield(store.release_lock(lock))
            except StoreUnavailable as error:  # the session is gone, and its lock with it
                log.warning("%s: could not release the lock: %r", lock, error)


async def consume(w: Wiring, handler: Handler) -> None:
    """Follow the sources; on Kafka, make sure their topics exist first."""
    assert w.bus is not None
    if w.settings.kafka_bootstrap is not None:
        from shared.relay import ensure_topics

        await ensure_topics(
            w.settings.kafka_bootstrap,
            w.sources,
            w.settings.kafka_partitions,
            namespace=w.settings.kafka_namespace,
        )
    await w.bus.run(w.name, w.sources, handler, w.store, taken(w.inputs))


def taken(inputs: Collection[str] | None) -> set[str] | None:
    """The event types a consumer declaring `inputs` is handed (None: every type): those, and a
    TokenRevoked always (`honouring_revocations`)."""
    return None if inputs is None else {*inputs, TokenRevoked.__name__}


async def relay(w: Wiring) -> None:
    """Publish this service's store log to its Kafka topic (the store is the outbox)."""
    from shared.relay import ensure_topics, events_topic, make_producer, run_relay

    settings = w.settings
    assert settings.kafka_bootstrap is not None
    await ensure_topics(
        settings.kafka_bootstrap, [w.name], settings.kafka_partitions, namespace=settings.kafka_namespace
    )
    producer = make_producer(settings.kafka_bootstrap)
    await producer.start()
    try:
        await run_relay(w.store, producer, events_topic(w.name, settings.kafka_namespace))
    finally:
        await producer.stop()


TOKENS = "tokens"
"""The stream where intake records issued and revoked tokens, and other services the revocations."""


async def revoked_tokens(store: Any) -> set[str]:
    """The revoked token ids this service has recorded (a read store answers for itself)."""
    own = getattr(store, "revoked_tokens", None)
    if own is not None:
        return set(await own())
    return {e.event.token_id for e in await store.read(TOKENS) if isinstance(e.event, TokenRevoked)}


def honouring_revocations(handler: Handler, credentials: Credentials, store: Any) -> Handler:
    """Wrap a consumer's handler: a TokenRevoked from intake takes effect here at once, and is
    recorded in this service's own store so that it still holds after a restart."""

    async def handle(env: Envelope) -> Sequence[Any]:
        items = list(await handler(env))
        if isinstance(env.event, TokenRevoked):
            credentials.revoked.add(env.event.token_id)
            if hasattr(store, "read_all"):  # an event store; a read store keeps the envelope itself
                items.append(Write(TOKENS, [env.event], None, causation_id=env.id))
        return items

    return handle


def build_app(w: Wiring, *, title: str, description: str) -> FastAPI:
    metrics = Metrics(w.name)
    credentials = w.credentials if w.credentials is not None else credentials_from(w.settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(w.store)
            if w.bus is not None:
                await stack.enter_async_context(w.bus)
            for resource in w.resources:
                await stack.enter_async_context(resource)
            try:
                credentials.revoked.update(await revoked_tokens(w.store))
            except StoreUnavailable as e:
                log.warning("%s: cannot load revoked tokens yet: %s", w.name, e)
            tasks: list[asyncio.Task[None]] = []
            bound = service_var.set(w.name)  # the tasks below copy it: their logs name this service
            if w.bus is not None and w.handler is not None and w.sources:
                handler = honouring_revocations(w.handler, credentials, w.store)
                tasks.append(
                    asyncio.create_task(supervise(f"{w.name}.consumer", lambda: consume(w, handler)))
                )
            if w.relay and w.settings.kafka_bootstrap is not None:
                tasks.append(asyncio.create_task(supervise(f"{w.name}.relay", lambda: relay(w))))
            for name, worker in w.workers.items():
                if name in w.exclusive:
                    worker = functools.partial(exclusively, w.store, f"{name}:{w.name}", worker)
                tasks.append(asyncio.create_task(supervise(f"{w.name}.{name}", worker)))
            log.info("%s started (%s mode)", w.name, w.settings.mode())
            service_var.reset(bound)
            try:
                yield
            finally:
                bound = service_var.set(w.name)
                log.info("%s stopping", w.name)
                service_var.reset(bound)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.credentials = credentials
    app.state.clock = w.clock
    app.state.store = w.store
    app.state.wiring = w
    install_errors(app, overload_status=w.overload_status)
    metrics.middleware(app)
    app.add_middleware(BodyLimit, limit=w.settings.max_body_bytes, read_timeout=w.settings.body_read_timeout)
    app.add_middleware(LogContext, service=w.name)
    install_health(app, metrics, w.store.ping)
    app.state.metrics = metrics
    return app

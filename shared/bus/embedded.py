"""The embedded bus: a checkpointed catch-up subscription on each producing service's store log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self

from shared.bus.base import Handler, Sink, tracking_name
from shared.consumer import RetryPolicy, deliver_page
from shared.store import ConcurrencyError, EventStore, StoreUnavailable

log = logging.getLogger("lynchpin.bus")


class EmbeddedBus:
    """Reads the sources' stores directly. `sources` maps a service name to its store: opened by
    its owning service in the same process, or by this bus when `owns_sources` (another process's
    SQLite file, say)."""

    def __init__(
        self,
        sources: Mapping[str, EventStore],
        *,
        owns_sources: bool = False,
        retry: RetryPolicy | None = None,
        page: int = 500,
        poll: float = 0.5,
    ) -> None:
        self.sources = dict(sources)
        self.owns_sources = owns_sources
        self.retry = retry if retry is not None else RetryPolicy()
        self.page = page
        self.poll = poll
        self._lag: dict[str, int] = {}
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        if self.owns_sources:
            for store in self.sources.values():
                await self._stack.enter_async_context(store)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    def lag(self) -> dict[str, int]:
        return dict(self._lag)

    async def run(
        self,
        consumer: str,
        sources: Sequence[str],
        handler: Handler,
        store: Sink,
        inputs: Collection[str] | None = None,
    ) -> None:
        async with asyncio.TaskGroup() as tasks:
            for source in sources:
                tasks.create_task(self._follow(consumer, source, handler, store, inputs))

    async def _follow(
        self, consumer: str, source: str, handler: Handler, store: Sink, inputs: Collection[str] | None
    ) -> None:
        name = tracking_name(consumer, source)
        log_store = self.sources[source]
        while True:
            try:
                at = await store.checkpoint(name)
                while True:
                    page = await log_store.read_all(after=at, limit=self.page)
                    self._lag[source] = len(page)
                    if not page:
                        await log_store.wait_for_append(self.poll, after=at)
                        continue
                    await deliver_page(
                        page, consumer=name, handler=handler, store=store, retry=self.retry, inputs=inputs
                    )
                    at = page[-1].checkpoint
                    self._lag[source] = 0
            except (StoreUnavailable, ConcurrencyError) as e:  # not the event's fault: retry, never crash
                log.warning("%s: cannot commit now, retrying: %r", name, e)
                await asyncio.sleep(self.poll)

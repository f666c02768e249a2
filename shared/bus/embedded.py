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
from shared.store import ConcurrencyError, EventStore, StoreUnavailable, Tracking

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
        checkpoint_every: float = 1.0,
        quiet: float = 0.1,
        linger: float = 0.0,
    ) -> None:
        self.sources = dict(sources)
        self.owns_sources = owns_sources
        self.retry = retry if retry is not None else RetryPolicy()
        self.page = page
        self.poll = poll
        self.checkpoint_every = checkpoint_every
        """While events keep coming, a follower saves its checkpoint at most this often (seconds)."""
        self.quiet = quiet
        """...and once its source's log has had nothing new for this long."""
        self.linger = linger
        """After each wait for its source's log (woken by an append, or at the end of the wait), a
        follower lets this long pass before it reads: for a consumer off the alert's path
        (analytics), fuller pages and fewer transactions."""
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
        """Deliver `source`'s log from the consumer's checkpoint on, page by page.

        The checkpoint is saved once the log goes quiet, and at most every `checkpoint_every`
        seconds while it does not, rather than after every page: saving it is a commit of its own,
        and pages are a few events each at everyday rates. Every event a consumer takes commits with
        its own tracking record, so what is delivered again after a restart changes nothing."""
        name = tracking_name(consumer, source)
        log_store = self.sources[source]
        clock = asyncio.get_running_loop().time
        while True:
            try:
                at = saved = await store.checkpoint(name)
                due = clock() + self.checkpoint_every
                quiet = False
                while True:
                    page = await log_store.read_all(after=at, limit=self.page)
                    self._lag[source] = len(page)
                    if page:
                        await deliver_page(
                            page,
                            consumer=name,
                            handler=handler,
                            store=store,
                            retry=self.retry,
                            inputs=inputs,
                            checkpoint=False,
                        )
                        at = page[-1].checkpoint
                        self._lag[source] = 0
                    went_quiet, quiet = quiet and not page, not page  # two empty reads in a row
                    if at != saved and (went_quiet or (page and clock() >= due)):
                        await store.commit([], tracking=Tracking(name, None, at))
                        saved, due = at, clock() + self.checkpoint_every
                    if not page:
                        await log_store.wait_for_append(self.poll if at == saved else self.quiet, after=at)
                        if self.linger:
                            await asyncio.sleep(self.linger)
            except (StoreUnavailable, ConcurrencyError) as e:  # not the event's fault: retry, never crash
                log.warning("%s: cannot commit now, retrying: %r", name, e)
                await asyncio.sleep(self.poll)

"""An embedded follower saves its checkpoint once its source goes quiet, and at most every
`checkpoint_every` seconds while events keep coming; not after every page."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.bus.embedded import EmbeddedBus
from shared.envelope import Envelope
from shared.events import IncidentAcknowledged
from shared.store import START, Tracking, Write
from shared.store.memory import MemoryStore

T = datetime(2026, 3, 2, 10, tzinfo=UTC)


class CountingSink(MemoryStore):
    """The consumer's store, noting every checkpoint it is asked to save."""

    def __init__(self) -> None:
        super().__init__(source="triage")
        self.saved: list[tuple[int, int]] = []

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Any:
        if tracking is not None and tracking.checkpoint is not None:
            self.saved.append(tracking.checkpoint)
        return await super().commit(writes, tracking=tracking)


async def publish(source: MemoryStore, n: int) -> list[Envelope]:
    event = IncidentAcknowledged(incident_id=f"i{n}", by="ana", occurred_at=T)
    return list((await source.commit([Write(f"incident-i{n}", [event], None)])).envelopes)


async def until(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def following(bus: EmbeddedBus, sink: CountingSink, handled: list[str]) -> AsyncIterator[None]:
    """`bus` delivering intake's log to a handler that notes what it was given, into `sink`."""

    async def handler(env: Envelope) -> list[Write]:
        handled.append(env.id)
        return []

    async with bus:
        follower = asyncio.create_task(bus.run("triage", ["intake"], handler, sink))
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


async def test_under_load_the_checkpoint_is_saved_at_most_every_checkpoint_every() -> None:
    source, sink = MemoryStore(source="intake"), CountingSink()
    handled: list[str] = []
    bus = EmbeddedBus({"intake": source}, poll=0.05, checkpoint_every=0.3, quiet=60)  # never quiet
    async with source, sink, following(bus, sink, handled):
        began = asyncio.get_running_loop().time()
        sent: list[Envelope] = []
        for n in range(60):  # a page or two every 10 ms: 60 pages, give or take
            sent += await publish(source, n)
            await asyncio.sleep(0.01)
        await until(lambda: len(handled) == 60)
        took = asyncio.get_running_loop().time() - began
    assert 1 <= len(sink.saved) <= took / 0.3 + 1, (sink.saved, took)
    assert sink.saved == sorted(sink.saved) and all(START < c <= sent[-1].checkpoint for c in sink.saved)
    assert handled == [e.id for e in sent]  # each once, in order


async def test_the_checkpoint_is_saved_once_the_source_goes_quiet() -> None:
    source, sink = MemoryStore(source="intake"), CountingSink()
    handled: list[str] = []
    bus = EmbeddedBus({"intake": source}, poll=0.05, checkpoint_every=60, quiet=0.1)  # never by time
    async with source, sink, following(bus, sink, handled):
        sent = [e for n in range(60) for e in await publish(source, n)]
        await until(lambda: len(handled) == 60)
        await until(lambda: bool(sink.saved))
        await asyncio.sleep(0.3)  # quiet for longer: nothing more to save
        assert await sink.checkpoint("triage<-intake") == sent[-1].checkpoint
    assert sink.saved == [sent[-1].checkpoint]
    assert handled == [e.id for e in sent]


async def test_a_follower_restarting_from_an_older_checkpoint_changes_nothing() -> None:
    """What it delivers again was handled before: its tracking records make it a duplicate."""
    source, sink = MemoryStore(source="intake"), CountingSink()
    handled: list[str] = []

    async def handler(env: Envelope) -> list[Write]:
        handled.append(env.id)
        return [Write(f"triage-{env.id}", [IncidentAcknowledged(incident_id="x", by="t", occurred_at=T)], 0)]

    async with source, sink:
        sent = [e for n in range(5) for e in await publish(source, n)]
        for expected in (5, 10):  # the second time from START: nothing saved a checkpoint
            bus = EmbeddedBus({"intake": source}, poll=0.05, checkpoint_every=60, quiet=60)
            async with bus:
                follower = asyncio.create_task(bus.run("triage", ["intake"], handler, sink))
                await until(lambda n=expected: len(handled) >= n)
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
        assert sink.saved == []
        written = [e async for e in _all(sink)]
    assert handled == [e.id for e in sent] * 2  # handled again, but:
    assert len(written) == 5  # its effects committed once


async def _all(store: MemoryStore) -> Any:
    at = START
    while page := await store.read_all(after=at, limit=100):
        for env in page:
            yield env
        at = page[-1].checkpoint


class CountingPages(MemoryStore):
    """A source's store noting how many events each non-empty read handed over."""

    def __init__(self) -> None:
        super().__init__(source="intake")
        self.pages: list[int] = []

    async def read_all(self, after: tuple[int, int] = START, limit: int = 1000) -> list[Envelope]:
        page = await super().read_all(after=after, limit=limit)
        if page:
            self.pages.append(len(page))
        return page


@pytest.mark.parametrize("linger", [0.0, 0.2])
async def test_a_lingering_follower_reads_what_came_meanwhile_as_one_page(linger: float) -> None:
    """Woken by an append, a follower with `linger` waits before reading: a burst arrives as one page
    (without, the first event of the burst is read on its own)."""
    source, sink = CountingPages(), CountingSink()
    handled: list[str] = []
    bus = EmbeddedBus({"intake": source}, poll=0.05, linger=linger)
    async with source, sink, following(bus, sink, handled):
        await asyncio.sleep(0.1)  # the follower found nothing and waits
        sent = await publish(source, 0)
        await asyncio.sleep(0.05)
        for n in range(1, 5):
            sent += await publish(source, n)
        await until(lambda: len(handled) == 5)
    assert sum(source.pages) == 5
    if linger:
        assert source.pages == [5]
    else:
        assert source.pages[0] == 1
    assert handled == [e.id for e in sent]

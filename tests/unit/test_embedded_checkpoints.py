"""An embedded follower saves its checkpoint once its source goes quiet, and at most every
`checkpoint_every` seconds while events keep coming; not after every page."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

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


async def test_checkpoints_are_saved_when_quiet_and_now_and_then_under_load() -> None:
    source, sink = MemoryStore(source="intake"), CountingSink()
    handled: list[str] = []

    async def handler(env: Envelope) -> list[Write]:
        handled.append(env.id)
        return []

    bus = EmbeddedBus({"intake": source}, poll=0.05, checkpoint_every=0.3, quiet=0.1)
    async with source, sink, bus:
        follower = asyncio.create_task(bus.run("triage", ["intake"], handler, sink))
        try:
            sent: list[Envelope] = []
            for n in range(60):  # a page or two every 10 ms for 0.6 s: never quiet for 0.1 s
                sent += await publish(source, n)
                await asyncio.sleep(0.01)
            await until(lambda: len(handled) == 60)
            under_load = list(sink.saved)
            await until(lambda: bool(sink.saved) and sink.saved[-1] == sent[-1].checkpoint)
            assert await sink.checkpoint("triage<-intake") == sent[-1].checkpoint
            saved_when_quiet = len(sink.saved) - len(under_load)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    assert 1 <= len(under_load) <= 4, under_load  # ~0.6 s of pages, at most one save per 0.3 s
    assert saved_when_quiet == 1
    assert under_load == sorted(under_load) and all(c > START for c in under_load)
    assert handled == [e.id for e in sent]  # each once, in order


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

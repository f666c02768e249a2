"""Aggregates: loads of one stream that overlap (a consumer handles incidents side by side) each catch
up from the cached state instead of folding the stream from its start, and the cache keeps the newest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from shared.aggregates import Aggregates
from shared.envelope import Envelope
from shared.events import Event, IncidentAcknowledged
from shared.store import Write
from shared.store.memory import MemoryStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__(source="triage")
        self.reads: list[int] = []

    async def read(self, stream: str, after_version: int = 0) -> list[Envelope]:
        self.reads.append(after_version)
        await asyncio.sleep(0)  # let the other load start meanwhile
        return await super().read(stream, after_version)


def acks(n: int) -> list[Write]:
    return [
        Write(
            "s", [IncidentAcknowledged(incident_id="i", by=f"u{k}", occurred_at=T0) for k in range(n)], None
        )
    ]


def count(n: int, event: Event) -> int:
    return n + 1


async def test_overlapping_loads_catch_up_from_the_cache_and_keep_the_newest() -> None:
    store = CountingStore()
    await store.commit(acks(3))
    aggregates = Aggregates(store, lambda: 0, count)
    assert await aggregates.load("s") == (3, 3)
    await store.commit(acks(2))
    store.reads.clear()
    first, second = await asyncio.gather(aggregates.load("s"), aggregates.load("s"))
    assert first == second == (5, 5)
    assert store.reads == [3, 3], "an overlapping load folded the stream from its start"
    store.reads.clear()
    assert await aggregates.load("s") == (5, 5) and store.reads == [5]

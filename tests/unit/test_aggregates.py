"""Aggregates: loads of one stream that overlap (a consumer handles incidents side by side) each catch
up from the cached state instead of folding the stream from its start, and the cache keeps the newest;
in a decision, loads take what this process committed and the decision's commit asserts them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from shared.aggregates import Aggregates
from shared.consumer import deliver
from shared.envelope import Envelope
from shared.events import Event, IncidentAcknowledged
from shared.store import Write
from shared.store.memory import MemoryStore
from shared.store.sqlite import SqliteStore

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


class ReadCountingSqlite(SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path, source="triage")
        self.reads = 0

    async def read(self, stream: str, after_version: int = 0) -> list[Envelope]:
        self.reads += 1
        return await super().read(stream, after_version)


async def test_a_decision_rests_on_own_commits_and_is_made_again_when_another_process_moved_them(
    tmp_path: Path,
) -> None:
    """A consumer marks a stream's third event. Its loads in a decision take what this process
    committed instead of reading the store; when another process appended meanwhile, the decision it
    made on the older state (nothing to mark) must not commit: it is made again from the store."""
    here = ReadCountingSqlite(tmp_path / "triage.db")
    async with here, SqliteStore(tmp_path / "triage.db", source="triage") as elsewhere:
        aggregates = Aggregates(here, lambda: 0, count)

        async def handler(env: Envelope) -> list[Write]:
            n, version = await aggregates.load("s")
            if env.event.by == "add":
                return [Write("s", acks(1)[0].events, version)]
            return [Write("marks", acks(1)[0].events, None)] if n == 3 else []

        async def handle(by: str) -> None:
            event = IncidentAcknowledged(incident_id="i", by=by, occurred_at=T0)
            env = Envelope(
                id=str(uuid.uuid4()),
                stream="x",
                version=1,
                position=1,
                event=event,
                recorded_at=T0,
                source="intake",
                correlation_id="i",
            )
            await deliver(env, consumer="test", handler=handler, store=here)

        await handle("add")  # the first load reads (nothing cached)
        await handle("add")
        assert here.reads == 1, "the second decision read what this process had just committed"
        await handle("mark?")  # 2 events: nothing to mark, committed as asserted
        await elsewhere.commit(acks(1)[0:1])  # another process: the third event
        await handle("mark?")
        assert len(await here.read("marks")) == 1, "a decision on the stale state (2 events) was kept"
        assert await aggregates.load("s") == (3, 3)

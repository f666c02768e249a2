"""Triage's workers share the pages they read of triage's log: each still gets exactly what the
store would give it (or the start of it), however they interleave and however far behind one is."""

from __future__ import annotations

from datetime import UTC, datetime

from services.triage.ownlog import OwnLog
from shared.events import StormDetected
from shared.store import START, Write
from shared.store.memory import MemoryStore

NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)


def event(n: int) -> StormDetected:
    return StormDetected(
        incident_id=f"i{n}",
        service="s",
        activity="alert",
        count=n,
        window_minutes=1,
        proposed=False,
        occurred_at=NOW,
    )


async def test_followers_read_what_the_store_gives_them() -> None:
    store = MemoryStore(source="triage")
    log = OwnLog(store, keep=6)
    async with store:
        at = {"a": START, "b": START}
        seen: dict[str, list[str]] = {"a": [], "b": []}
        for n in range(20):
            await store.commit([Write(f"s-{n % 3}", [event(n)], None)])
            for name in ("a", "b") if n % 2 else ("b",):  # `a` falls behind, then catches up
                limit = 1 + n % 4
                page = await log.read_all(after=at[name], limit=limit)
                direct = await store.read_all(after=at[name], limit=limit)
                assert [e.id for e in page] == [e.id for e in direct][: len(page)]
                assert bool(page) == bool(direct)
                if page:
                    at[name] = page[-1].checkpoint
                    seen[name] += [e.id for e in page]
        for name in at:
            while page := await log.read_all(after=at[name], limit=5):
                at[name] = page[-1].checkpoint
                seen[name] += [e.id for e in page]
        everything = [e.id for e in await store.read_all(after=START, limit=100)]
        assert seen == {"a": everything, "b": everything}

"""One reader of a service's own log hands every event, once and in the log's order, to each view
kept from it, however the appends and the catch-ups interleave."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.envelope import Envelope
from shared.events import StormDetected
from shared.logviews import LogViews
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


async def test_each_view_gets_every_event_once_in_order() -> None:
    store = MemoryStore(source="triage")
    views = LogViews(store, page=4)
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def view(name: str) -> None:
        views.add(lambda env: seen[name].append(env.id))

    view("a")
    view("b")
    async with store:
        for n in range(23):
            await store.commit([Write(f"s-{n % 3}", [event(n)], None)])
            if n % 5 == 0:
                await views.catch_up()
        await views.catch_up()
        await views.catch_up()  # nothing new: nothing folded twice
        everything = [e.id for e in await store.read_all(after=START, limit=100)]
        assert len(everything) == 23
        assert seen == {"a": everything, "b": everything}
        assert views.at == (await store.read_all(after=START, limit=100))[-1].checkpoint


async def test_a_view_added_after_the_log_was_read_is_refused() -> None:
    store = MemoryStore(source="triage")
    views = LogViews(store)
    folded: list[Envelope] = []
    views.add(folded.append)
    async with store:
        await store.commit([Write("s", [event(1)], None)])
        await views.catch_up()
        with pytest.raises(RuntimeError, match="miss"):
            views.add(folded.append)
        assert len(folded) == 1

"""Rebuild analytics' read models from the start of every service's log.

The replay folds every event in memory (the same pure `project` and `timeline_entry` as live
processing), then writes the result into fresh tables in large transactions and swaps the file in.
Each field of a view is written by one service, so reading the logs one after another reaches
the state that live processing reached while they interleaved.
Run it with analytics stopped: `make rebuild` or `lynchpin rebuild`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

from services.analytics.policy import analytics_policy
from services.analytics.projections import INPUTS, Fact, IncidentView, TimelineEntry, project, timeline_entry
from services.analytics.readstore import ReadStore, utc
from shared.bus.base import tracking_name
from shared.envelope import Checkpoint
from shared.settings import Settings
from shared.store import START, EventStore, open_store, sqlite_path

SOURCES = ("intake", "triage", "comms", "analytics")
"""Every log analytics folds: the three services', and its own (customer feedback)."""


def read_store_path(settings: Settings) -> str:
    url = settings.analytics_store_url or f"sqlite://{(settings.data_dir / 'analytics.db').absolute()}"
    return sqlite_path(url)


def events_url(settings: Settings) -> str:
    """Analytics' own event store (customer feedback): beside the others' on PostgreSQL, else a file."""
    if settings.store_url is not None:
        return settings.store_url
    return f"sqlite://{(settings.data_dir / 'analytics-events.db').absolute()}"


@dataclass
class Replayed:
    views: dict[str, IncidentView] = field(default_factory=dict)
    entries: list[TimelineEntry] = field(default_factory=list)
    handled: dict[str, list[str]] = field(default_factory=dict)
    """Event ids handled, per consumer name (one per source)."""
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    freshness: dict[str, tuple[str, str]] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)

    def fold(self, fact: Fact) -> None:
        if fact.incident_id is not None:
            after = project(self.views.get(fact.incident_id), fact)
            if after is not None:
                self.views[fact.incident_id] = after
            entry = timeline_entry(fact)
            if entry is not None:
                self.entries.append(entry)


async def replay(
    sources: Mapping[str, EventStore], *, consumer: str = "analytics", page: int = 5000
) -> Replayed:
    """Fold every source's whole log in memory, page by page. The next page is asked for before
    the current one is folded: a store in another process (PostgreSQL) reads it meanwhile."""
    state = Replayed()
    for source, store in sources.items():
        name = tracking_name(consumer, source)
        at: Checkpoint = START
        count = 0
        handled = state.handled.setdefault(name, [])
        ahead = asyncio.ensure_future(store.read_all(after=at, limit=page))
        try:
            while batch := await ahead:
                last = batch[-1]
                at = last.checkpoint
                ahead = asyncio.ensure_future(store.read_all(after=at, limit=page))
                await asyncio.sleep(0)  # let it send its query before the fold holds the loop
                folded = None
                for env in batch:
                    if env.type in INPUTS:  # as live processing passes over the others
                        state.fold(Fact.of(env))
                        handled.append(env.id)
                        folded = env
                count += len(batch)
                if folded is not None:
                    state.freshness[source] = (utc(folded.recorded_at), utc(folded.occurred_at))
        finally:
            ahead.cancel()
        if count:
            state.checkpoints[name] = at
        state.events[source] = count
    return state


async def write(state: Replayed, reads: ReadStore) -> None:
    """Every table's rows in its primary key's order (see `ReadStore.load`)."""
    await reads.load(
        sorted(state.views.values(), key=attrgetter("id")),
        sorted(state.entries, key=attrgetter("event_id")),
        ((name, i) for name in sorted(state.handled) for i in sorted(state.handled[name])),
        state.checkpoints,
        state.freshness,
    )


@dataclass(frozen=True)
class Report:
    events: dict[str, int]
    incidents: int
    seconds: float
    path: str

    def __str__(self) -> str:
        total = sum(self.events.values())
        rate = total / self.seconds if self.seconds else 0.0
        per = ", ".join(f"{k} {v}" for k, v in self.events.items())
        return (
            f"rebuilt {self.path}: {self.incidents} incidents from {total} events ({per}) "
            f"in {self.seconds:.2f}s ({rate:,.0f} events/s)"
        )


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused meanwhile. A replay allocates several objects per event
    and makes no cycles; the fold also keeps millions of them alive (views, timeline rows), and
    each of the collector's passes over them all cost more than the fold itself."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


async def rebuild(settings: Settings) -> Report:
    """Replay every log into a fresh file beside the read store, then swap it in."""
    with collector_paused():
        return await _rebuild(settings)


async def _rebuild(settings: Settings) -> Report:
    started = time.perf_counter()
    path = read_store_path(settings)
    async with AsyncExitStack() as stack:
        stores: dict[str, EventStore] = {}
        for source in SOURCES:
            url = events_url(settings) if source == "analytics" else settings.store_url_for(source)
            if url.startswith("sqlite:") and not Path(sqlite_path(url)).exists():
                continue  # that service never wrote anything here
            stores[source] = await stack.enter_async_context(open_store(url, source=source))
        state = await replay(stores)
    if path == ":memory:":
        raise ValueError("the read store is in memory: there is nothing to rebuild on disk")
    fresh = f"{path}.rebuild"
    for leftover in (fresh, f"{fresh}-wal", f"{fresh}-shm"):
        Path(leftover).unlink(missing_ok=True)
    async with ReadStore(fresh, policy=analytics_policy(settings)) as reads:
        await write(state, reads)
    for old in (f"{path}-wal", f"{path}-shm"):
        Path(old).unlink(missing_ok=True)
    os.replace(fresh, path)
    return Report(state.events, len(state.views), time.perf_counter() - started, path)

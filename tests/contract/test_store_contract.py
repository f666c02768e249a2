"""One contract, every event store backend: memory, SQLite, PostgreSQL (and KurrentDB when a URL is given)."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.envelope import Checkpoint, Envelope
from shared.events import IncidentAcknowledged, IncidentResolved
from shared.store import START, ConcurrencyError, EventStore, Tracking, Write, append, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param(
        "kurrentdb",
        marks=pytest.mark.skipif(
            not os.environ.get("LYNCHPIN_TEST_KURRENTDB_URL"),
            reason="no KurrentDB server can run here; set LYNCHPIN_TEST_KURRENTDB_URL to run",
        ),
    ),
]


def ack(incident: str, n: int = 0) -> IncidentAcknowledged:
    return IncidentAcknowledged(incident_id=incident, by=f"user-{n}", occurred_at=T0)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    match request.param:
        case "memory":
            url = "memory://"
        case "sqlite":
            url = f"sqlite://{tmp_path / 'events.db'}"
        case "postgres":
            url = request.getfixturevalue("pg_dsn")
        case _:  # a fresh namespace per test on the shared server
            base = os.environ["LYNCHPIN_TEST_KURRENTDB_URL"]
            url = f"{base}{'&' if '?' in base else '?'}LynchpinNamespace=t{uuid.uuid4().hex[:12]}"
    async with open_store(url, source="intake") as opened:
        yield opened


async def test_appended_events_read_back_in_order_with_versions(store: EventStore) -> None:
    written = await append(store, "incident-1", [ack("1", 1), ack("1", 2)], expected_version=0)
    read = await store.read("incident-1")
    assert [e.version for e in read] == [1, 2]
    assert [e.event for e in read] == [ack("1", 1), ack("1", 2)]
    assert [e.id for e in read] == [e.id for e in written]
    assert read[0].source == "intake"
    assert read[0].occurred_at == T0
    assert [e.version for e in await store.read("incident-1", after_version=1)] == [2]


async def test_unknown_stream_reads_empty(store: EventStore) -> None:
    assert await store.read("incident-none") == []


async def test_wrong_expected_version_is_a_typed_error_and_writes_nothing(store: EventStore) -> None:
    await append(store, "incident-1", [ack("1")], expected_version=0)
    with pytest.raises(ConcurrencyError) as err:
        await store.commit(
            [Write("incident-2", [ack("2")], 0), Write("incident-1", [ack("1")], expected_version=0)]
        )
    assert (err.value.expected, err.value.actual) == (0, 1)
    assert await store.read("incident-2") == []
    assert len(await store.read_all()) == 1


async def test_an_empty_write_asserts_its_streams_version(store: EventStore) -> None:
    await append(store, "incident-1", [ack("1")], expected_version=0)
    done = await store.commit([Write("incident-1", [], 1), Write("incident-2", [ack("2")], 0)])
    assert [e.stream for e in done.envelopes] == ["incident-2"]
    with pytest.raises(ConcurrencyError) as err:
        await store.commit([Write("incident-1", [], 0), Write("incident-3", [ack("3")], 0)])
    assert (err.value.stream, err.value.expected, err.value.actual) == ("incident-1", 0, 1)
    assert await store.read("incident-3") == []


async def test_none_expected_version_appends_anywhere(store: EventStore) -> None:
    await append(store, "s", [ack("1")], expected_version=None)
    await append(store, "s", [ack("1")], expected_version=None)
    assert [e.version for e in await store.read("s")] == [1, 2]


async def test_read_all_is_the_global_order_and_resumes_after_a_checkpoint(store: EventStore) -> None:
    await append(store, "a", [ack("a", 1)], expected_version=0)
    await append(store, "b", [ack("b", 1)], expected_version=0)
    await append(store, "a", [ack("a", 2)], expected_version=1)
    log = await store.read_all()
    assert [(e.stream, e.version) for e in log] == [("a", 1), ("b", 1), ("a", 2)]
    assert [e.position for e in log] == sorted(e.position for e in log)
    rest = await store.read_all(after=log[0].checkpoint)
    assert [e.id for e in rest] == [e.id for e in log[1:]]
    assert [e.id for e in await store.read_all(after=log[0].checkpoint, limit=1)] == [log[1].id]


async def test_a_tracked_event_is_handled_once_and_its_checkpoint_kept(store: EventStore) -> None:
    tracking = Tracking("triage<-intake", "evt-1", checkpoint=(0, 7))
    first = await store.commit([Write("triage-1", [ack("1")], 0)], tracking=tracking)
    again = await store.commit([Write("triage-1", [ack("1")], None)], tracking=tracking)
    assert not first.duplicate and len(first.envelopes) == 1
    assert again.duplicate and again.envelopes == []
    assert len(await store.read("triage-1")) == 1
    assert await store.checkpoint("triage<-intake") == (0, 7)
    assert await store.checkpoint("someone-else") == START


async def test_tracking_without_writes_still_records(store: EventStore) -> None:
    await store.commit([], tracking=Tracking("c", "e", checkpoint=(0, 3)))
    assert (await store.commit([], tracking=Tracking("c", "e"))).duplicate
    assert await store.checkpoint("c") == (0, 3)


async def test_concurrent_appends_at_one_version_have_exactly_one_winner(store: EventStore) -> None:
    async def attempt(n: int) -> bool:
        try:
            await append(store, "alert-k", [ack("k", n)], expected_version=0)
        except ConcurrencyError:
            return False
        return True

    results = await asyncio.gather(*(attempt(n) for n in range(20)))
    assert results.count(True) == 1
    assert len(await store.read("alert-k")) == 1


async def test_envelope_round_trips_as_a_cloudevent(store: EventStore) -> None:
    [env] = await append(
        store, "incident-9", [IncidentResolved(incident_id="9", by="ana", reason="fixed", occurred_at=T0)], 0
    )
    back = Envelope.from_json(env.to_json())
    assert back.event == env.event
    assert (back.id, back.stream, back.version, back.position) == (env.id, env.stream, 1, env.position)
    assert back.to_cloudevent()["type"] == "dev.lynchpin.IncidentResolved"


async def test_wait_for_append_wakes_a_follower(store: EventStore) -> None:
    waiter = asyncio.create_task(store.wait_for_append(timeout=10))
    await asyncio.sleep(0.05)
    await append(store, "s", [ack("1")], expected_version=0)
    await asyncio.wait_for(waiter, timeout=5)


async def test_concurrent_writers_and_followers_that_see_every_event_exactly_once(
    store: EventStore,
) -> None:
    """Several followers in one process, reading pages of different sizes (a store may hand one what
    another just read): each sees the whole log once, in its order."""
    writers, per_writer = 8, 40
    done = asyncio.Event()

    async def writer(w: int) -> None:
        rng = random.Random(w)
        for n in range(per_writer):
            stream = f"incident-{w}-{rng.randrange(3)}"
            await append(store, stream, [ack(stream, n)], expected_version=None)
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    async def follower(limit: int) -> list[Envelope]:
        seen: list[Envelope] = []
        at: Checkpoint = START
        while True:
            page = await store.read_all(after=at, limit=limit)
            seen.extend(page)
            if page:
                at = page[-1].checkpoint
            elif done.is_set():
                page = await store.read_all(after=at)
                if not page:
                    return seen
                seen.extend(page)
                at = page[-1].checkpoint
            else:
                await store.wait_for_append(timeout=0.05)

    follows = [asyncio.create_task(follower(limit)) for limit in (50, 7, 1000, 1)]
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    everyone = await asyncio.wait_for(asyncio.gather(*follows), timeout=60)

    committed = await store.read_all(limit=10_000)
    assert len(committed) == writers * per_writer
    for seen in everyone:
        assert [e.id for e in seen] == [e.id for e in committed]
    by_stream: dict[str, list[int]] = {}
    for e in everyone[0]:
        by_stream.setdefault(e.stream, []).append(e.version)
    for versions in by_stream.values():
        assert versions == list(range(1, len(versions) + 1))


async def test_a_checkpoint_alone_can_be_saved_and_moved(store: EventStore) -> None:
    await store.commit([], tracking=Tracking("relay", None, checkpoint=(0, 5)))
    await store.commit([], tracking=Tracking("relay", None, checkpoint=(0, 9)))
    assert await store.checkpoint("relay") == (0, 9)


async def test_waiting_behind_the_log_returns_at_once(store: EventStore) -> None:
    [env] = await append(store, "s", [ack("1")], expected_version=0)
    await asyncio.wait_for(store.wait_for_append(timeout=30, after=START), timeout=2)
    before = asyncio.get_running_loop().time()
    await store.wait_for_append(timeout=0.2, after=env.checkpoint)
    assert asyncio.get_running_loop().time() - before >= 0.15  # caught up: it waits for the timeout


async def test_a_burst_of_commits_is_decided_request_by_request(store: EventStore) -> None:
    """Commits sent together (a group commit may write them in one transaction) keep each request's
    own outcome, whatever order the store takes them in: a conflict fails only its request, a
    repeated input event commits once, a request writing two streams is all or nothing."""
    await append(store, "incident-a", [ack("a")], expected_version=0)
    burst = [
        store.commit([Write("incident-a", [ack("a", 1)], 1)]),
        store.commit([Write("incident-a", [ack("a", 2)], 1)]),
        store.commit([Write("incident-b", [ack("b", 1)], 0), Write("incident-a", [ack("a", 3)], 1)]),
        store.commit([Write("incident-c", [ack("c", 1), ack("c", 2)], 0)], tracking=Tracking("t", "e1")),
        store.commit([Write("incident-c", [ack("c", 3)], None)], tracking=Tracking("t", "e1")),
        store.commit([Write("incident-d", [ack("d", 1)], None)], tracking=Tracking("t", "e2", (0, 7))),
    ]
    results = await asyncio.gather(*burst, return_exceptions=True)
    winners = [r for r in results[:3] if not isinstance(r, BaseException)]
    assert len(winners) == 1 and winners[0].envelopes[-1].version == 2  # one of three at version 1
    assert all(isinstance(r, ConcurrencyError) for r in results[:3] if r is not winners[0])
    b_won = results[2] is winners[0]
    assert len(await store.read("incident-b")) == (1 if b_won else 0)
    assert len(await store.read("incident-a")) == 2
    first, second = results[3], results[4]
    assert not isinstance(first, BaseException) and not isinstance(second, BaseException)
    assert sorted([first.duplicate, second.duplicate]) == [False, True]  # e1 committed once
    kept = first if not first.duplicate else second
    assert [e.event for e in await store.read("incident-c")] == [e.event for e in kept.envelopes]
    assert not isinstance(results[5], BaseException) and not results[5].duplicate
    assert await store.checkpoint("t") == (0, 7)
    log = await store.read_all(limit=100)
    assert [e.position for e in log] == sorted({e.position for e in log})  # strictly increasing
    assert len(log) == 1 + 1 + (1 if b_won else 0) + len(kept.envelopes) + 1
    again = await store.commit([Write("incident-a", [ack("a", 5)], 2)])
    assert again.envelopes[0].position > log[-1].position

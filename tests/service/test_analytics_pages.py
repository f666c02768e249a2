"""Analytics takes a page of events in one transaction of its read store (`ReadStore.commit_all`,
`deliver_page`'s path for a `PageSink`), and passes over the events that change nothing it shows.

What must hold: each event of the page is applied once, in page order, with its tracking record; a
page delivered again changes nothing; a poison event sends the page event by event, where it is set
aside and the rest lands; a failed transaction leaves nothing of the page behind."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.analytics.projections import HIDDEN, INPUTS
from services.analytics.readstore import ReadStore
from shared import consumer
from shared.auth import Credentials
from shared.bus.base import PageSink
from shared.consumer import RetryPolicy, deliver_page, takes_pages
from shared.envelope import Envelope
from shared.events import (
    Event,
    IncidentAcknowledged,
    IncidentResolved,
    ServiceActivityRecorded,
    TokenRevoked,
)
from shared.service import honouring_revocations, taken
from shared.store import Committed, Tracking, Write
from shared.store.memory import MemoryStore
from tests.service.test_analytics_views import opened

T = datetime(2026, 3, 2, 10, tzinfo=UTC)
NAME = "analytics<-intake"
FAST = RetryPolicy(attempts=2, first_delay=0, max_delay=0)


def page_of(*events: Event) -> list[Envelope]:
    return [
        Envelope(
            id=f"e{n}",
            stream=f"incident-{getattr(event, 'incident_id', None) or 'none'}",
            version=n,
            position=n,
            event=event,
            recorded_at=T + timedelta(seconds=n),
            source="intake",
            correlation_id="c",
            tx=1,
        )
        for n, event in enumerate(events, start=1)
    ]


def acked(incident_id: str, by: str = "ana") -> IncidentAcknowledged:
    return IncidentAcknowledged(incident_id=incident_id, by=by, occurred_at=T + timedelta(minutes=1))


def resolved(incident_id: str) -> IncidentResolved:
    return IncidentResolved(
        incident_id=incident_id, by="ana", reason="fixed", occurred_at=T + timedelta(minutes=5)
    )


async def itself(env: Envelope) -> Sequence[Any]:
    return [env]


class Counted(ReadStore):
    """Counts the transactions the read store is asked for, and how many commits each held."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions: list[int] = []

    async def commit_all(self, commits: Sequence[tuple[Sequence[Any], Tracking | None]]) -> list[Committed]:
        self.transactions.append(len(commits))
        return await super().commit_all(commits)


def handled(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM handled ORDER BY event_id")]


def dead_letters(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])


def test_only_a_read_store_takes_pages(tmp_path: Path) -> None:
    """An event store decides with what it holds: its events go one by one, never a page at once."""
    assert takes_pages(ReadStore(tmp_path / "analytics.db"))
    assert takes_pages(Counted(tmp_path / "counted.db"))  # a subclass, remembered apart
    assert not takes_pages(MemoryStore(source="intake"))


async def test_a_page_of_several_incidents_commits_in_one_transaction_once(tmp_path: Path) -> None:
    path = tmp_path / "analytics.db"
    page = page_of(opened("i1"), opened("i2"), acked("i1"), opened("i3"), resolved("i1"), acked("i2"))
    done: list[str] = []
    async with Counted(path) as reads:
        assert isinstance(reads, PageSink) and takes_pages(reads)
        await deliver_page(
            page, consumer=NAME, handler=itself, store=reads, handled=lambda e: done.append(e.id)
        )
        assert reads.transactions == [6, 1]  # the page, then its checkpoint
        first = [await reads.incident(i) for i in ("i1", "i2", "i3")]
        await deliver_page(page, consumer=NAME, handler=itself, store=reads)
        again = [await reads.incident(i) for i in ("i1", "i2", "i3")]
        timeline = await reads.timeline("i1")
        checkpoint = await reads.checkpoint(NAME)
    assert done == [env.id for env in page]
    assert [doc and doc["status"] for doc in first] == ["resolved", "acknowledged", "open"]
    assert again == first  # delivered again: every commit a duplicate
    assert len(timeline) == 3  # opened, acknowledged, resolved: once each
    assert handled(path) == sorted(env.id for env in page)
    assert checkpoint == page[-1].checkpoint


async def test_a_long_page_commits_in_transactions_of_at_most_at_once_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read store applies a transaction on the event loop's thread: a long page is cut short."""
    monkeypatch.setattr(consumer, "AT_ONCE", 4)
    page = page_of(*(opened(f"i{k}") for k in range(10)))
    async with Counted(tmp_path / "analytics.db") as reads:
        await deliver_page(page, consumer=NAME, handler=itself, store=reads)
        count = await reads.count()
    assert reads.transactions == [4, 4, 2, 1]
    assert count == 10


async def test_a_poison_event_sends_the_page_event_by_event_and_only_it_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "analytics.db"
    page = page_of(opened("i1"), opened("i2"), acked("i1", by="poison"), acked("i2"))

    async def choking(env: Envelope) -> Sequence[Any]:
        if getattr(env.event, "by", None) == "poison":
            raise ValueError("cannot digest")
        return [env]

    async with Counted(path) as reads:
        await deliver_page(page, consumer=NAME, handler=choking, store=reads, retry=FAST, checkpoint=False)
        docs = [await reads.incident(i) for i in ("i1", "i2")]
    assert [doc and doc["status"] for doc in docs] == ["open", "acknowledged"]
    assert dead_letters(path) == 1
    assert handled(path) == sorted(env.id for env in page)  # the poison one by its dead letter


class Unwritable:
    """A dead letter whose record cannot be written: the transaction it is in fails."""

    def model_dump_json(self) -> str:
        raise RuntimeError("cannot encode")


async def test_commits_taken_together_land_together_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "analytics.db"
    first, second = page_of(opened("i1"), acked("i1"))
    async with ReadStore(path) as reads:
        with pytest.raises(RuntimeError):
            await reads.commit_all(
                [
                    ([first], Tracking(NAME, first.id)),
                    (
                        [second, Write("deadletter-analytics", [Unwritable()], None)],
                        Tracking(NAME, second.id),
                    ),  # type: ignore[list-item]
                ]
            )
        assert await reads.incident("i1") is None
        outcomes = await reads.commit_all(
            [([first], Tracking(NAME, first.id)), ([first], Tracking(NAME, first.id))]
        )
        doc = await reads.incident("i1")
    assert [o.duplicate for o in outcomes] == [False, True]
    assert doc is not None and doc["status"] == "open"
    assert handled(path) == [first.id]


async def test_events_that_change_nothing_shown_are_passed_over_without_a_tracking_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "analytics.db"
    activity = ServiceActivityRecorded(
        service="payments", activity="incident", incident_id="i1", occurred_at=T
    )
    page = page_of(opened("i1"), activity, acked("i1"))
    assert "ServiceActivityRecorded" in HIDDEN and not HIDDEN & INPUTS
    done: list[str] = []
    async with ReadStore(path) as reads:
        await deliver_page(
            page,
            consumer=NAME,
            handler=itself,
            store=reads,
            inputs=taken(INPUTS),
            handled=lambda e: done.append(e.id),
        )
        doc = await reads.incident("i1")
        timeline = await reads.timeline("i1")
    assert sorted(done) == sorted(env.id for env in page)
    assert handled(path) == ["e1", "e3"]
    assert doc is not None and doc["status"] == "acknowledged"
    assert len(timeline) == 2


async def test_a_revoked_token_reaches_the_read_store_as_its_envelope_alone(tmp_path: Path) -> None:
    """The read store keeps the revocation from the envelope itself: nothing else is added to the
    commit (an event store would get a write of its own), so no bogus dead letter is recorded."""
    path = tmp_path / "analytics.db"
    credentials = Credentials(secret="s" * 32)
    (revoked,) = page_of(TokenRevoked(token_id="tok-1", by="admin", occurred_at=T))
    async with ReadStore(path) as reads:
        items = await honouring_revocations(itself, credentials, reads)(revoked)
        await reads.commit(items, tracking=Tracking(NAME, revoked.id))
        tokens = await reads.revoked_tokens()
    assert items == [revoked]
    assert credentials.revoked == {"tok-1"} and tokens == {"tok-1"}
    assert dead_letters(path) == 0

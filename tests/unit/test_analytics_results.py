from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.analytics.results import Results

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def answers(results: Results, *asks: tuple[str, int, datetime]) -> list[datetime]:
    """The `now` each answer was computed at, for (key, generation, now) asked in turn."""

    async def run() -> list[datetime]:
        async def make(now: datetime) -> datetime:
            return now

        return [await results.get(k, generation=g, now=now, make=make) for k, g, now in asks]

    return asyncio.run(run())


def test_the_same_question_at_the_same_generation_within_the_bound_gets_the_answer_already_computed() -> None:
    later = T0 + timedelta(seconds=4)
    assert answers(Results(5), ("m", 1, T0), ("m", 1, later)) == [T0, T0]


def test_an_event_applied_since_means_computing_again() -> None:
    later = T0 + timedelta(seconds=1)
    assert answers(Results(5), ("m", 1, T0), ("m", 2, later)) == [T0, later]


def test_an_answer_older_than_the_bound_is_computed_again_as_is_one_from_a_clock_gone_back() -> None:
    later, earlier = T0 + timedelta(seconds=6), T0 - timedelta(seconds=1)
    assert answers(Results(5), ("m", 1, T0), ("m", 1, later), ("m", 1, earlier)) == [T0, later, earlier]


def test_other_questions_and_a_bound_of_zero_compute_every_time() -> None:
    later = T0 + timedelta(seconds=1)
    assert answers(Results(5), ("m", 1, T0), ("d", 1, later)) == [T0, later]
    assert answers(Results(0), ("m", 1, T0), ("m", 1, later)) == [T0, later]

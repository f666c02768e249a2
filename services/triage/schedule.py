"""When each incident's next timer is due, for the timer workers: what is due now and the earliest
due time, without looking at every incident on every tick.

A dict holds each incident's due time; a heap orders them. A changed time is pushed again and the
old entry left in place, skipped when it comes to the top (it no longer matches the dict), and the
heap is rebuilt from the dict when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime


class DueTimes:
    def __init__(self) -> None:
        self._when: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []

    def set(self, key: str, when: datetime | None) -> None:
        """`key` is next due at `when` (None: nothing pending)."""
        if when is None:
            self._when.pop(key, None)
            return
        if self._when.get(key) == when:
            return
        self._when[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self._when) + 64:
            self._heap = [(w, k) for k, w in self._when.items()]
            heapq.heapify(self._heap)

    def get(self, key: str) -> datetime | None:
        return self._when.get(key)

    def due(self, now: datetime) -> list[str]:
        """Every key due at or before `now`, earliest first. They stay due until `set` moves them."""
        out: list[str] = []
        kept: list[tuple[datetime, str]] = []
        kept_keys: set[str] = set()
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            when, key = entry
            if self._when.get(key) == when and key not in kept_keys:
                kept_keys.add(key)
                out.append(key)
                kept.append(entry)
        for entry in kept:
            heapq.heappush(self._heap, entry)
        return out

    def next(self) -> datetime | None:
        """The earliest due time."""
        while self._heap:
            when, key = self._heap[0]
            if self._when.get(key) == when:
                return when
            heapq.heappop(self._heap)
        return None

    def __len__(self) -> int:
        return len(self._when)

    def __iter__(self) -> Iterator[str]:
        return iter(self._when)

    def items(self) -> Iterator[tuple[str, datetime]]:
        return iter(self._when.items())

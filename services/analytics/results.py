"""A short-lived memo of computed answers (metrics, the dashboard's figures) for repeated requests.

Metrics over thousands of incidents cost far more than a list page, and the same ones are asked for
again and again (a dashboard refreshes itself; several operators watch it). An answer depends on the
read store's content and on "now" (open incidents' ages, SLA clocks still running), so one is served
again only while the read store is at the generation it was computed at (no event applied since)
and for at most `seconds` of the service's clock after it was computed: it is then exactly the
answer given at that instant. `seconds=0` turns the memo off (every request computes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")


class Results:
    def __init__(self, seconds: float, *, size: int = 64) -> None:
        self.seconds = seconds
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[int, datetime, Any]] = OrderedDict()

    async def get(
        self, key: Hashable, *, generation: int, now: datetime, make: Callable[[datetime], Awaitable[T]]
    ) -> T:
        """The answer for `key` made at most `seconds` ago at this generation, else `make(now)`'s.
        An answer is shared by every request that gets it: callers must not change it."""
        if self.seconds <= 0:
            return await make(now)
        entry = self._entries.get(key)
        if entry is not None:
            made_at_generation, made_at, value = entry
            if made_at_generation == generation and 0 <= (now - made_at).total_seconds() <= self.seconds:
                self._entries.move_to_end(key)
                return value  # type: ignore[no-any-return]
        value = await make(now)
        self._entries[key] = (generation, now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

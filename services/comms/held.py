"""The notifications held back for one recipient's digest, oldest first. Pure.

A storm sends every notification past the recipient's limit here, one event each, and each is
folded into a new value of the recipient's state. A tuple would be copied, and searched, on every
fold: O(n) each, O(n^2) over a storm. A `Held` shares its storage with the values made from it:
holding one more back from the newest value writes in place (an older value copies first, so it
keeps seeing only what it held), and whether a notification is held is a lookup. Values compare
equal to tuples of the same notifications.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from itertools import islice
from typing import Any

from shared.events import NotificationCoalesced


class Held:
    __slots__ = ("_index", "_items", "_n")

    def __init__(
        self,
        items: list[NotificationCoalesced] | None = None,
        index: dict[str, int] | None = None,
        n: int = 0,
    ) -> None:
        self._items: list[NotificationCoalesced] = items if items is not None else []
        self._index: dict[str, int] = index if index is not None else {}  # notification id -> place
        self._n = n

    @classmethod
    def of(cls, held: Collection[NotificationCoalesced]) -> Held:
        out = cls()
        for p in held:
            out = out.added(p)
        return out

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[NotificationCoalesced]:
        return islice(self._items, self._n)

    def __getitem__(self, i: int) -> NotificationCoalesced:
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._items[i % self._n]

    def get(self, notification_id: str) -> NotificationCoalesced | None:
        at = self._index.get(notification_id)
        return self._items[at] if at is not None and at < self._n else None

    def __contains__(self, notification_id: object) -> bool:
        return isinstance(notification_id, str) and self.get(notification_id) is not None

    def added(self, held: NotificationCoalesced) -> Held:
        """This value with one more held back (the caller checks it is not held already)."""
        items, index = self._items, self._index
        if self._n != len(items):  # an older value: its own storage from here on
            items, index = items[: self._n], {k: v for k, v in index.items() if v < self._n}
        index[held.notification_id] = len(items)
        items.append(held)
        return Held(items, index, self._n + 1)

    def without(self, notification_ids: Collection[str]) -> Held:
        """This value without the given notifications (a digest sent them)."""
        return Held.of([p for p in self if p.notification_id not in notification_ids])

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, Held | tuple | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Held({list(self)!r})"

"""Who was notified lately, per recipient: the coalescing count and the notifications held back for
their digest, folded from comms' own log.

Each notification is one event on its incident's stream, and that event is all the count needs: no
per-recipient stream is written, so notifications to a recipient every incident shares (the
responders) do not queue behind each other's commits. What this instance plans is noted at once,
before its commit lands, so the next decision here counts it; what other instances plan is read from
the shared log when the next decision is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from services.comms import domain
from shared.envelope import Envelope
from shared.events import Event


class Recipients:
    def __init__(self, window: timedelta) -> None:
        self.window = window
        self.states: dict[str, domain.RecipientState] = {}

    def note(self, events: Iterable[Event]) -> None:
        """Fold events in (idempotent: reading the same notification back from the log is a no-op)."""
        for e in events:
            key = domain.recipient_of(e)
            if key is not None:
                self.states[key] = domain.evolve_recipient(self.states.get(key, domain.RecipientState()), e)

    def fold(self, env: Envelope) -> None:
        self.note((env.event,))

    def view(self) -> Mapping[str, domain.RecipientState]:
        return self.states

    def forget_quiet(self, now: datetime) -> None:
        """Drop recipients with nothing held back and nothing in the window: they count as new."""
        horizon = now - self.window
        quiet = [
            k for k, s in self.states.items() if not s.pending and all(t <= horizon for _, t in s.recent[-1:])
        ]
        for k in quiet:
            del self.states[k]

    def due(self, now: datetime) -> list[str]:
        """Recipients whose digest is due: something is held back and its window has ended."""
        return [k for k, s in self.states.items() if s.pending and now >= s.pending[0].window_ends_at]

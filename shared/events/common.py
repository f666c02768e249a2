"""Events any service may record."""

from __future__ import annotations

from typing import Literal

from shared.events.base import Event


class EventDeadLettered(Event):
    """A consumer gave up on an input event after repeated failures; `reason` is the last error."""

    type: Literal["EventDeadLettered"] = "EventDeadLettered"
    consumer: str
    event_id: str
    event_type: str
    stream: str
    attempts: int
    reason: str


EVENTS: tuple[type[Event], ...] = (EventDeadLettered,)

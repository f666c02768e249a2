"""Events any service may record."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.events.base import Event, IncidentEvent


class EventDeadLettered(Event):
    """A consumer gave up on an input event after repeated failures; `reason` is the last error."""

    type: Literal["EventDeadLettered"] = "EventDeadLettered"
    consumer: str
    event_id: str
    event_type: str
    stream: str
    attempts: int
    reason: str


class FeedbackRecorded(IncidentEvent):
    """Customer satisfaction with how an incident was handled (recorded by analytics, in its own log)."""

    type: Literal["FeedbackRecorded"] = "FeedbackRecorded"
    feedback_id: str
    score: int = Field(ge=1, le=5)
    comment: str = ""
    by: str


EVENTS: tuple[type[Event], ...] = (EventDeadLettered, FeedbackRecorded)

"""Customer satisfaction: analytics' only write. Each score is a `FeedbackRecorded` event in
analytics' own small event store, so the read models stay disposable: a rebuild replays it with
the other services' logs. A worker follows that log into the read store, like any other source."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.analytics.readstore import ReadStore
from shared.bus.base import tracking_name
from shared.events import FeedbackRecorded
from shared.store import EventStore, Tracking, Write

SOURCE = "analytics"
CONSUMER = tracking_name("analytics", SOURCE)


def stream_for(incident_id: str) -> str:
    return f"feedback-{incident_id}"


async def record(
    store: EventStore,
    reads: ReadStore,
    *,
    incident_id: str,
    score: int,
    comment: str,
    by: str,
    now: datetime,
    idempotency_key: str | None,
) -> tuple[FeedbackRecorded, bool]:
    """Append the score (once per idempotency key) and apply it to the read store at once.
    Returns the event and whether it was new."""
    stream = stream_for(incident_id)
    history = await store.read(stream)
    if idempotency_key is not None:
        for env in history:
            if isinstance(env.event, FeedbackRecorded) and env.event.feedback_id == idempotency_key:
                return env.event, False
    event = FeedbackRecorded(
        incident_id=incident_id,
        feedback_id=idempotency_key or str(uuid.uuid4()),
        score=score,
        comment=comment,
        by=by,
        occurred_at=now,
    )
    committed = await store.commit([Write(stream, [event], len(history))])
    # The follower advances the checkpoint; this only makes the score visible before it gets there.
    for env in committed.envelopes:
        await reads.commit([env], tracking=Tracking(CONSUMER, env.id, None))
    return event, True


async def follow(store: EventStore, reads: ReadStore, *, poll: float = 1.0) -> None:
    """Apply analytics' own log to the read store, from its checkpoint, forever."""
    at = await reads.checkpoint(CONSUMER)
    while True:
        page = await store.read_all(after=at, limit=500)
        if not page:
            await store.wait_for_append(poll, after=at)
            continue
        for env in page:
            done = await reads.commit([env], tracking=Tracking(CONSUMER, env.id, env.checkpoint))
            if done.duplicate:  # applied already by the request that recorded it: move past it
                await reads.commit([], tracking=Tracking(CONSUMER, None, env.checkpoint))
            at = env.checkpoint

"""The in-memory event store: a fake for fast unit tests that passes the same contract tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from shared.envelope import Checkpoint, Envelope
from shared.store.base import START, Committed, ConcurrencyError, Tracking, Write


class MemoryStore:
    def __init__(self, *, source: str) -> None:
        self.source = source
        self._log: list[Envelope] = []
        self._streams: dict[str, list[Envelope]] = {}
        self._handled: set[tuple[str, str]] = set()
        self._checkpoints: dict[str, Checkpoint] = {}
        self._appended = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def commit(self, writes: Sequence[Write], *, tracking: Tracking | None = None) -> Committed:
        if (
            tracking is not None
            and tracking.event_id is not None
            and ((tracking.consumer, tracking.event_id) in self._handled)
        ):
            return Committed(duplicate=True)
        pending: dict[str, int] = {}
        for write in writes:
            actual = pending.get(write.stream, len(self._streams.get(write.stream, ())))
            if write.expected_version is not None and write.expected_version != actual:
                raise ConcurrencyError(write.stream, write.expected_version, actual)
            pending[write.stream] = actual + len(write.events)
        now = datetime.now(UTC)
        out: list[Envelope] = []
        for write in writes:
            stream = self._streams.setdefault(write.stream, [])
            for event in write.events:
                env = Envelope(
                    id=str(uuid.uuid4()),
                    stream=write.stream,
                    version=len(stream) + 1,
                    position=len(self._log) + 1,
                    event=event,
                    recorded_at=now,
                    source=self.source,
                    correlation_id=write.correlation_id or event.partition_key or write.stream,
                    causation_id=write.causation_id,
                    schema_version=event.schema_version,
                )
                stream.append(env)
                self._log.append(env)
                out.append(env)
        if tracking is not None:
            if tracking.event_id is not None:
                self._handled.add((tracking.consumer, tracking.event_id))
            if tracking.checkpoint is not None:
                self._checkpoints[tracking.consumer] = tracking.checkpoint
        if out:
            self._appended.set()
            self._appended = asyncio.Event()
        return Committed(out)

    async def read(self, stream: str, after_version: int = 0) -> list[Envelope]:
        return list(self._streams.get(stream, ())[after_version:])

    def committed_here(self, stream: str, after_version: int) -> list[Envelope] | None:
        return list(self._streams.get(stream, ())[after_version:])  # every writer is this process

    async def read_all(self, after: Checkpoint = START, limit: int = 1000) -> list[Envelope]:
        start = after[1]
        return self._log[start : start + limit]

    async def checkpoint(self, consumer: str) -> Checkpoint:
        return self._checkpoints.get(consumer, START)

    async def wait_for_append(self, timeout: float, after: Checkpoint | None = None) -> None:
        if after is not None and len(self._log) > after[1]:
            return
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires, and a follower that ignores its cancellation hangs shutdown.
            async with asyncio.timeout(timeout):
                await self._appended.wait()
        except TimeoutError:
            return

    async def ping(self) -> None:
        return None

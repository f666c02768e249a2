"""Durable timers: SLA warnings and breaches, role gaps.

Nothing is scheduled in memory that a restart could lose. `TriageIndex` folds triage's own log
(from the start, after every restart) and knows when each incident's next timer is due; the
worker appends what is due with the incident stream's expected version, so a timer fires once
even with several instances or a crash between deciding and appending (the second attempt finds
the event in the stream and decides nothing).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from services.triage import domain
from services.triage.handlers import TriageHandlers, triage_stream
from services.triage.problems import Problem, evolve_problem
from services.triage.schedule import DueTimes
from services.triage.state import Triage, evolve
from shared.envelope import Envelope
from shared.events import ProblemSuggested
from shared.logviews import LogViews
from shared.store import ConcurrencyError, Write

INCIDENT_PREFIX = "triage-"
PROBLEM_PREFIX = "problem-"


@dataclass
class TriageIndex:
    """Triage's own log folded in memory: every incident, problem and problem suggestion."""

    handlers: TriageHandlers
    log: LogViews
    """The process's reader of triage's log (shared with paging)."""
    incidents: dict[str, Triage] = field(default_factory=dict)
    problems: dict[str, Problem] = field(default_factory=dict)
    suggestions: list[ProblemSuggested] = field(default_factory=list)
    due: DueTimes = field(default_factory=DueTimes)

    def __post_init__(self) -> None:
        self.log.add(self._apply)

    async def catch_up(self) -> None:
        """Fold everything appended since the last call (the first call reads the whole log)."""
        await self.log.catch_up()

    def _apply(self, env: Envelope) -> None:
        if env.stream.startswith(INCIDENT_PREFIX):
            incident_id = env.stream.removeprefix(INCIDENT_PREFIX)
            state = evolve(self.incidents.get(incident_id, Triage()), env.event)
            self.incidents[incident_id] = state
            self.due.set(incident_id, domain.next_timer(state, self.handlers.policy))
        elif env.stream.startswith(PROBLEM_PREFIX):
            problem_id = env.stream.removeprefix(PROBLEM_PREFIX)
            self.problems[problem_id] = evolve_problem(self.problems.get(problem_id, Problem()), env.event)
        elif isinstance(env.event, ProblemSuggested):
            self.suggestions.append(env.event)

    def next_due(self) -> datetime | None:
        return self.due.next()


@dataclass
class Timers:
    index: TriageIndex
    poll: float = 0.25

    async def tick(self) -> int:
        """Append every timer event due now; returns how many were appended."""
        handlers = self.index.handlers
        await self.index.catch_up()
        now = handlers.clock()
        written = 0
        for incident_id in self.index.due.due(now):
            stream = triage_stream(incident_id)
            state, version = await handlers.triages.load(stream)
            events = domain.timers_due(state, now, handlers.policy)
            if not events:
                continue
            try:
                await handlers.store.commit([Write(stream, events, version, correlation_id=incident_id)])
            except ConcurrencyError:
                continue  # another writer got there first: the next tick decides again from the store
            written += len(events)
        await self.index.catch_up()
        return written

    async def run(self) -> None:
        """Forever: fire what is due, then wait for the next due time, an append, or the poll."""
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                # Python 3.11's wait_for can swallow a cancellation that races its timeout
                # (fixed in 3.12): a cancelled worker stops here instead of polling on.
                raise asyncio.CancelledError
            await self.tick()
            wait = self.poll
            when = self.index.next_due()
            if when is not None:
                wait = min(wait, max((when - self.index.handlers.clock()).total_seconds(), 0.0))
            await self.index.handlers.store.wait_for_append(max(wait, 0.05), after=self.index.log.at)

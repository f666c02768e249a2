"""Comms' shell: load state, call the pure core, return or commit writes. Nothing else."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.comms import cadence, directory, domain
from services.comms.delivery import comms_stream, notification_stream, progress
from services.comms.recipients import Recipients
from services.comms.templates import Templates
from shared.aggregates import Aggregates
from shared.clock import Clock
from shared.envelope import Envelope
from shared.errors import Conflict, NotFound
from shared.events import Event, NotificationPlanned, NotificationRetryRequested, StatusUpdatePublished
from shared.logviews import LogViews
from shared.policy.comms import CommsPolicy
from shared.store import ConcurrencyError, EventStore, Write

log = logging.getLogger("lynchpin.comms")


def fact_of(env: Envelope, policy: CommsPolicy) -> domain.Fact | None:
    """The input event as comms' core sees it; None when it cannot change anything comms records."""
    incident_id = env.event.partition_key
    if not incident_id or not domain.relevant(env.event.type, policy):
        return None
    data = env.event.model_dump(mode="json")
    return domain.Fact(env.event.type, incident_id, env.id, env.event.occurred_at, data)


@dataclass
class CommsHandlers:
    store: EventStore
    policy: CommsPolicy
    clock: Clock
    builtins: Sequence[tuple[directory.Stakeholder, directory.Subscription]] = ()
    templates: Templates = field(default_factory=Templates)

    def __post_init__(self) -> None:
        self.incidents: Aggregates[domain.CommsIncident] = Aggregates(
            self.store, domain.CommsIncident, domain.evolve
        )
        self.log = LogViews(self.store)
        self.recipients = Recipients(self.policy.coalesce.window)
        self.log.add(self.recipients.fold)
        initial = directory.from_policy(self.policy, self.builtins)
        self.directory: Aggregates[directory.Directory] = Aggregates(
            self.store, lambda: initial, directory.evolve, size=1
        )

    def render(self, kind: str, audience: str, channel: str, context: Mapping[str, Any]) -> tuple[str, str]:
        r = self.templates.render(kind, audience, channel, context)
        return r.subject, r.body

    async def _notify(
        self,
        state: domain.CommsIncident,
        to: Sequence[domain.Addressee],
        *,
        cause_event_id: str,
        kind: str,
        event: Mapping[str, Any] | None = None,
        update: Mapping[str, Any] | None = None,
    ) -> domain.Outcome:
        if not to:
            return domain.Outcome()
        now = self.clock()
        if kind not in self.policy.coalesce.exempt:
            await self.log.catch_up()  # what other instances planned since
            self.recipients.forget_quiet(now)
        outcome = domain.notify(
            state,
            cause_event_id=cause_event_id,
            kind=kind,
            to=to,
            recipients=self.recipients.view(),
            render=self.render,
            policy=self.policy,
            now=now,
            event=event,
            update=update,
        )
        self.recipients.note(outcome.incident)  # counted here at once, before the commit lands
        return outcome

    def _write(
        self,
        incident_id: str,
        events: Sequence[Event],
        version: int,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> Write:
        return Write(
            comms_stream(incident_id),
            events,
            version,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    async def on_event(self, env: Envelope) -> Sequence[Write]:
        fact = fact_of(env, self.policy)
        if fact is None:
            return []
        stream = comms_stream(fact.incident_id)
        state, version = await self.incidents.load(stream)
        book = directory.Directory()
        if fact.kind in self.policy.triggers:  # only a trigger looks anyone up
            book, _ = await self.directory.load(directory.DIRECTORY_STREAM)
        reaction = domain.react(state, fact, directory=book, policy=self.policy, now=self.clock())
        outcome = await self._notify(
            reaction.state, reaction.to, cause_event_id=env.id, kind=fact.kind, event=fact.data
        )
        events = [*reaction.events, *outcome.incident]
        if not events:
            return []
        return [
            self._write(
                fact.incident_id, events, version, correlation_id=env.correlation_id, causation_id=env.id
            )
        ]

    async def publish_update(
        self, incident_id: str, cmd: domain.UpdateCommand, *, by: str, idempotency_key: str | None
    ) -> StatusUpdatePublished:
        stream = comms_stream(incident_id)
        update_id = str(
            uuid.uuid5(domain.NAMESPACE, f"update|{incident_id}|{idempotency_key}")
            if idempotency_key
            else uuid.uuid4()
        )
        for _ in range(20):
            state, version = await self.incidents.load(stream)
            if update_id in state.updates:
                return next(
                    e.event
                    for e in await self.store.read(stream)
                    if isinstance(e.event, StatusUpdatePublished) and e.event.update_id == update_id
                )
            book, _ = await self.directory.load(directory.DIRECTORY_STREAM)
            fields = {**cmd.fields, "text": cmd.text, "template": cmd.template}
            subject = self.render(
                "StatusUpdatePublished",
                "management",
                "email",
                {"incident": state.context(), "update": fields},
            )[0]
            published = domain.publish(
                state,
                cmd,
                incident_id=incident_id,
                update_id=update_id,
                by=by,
                subject=subject,
                now=self.clock(),
            )
            after = domain.evolve(state, published)
            outcome = await self._notify(
                after,
                domain.for_audience(after, cmd.audience, book),
                cause_event_id=update_id,
                kind="StatusUpdatePublished",
                update=fields,
                event=published.model_dump(mode="json"),
            )
            try:
                await self.store.commit([self._write(incident_id, [published, *outcome.incident], version)])
            except ConcurrencyError:
                continue
            return published
        raise Conflict("the incident kept changing; retry")

    async def fire_overdue(self, incident_id: str) -> int:
        """Append the reminders and escalations due now, each once per incident + level + due time."""
        fired = 0
        stream = comms_stream(incident_id)
        for _ in range(5):
            state, version = await self.incidents.load(stream)
            due = cadence.overdue(state, self.policy.cadence, now=self.clock())
            if not due:
                return fired
            level, due_at = due[0]
            book, _ = await self.directory.load(directory.DIRECTORY_STREAM)
            event, to = domain.overdue_event(
                state, level, due_at, policy=self.policy, directory=book, now=self.clock()
            )
            after = domain.evolve(state, event)
            outcome = await self._notify(
                after,
                to,
                cause_event_id=domain.overdue_cause(incident_id, level, due_at),
                kind="StatusUpdateOverdue",
                event=event.model_dump(mode="json"),
            )
            try:
                # the incident stream's expected version arbitrates: a second firing reloads and
                # finds (level, due) already raised
                await self.store.commit([self._write(incident_id, [event, *outcome.incident], version)])
                fired += 1
            except ConcurrencyError:
                continue
        return fired

    async def flush_digest(self, key: str) -> int:
        for _ in range(5):
            await self.log.catch_up()
            rs = self.recipients.view().get(key, domain.RecipientState())
            outcome = domain.digest(rs, render=self.render, now=self.clock())
            if outcome is None:
                return 0
            [planned] = outcome.incident
            incident_id = planned.partition_key
            assert incident_id is not None and isinstance(planned, NotificationPlanned)
            state, version = await self.incidents.load(comms_stream(incident_id))
            if planned.notification_id in state.planned:
                return 0  # flushed already (another instance, or before a restart)
            try:
                await self.store.commit([self._write(incident_id, outcome.incident, version)])
            except ConcurrencyError:
                continue
            self.recipients.note(outcome.incident)
            return 1
        return 0

    async def retry(self, notification_id: str, *, by: str, attempts: int) -> NotificationRetryRequested:
        stream = notification_stream(notification_id)
        history = [e.event for e in await self.store.read(stream)]
        if not history:
            raise NotFound(f"no delivery attempt of notification {notification_id} is recorded")
        p = progress(history, attempts=attempts)
        if p.sent:
            raise Conflict(f"notification {notification_id} was delivered; nothing to retry")
        if not p.dead:
            raise Conflict(f"notification {notification_id} is still being delivered")
        incident_id = history[0].partition_key
        assert incident_id is not None
        event = NotificationRetryRequested(
            incident_id=incident_id, notification_id=notification_id, by=by, occurred_at=self.clock()
        )
        await self.store.commit([Write(stream, [event], len(history))])
        return event

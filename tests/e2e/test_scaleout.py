"""Scale-out on PostgreSQL and Kafka: two triage and two comms instances share the work, no effect twice.

Six processes: intake, triage x2, comms x2, analytics, each with its own log file. The two instances of a
service run with the same environment but their own port: one consumer group (Kafka splits the partitions
between the members), one PostgreSQL schema (streams' expected versions arbitrate), and one relay at a time
(the advisory lock `relay:<service>`). A stream of alerts (many keys, repeats, resolves) flows; once every
consumer caught up, the logs are audited: each incident prioritised exactly once, each (cause, recipient)
planned at most once, each notification sent at most once, analytics lists each incident once with its
priority. Then the triage instance that holds the relay is SIGKILLed while alerts keep flowing: the survivor
takes over its partitions and its relay, and the same audit holds for everything sent before and after.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from shared.envelope import Checkpoint, Envelope
from shared.events import IncidentOpened, NotificationPlanned, NotificationSent, PriorityAssigned
from shared.relay import events_topic
from shared.service import exclusively
from shared.settings import Settings
from shared.store import START
from shared.store.postgres import PostgresStore
from shared.testing.servers import free_ports
from tests.faults import audit
from tests.faults.cluster import ADMIN, Processes, distributed_env, settings_of, url
from tests.faults.scenario import flowing, wait_settled
from tests.faults.stream import AlertStream
from tests.helpers import eventually
from tests.receivers import WebhookReceiver, webhook_receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.kafka]

PARTITIONS = 6
INSTANCES = {
    "intake": "intake",
    "triage-a": "triage",
    "triage-b": "triage",
    "comms-a": "comms",
    "comms-b": "comms",
    "analytics": "analytics",
}
"""Instance name -> service. The `-b` instances differ from their `-a` twin only by their port."""


@dataclass
class Instance:
    name: str
    service: str
    procs: Processes

    @property
    def log(self) -> Path:
        return self.procs.log

    @property
    def url(self) -> str:
        return url(self.procs.env, self.service)

    def text(self, since: int = 0) -> str:
        return self.log.read_bytes()[since:].decode(errors="replace")

    def relay_started(self, since: int = 0) -> int:
        """How often this instance's relay took the lock `relay:<service>` and began publishing."""
        topic = events_topic(self.service, self.procs.env["LYNCHPIN_KAFKA_NAMESPACE"])
        return self.text(since).count(f"relay {topic}: publishing after")


@dataclass
class Cluster:
    env: dict[str, str]
    settings: Settings
    instances: dict[str, Instance]

    @property
    def namespace(self) -> str:
        return self.env["LYNCHPIN_KAFKA_NAMESPACE"]

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances.values() if i.service == service and i.procs.procs]

    def logs(self) -> str:
        return "\n".join(f"=== {i.name}\n{i.text()[-3000:]}" for i in self.instances.values())


def make_cluster(tmp_path: Path, pg_dsn: str, bootstrap: str, hook: WebhookReceiver) -> Cluster:
    env = distributed_env(tmp_path, pg_dsn, bootstrap, webhook_url=hook.url)
    env["LYNCHPIN_KAFKA_PARTITIONS"] = str(PARTITIONS)
    env["LYNCHPIN_LOG_LEVEL"] = "INFO"  # the relay says when it takes its lock
    spare = iter(free_ports(len(INSTANCES)))
    instances = {}
    for name, service in INSTANCES.items():
        own = dict(env)
        if name.endswith("-b"):  # the twin: same everything, its own port
            own[f"LYNCHPIN_{service.upper()}_PORT"] = str(next(spare))
        instances[name] = Instance(name, service, Processes(own, tmp_path / f"{name}.log"))
    return Cluster(env, settings_of(env), instances)


# ------------------------------------------------------------------------------ the consumer groups


@dataclass(frozen=True)
class Member:
    member_id: str
    partitions: frozenset[tuple[str, int]]


async def describe(bootstrap: str, group: str) -> tuple[list[Member], dict[tuple[str, int], int]]:
    """The group's members with their assigned partitions, and its committed offset per partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="scaleout-test")
    await admin.start()
    try:
        members: list[Member] = []
        for response in await admin.describe_consumer_groups([group]):
            for g in response.groups:
                for m in g[5]:  # (member_id, client_id, ..., member_assignment): the assignment is last
                    raw = m[-1]
                    tps: frozenset[tuple[str, int]] = frozenset()
                    if raw:
                        decoded = ConsumerProtocolMemberAssignment.decode(raw)
                        tps = frozenset((tp.topic, tp.partition) for tp in decoded.partitions())
                    members.append(Member(m[0], tps))
        offsets = await admin.list_consumer_group_offsets(group)
        return members, {(tp.topic, tp.partition): o.offset for tp, o in offsets.items()}
    finally:
        await admin.close()


async def wait_members(bootstrap: str, group: str, count: int, timeout: float = 60) -> list[Member]:
    """Until `group` has `count` members, each with partitions, together covering every partition."""
    deadline = time.monotonic() + timeout
    members: list[Member] = []
    while time.monotonic() < deadline:
        try:
            members, _ = await describe(bootstrap, group)
        except Exception:  # the coordinator not known yet
            members = []
        covered = set().union(*(m.partitions for m in members)) if members else set()
        topics = {t for t, _ in covered}
        if (
            len(members) == count
            and all(m.partitions for m in members)
            and len(covered) == PARTITIONS * len(topics)
        ):
            return members
        await asyncio.sleep(0.5)
    raise AssertionError(f"{group}: not {count} members with partitions within {timeout:.0f}s: {members}")


# ------------------------------------------------------------------------------------ the audit


async def triage_log(dsn: str) -> list[Envelope]:
    """Triage's own log, read from its PostgreSQL schema."""
    events: list[Envelope] = []
    async with PostgresStore(dsn, source="triage") as store:
        at: Checkpoint = START
        while True:
            page = await store.read_all(after=at, limit=5000)
            if not page:
                return events
            events.extend(page)
            at = page[-1].checkpoint


async def analytics_items(base: str) -> dict[str, list[dict[str, Any]]]:
    """Analytics' incident list (every page), by incident id: a list, to see an incident listed twice."""
    items: dict[str, list[dict[str, Any]]] = {}
    cursor: str | None = None
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as client:
        while True:
            params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            r = await client.get(f"{base}/v1/incidents", params=params)
            r.raise_for_status()
            body = r.json()
            for item in body["items"]:
                items.setdefault(item["id"], []).append(item)
            cursor = body["next"]
            if not cursor:
                return items


async def check_no_duplicate_effects(
    cluster: Cluster, dsn: str, stream_answers: list[Any], hook: WebhookReceiver, label: str
) -> dict[str, int]:
    report = audit.Report(label)
    logs = await audit.read_logs(cluster.settings)
    audit.check_alerts(report, stream_answers, logs["intake"])
    audit.check_incidents(report, stream_answers, logs["intake"])
    audit.check_order(report, logs)
    opened = [e.event.incident_id for e in logs["intake"] if isinstance(e.event, IncidentOpened)]
    deliveries = [r.headers.get("idempotency-key", "") for r in hook.received]
    audit.check_notifications(report, logs["comms"], deliveries, comms_crashes=0, incidents=opened)
    analytics = cluster.instances["analytics"].url
    await audit.check_analytics(report, analytics, logs)
    for comms in cluster.of("comms"):
        await audit.check_comms_api(report, comms.url, logs["comms"])
    problems = list(report.problems)

    # each incident intake opened has exactly one PriorityAssigned in triage's log (read from PostgreSQL)
    triage = await triage_log(dsn)
    assert [e.id for e in triage] == [e.id for e in logs["triage"]]
    priorities: dict[str, list[str]] = {}
    for env in triage:
        if isinstance(env.event, PriorityAssigned):
            priorities.setdefault(env.event.incident_id, []).append(env.event.priority)
    for incident in opened:
        if len(priorities.get(incident, [])) != 1:
            problems.append(f"incident {incident}: {len(priorities.get(incident, []))} PriorityAssigned")
    # at most one NotificationPlanned per (cause, recipient); at most one NotificationSent per notification
    comms_events = [env.event for env in logs["comms"]]
    planned = Counter(
        (e.cause_event_id, e.recipient) for e in comms_events if isinstance(e, NotificationPlanned)
    )
    sent = Counter(e.notification_id for e in comms_events if isinstance(e, NotificationSent))
    problems += [f"{n} NotificationPlanned for {key}" for key, n in planned.items() if n > 1]
    problems += [f"{n} NotificationSent for {nid}" for nid, n in sent.items() if n > 1]
    # analytics lists every incident intake opened exactly once, with triage's priority
    items = await analytics_items(analytics)
    for incident in opened:
        listed = items.get(incident, [])
        if len(listed) != 1 or listed[0]["priority"] != priorities.get(incident, [None])[0]:
            problems.append(
                f"incident {incident}: analytics lists {listed}, triage {priorities.get(incident)}"
            )
    problems += [f"analytics lists {i}, never opened" for i in sorted(set(items) - set(opened))]

    assert not problems, "\n".join(problems[:40])
    figures = {
        **report.figures,
        "prioritised": sum(map(len, priorities.values())),
        "notifications_sent": sum(sent.values()),
    }
    print(report.line(), figures)
    return figures


# ------------------------------------------------------------------------------------- the test


async def test_two_triage_and_two_comms_instances_split_the_work_with_no_duplicate_effects(
    pg_dsn: str, kafka_server: Any, tmp_path: Path
) -> None:
    async with webhook_receiver() as hook:
        cluster = make_cluster(tmp_path, pg_dsn, kafka_server.bootstrap, hook)
        ns, bootstrap = cluster.namespace, kafka_server.bootstrap
        try:
            # start all six together (their imports overlap), then wait for each one's /readyz
            await asyncio.gather(
                *(
                    asyncio.to_thread(i.procs.start, i.name, f"services.{i.service}", services=[i.service])
                    for i in cluster.instances.values()
                )
            )
            for service in ("triage", "comms"):
                await wait_members(bootstrap, f"{ns}.{service}", 2)

            # --- phase 1: both instances of each service at work
            intake = cluster.instances["intake"].url
            first = AlertStream(intake, keys=120, count=300, seconds=120, workers=3, pace=0.01, seed=11)
            await first.run()
            assert first.figures()["accepted"] == first.count, first.figures()
            await wait_settled(cluster.settings, 90)
            for service, sources in (("triage", ("intake",)), ("comms", ("intake", "triage"))):
                members, offsets = await describe(bootstrap, f"{ns}.{service}")
                assert len(members) == 2 and all(m.partitions for m in members), members
                for m in members:  # each member has handled (and committed) records on its partitions
                    assert sum(offsets.get(tp, 0) for tp in m.partitions) > 0, (service, m, offsets)
                assert {t for m in members for t, _ in m.partitions} == {events_topic(s, ns) for s in sources}
            senders = [i.name for i in cluster.of("comms") if "delivery:comms: took the lock" in i.text()]
            assert len(senders) == 1, cluster.logs()  # one comms instance sends notifications
            for service in ("intake", "triage", "comms"):  # one instance's relay publishes, for good
                assert [bool(i.relay_started()) for i in cluster.of(service)].count(True) == 1, cluster.logs()
            await check_no_duplicate_effects(cluster, pg_dsn, first.answers, hook, "scale-out")

            # --- phase 2: SIGKILL the triage instance that holds the relay, mid-stream
            holder = next(i for i in cluster.of("triage") if i.relay_started())
            survivor = next(i for i in cluster.of("triage") if i is not holder)
            mark = survivor.log.stat().st_size
            second = AlertStream(intake, keys=240, count=240, seconds=120, workers=3, pace=0.02, seed=12)
            sender = asyncio.create_task(second.run())
            await flowing(second, 60)
            assert not sender.done()
            await asyncio.to_thread(holder.procs.kill, holder.name)
            killed = time.monotonic()
            members = await wait_members(bootstrap, f"{ns}.triage", 1)
            moved = time.monotonic() - killed
            print(f"{holder.name} SIGKILLed: {survivor.name} has every partition after {moved:.1f}s")
            await sender
            assert second.figures()["accepted"] == second.count, second.figures()
            assert members[0].partitions == {(events_topic("intake", ns), p) for p in range(PARTITIONS)}
            await wait_settled(cluster.settings, 90)
            assert survivor.relay_started(since=mark) >= 1, survivor.text(mark)[-3000:]
            for service in ("intake", "comms"):
                assert [bool(i.relay_started()) for i in cluster.of(service)].count(True) == 1, cluster.logs()
            figures = await check_no_duplicate_effects(
                cluster, pg_dsn, first.answers + second.answers, hook, "scale-out after SIGKILL"
            )
            assert figures["incidents"] == figures["prioritised"] > 0
        finally:
            await asyncio.gather(*(asyncio.to_thread(i.procs.stop_all) for i in cluster.instances.values()))


# ------------------------------------------------------------ one sender at a time, and the handover


@dataclass
class Tries:
    """A store seen through its lock calls: counts them, and holds them back while `gate` is clear."""

    store: PostgresStore
    tries: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def try_lock(self, name: str) -> bool:
        self.tries += 1
        await self.gate.wait()
        return await self.store.try_lock(name)

    async def release_lock(self, name: str) -> None:
        await self.store.release_lock(name)


async def test_an_exclusive_worker_runs_in_one_instance_and_stops_when_it_lost_the_lock(pg_dsn: str) -> None:
    """What comms' delivery worker runs under: two instances, one lock `delivery:comms`, one sender."""
    running: list[str] = []

    def worker(name: str) -> Callable[[], Awaitable[None]]:
        async def work() -> None:
            running.append(name)
            try:
                await asyncio.Event().wait()  # a worker runs until cancelled
            finally:
                running.remove(name)

        return work

    async def runs(*names: str) -> bool:
        return sorted(running) == sorted(names)

    async with (
        PostgresStore(pg_dsn, source="comms") as a_store,
        PostgresStore(pg_dsn, source="comms") as b_store,
    ):
        a, b = Tries(a_store), Tries(b_store)
        task_a = asyncio.create_task(exclusively(a, "delivery:comms", worker("a"), check=0.05))
        await eventually(lambda: runs("a"))
        task_b = asyncio.create_task(exclusively(b, "delivery:comms", worker("b"), check=0.05))
        try:
            # b keeps asking while a holds the lock, and never runs
            await eventually(lambda: _true(b.tries >= 10))
            assert running == ["a"]
            # a's session dies while a is between two checks (say its host was cut off): the lock is free,
            # b takes it; until a's next check both run (the short overlap a lost session allows)
            a.gate.clear()
            conn = await asyncpg.connect(pg_dsn)
            try:
                pids = await conn.fetch(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                assert len(pids) == 1
                await conn.fetchval("SELECT pg_terminate_backend($1)", pids[0]["pid"])
            finally:
                await conn.close()
            await eventually(lambda: runs("a", "b"))
            # a's next check finds the lock gone (its session, or another holder): a stops, b goes on
            tries = a.tries
            a.gate.set()
            await eventually(lambda: runs("b"))
            await eventually(lambda: _true(task_a.done() or a.tries >= tries + 10))
            assert running == ["b"]
        finally:
            for task in (task_a, task_b):
                task.cancel()
            await asyncio.gather(task_a, task_b, return_exceptions=True)
    assert running == []


async def _true(value: bool) -> bool:
    return value

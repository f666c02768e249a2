"""`python -m bench.distributed [--quick]`: the figures of `python -m bench`, in distributed mode.

Real PostgreSQL and a real Kafka broker run as local processes (shared/testing/servers.py), the four services
as four processes (`python -m services.<name>`), each on its own PostgreSQL database, their relays publishing
to Kafka. Measured, with the no-op FastAPI endpoint as the baseline in the same run:

- durable ingest into intake (20,000 distinct alerts, a storm of 20,000 copies of one alert), medians of
  runs; the same with the three consumers paused (intake, PostgreSQL and Kafka alone); then how long
  the consumers took to catch up, that the storm opened one incident, and that analytics holds every
  incident and every copy that intake's store holds;
- alert -> visible in analytics with its priority (sequential alerts);
- alert -> responders' webhook delivered, open loop at a fixed offered rate and at higher ones: p50/p99,
  how many arrived while the alerts were offered, how long the rest took, CPU per alert in each process;
- peak RSS (VmHWM) of each service process, of Kafka's JVM and of PostgreSQL's processes.

Each service's output goes to its own file in a temporary folder; lines that say ERROR or Traceback are
reported, WARNING lines counted. Every process is stopped by the PID it was started with, on error and on
SIGTERM too. `run(parser().parse_args([...]))` returns the figures as a dict; `--json PATH` writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.__main__ import (
    ADMIN,
    KEY,
    POLICY,
    Load,
    ingest_table,
    load,
    noop,
    page_alert,
    pct,
    rss_mb,
    visible_latency,
    wait_ready,
)
from shared.settings import SERVICES
from shared.testing.servers import KafkaServer, PostgresServer, free_ports, run_async


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Say on stderr what is being measured and how long it took (a full run takes a while)."""
    began = time.monotonic()
    print(f"[bench.distributed] {name} ...", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        print(f"[bench.distributed] {name}: {time.monotonic() - began:.1f}s", file=sys.stderr, flush=True)


TROUBLE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback")
TICK = os.sysconf("SC_CLK_TCK")
CONSUMERS = ("triage", "comms", "analytics")
PARTITIONS = 3


# ------------------------------------------------------------------------------------ processes


def cpu_s(pid: int | None, *, children: bool = False) -> float:
    """CPU seconds used by `pid` (and, with `children`, by its children, live and exited)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = int(fields[11]) + int(fields[12])
    if children:
        total += int(fields[13]) + int(fields[14])
        for kid in child_pids(pid):
            total += round(cpu_s(kid) * TICK)
    return total / TICK


def hwm_mb(pid: int | None) -> float:
    """VmHWM of `pid` in MB; 0 for a process that is gone (a backend may end between listing and reading)."""
    try:
        return rss_mb(pid) if pid else 0.0
    except OSError:
        return 0.0


def child_pids(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


@dataclass
class Servers:
    pg: PostgresServer
    kafka: KafkaServer
    peak_mb: dict[str, float] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        return {"kafka": cpu_s(self.kafka.pid), "postgres": cpu_s(self.pg.pid, children=True)}

    def sample_rss(self) -> None:
        """Kafka's VmHWM; PostgreSQL's largest process and the sum over its processes (its backends come
        and go with the services' pools, so the sum is sampled while they run)."""
        pg = [mb for p in [self.pg.pid, *child_pids(self.pg.pid or 0)] if (mb := hwm_mb(p))]
        for key, mb in (
            ("kafka", hwm_mb(self.kafka.pid)),
            ("postgres_largest", max(pg, default=0.0)),
            ("postgres_sum", sum(pg)),
            ("postgres_processes", float(len(pg))),
        ):
            self.peak_mb[key] = max(self.peak_mb.get(key, 0.0), mb)


@dataclass
class Cluster:
    """Four service processes on one PostgreSQL server (a database each) and one Kafka broker."""

    servers: Servers
    urls: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]
    dsns: dict[str, str]
    namespace: str
    peak_mb: dict[str, float] = field(default_factory=dict)

    def sample_rss(self) -> None:
        """Keep each service's VmHWM (read while it runs: /proc forgets it at exit)."""
        self.servers.sample_rss()
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), hwm_mb(proc.pid))

    def cpu(self) -> dict[str, float]:
        return {s: cpu_s(p.pid) for s, p in self.procs.items()} | self.servers.cpu()

    def signal(self, services: tuple[str, ...], sig: int) -> None:
        for s in services:
            self.procs[s].send_signal(sig)

    def trouble(self, what: str) -> list[str]:
        """The lines of the services' logs that report errors, prefixed with where they came from."""
        found = []
        for service, log in self.logs.items():
            for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
                if TROUBLE.search(line):
                    found.append(f"{what}/{service}: {line.strip()[:300]}")
        return found

    def warnings(self) -> Counter[str]:
        """The services' WARNING lines, counted by message with numbers and ids blanked."""
        seen: Counter[str] = Counter()
        for service, log in self.logs.items():
            for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
                if " WARNING " in line:
                    message = line.split(" WARNING ", 1)[1]
                    seen[f"{service}: {re.sub(r'[0-9a-f]{8,}|[0-9]+', '#', message)[:200]}"] += 1
        return seen


@contextlib.contextmanager
def cluster(servers: Servers, data: Path, **extra: str) -> Iterator[Cluster]:
    """Fresh databases and a fresh topic namespace, four services started together; stopped by PID."""
    tag = uuid.uuid4().hex[:8]
    pg = servers.pg
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    data.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {s: data / f"{s}.log" for s in SERVICES}
    dsns: dict[str, str] = {}
    c = Cluster(servers, {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}, procs, logs, dsns, f"b{tag}")
    try:
        dsns.update({s: pg.create_database(f"bench_{tag}_{s}") for s in SERVICES})
        env = {k: v for k, v in os.environ.items() if not k.startswith("LYNCHPIN_")}
        env.update(
            {
                "LYNCHPIN_DATA_DIR": str(data),
                # analytics' own events (feedback) live in the shared store URL; the others' in their own
                "LYNCHPIN_STORE_URL": dsns["analytics"],
                **{f"LYNCHPIN_{s.upper()}_STORE_URL": dsns[s] for s in ("intake", "triage", "comms")},
                "LYNCHPIN_KAFKA_BOOTSTRAP": servers.kafka.bootstrap,
                "LYNCHPIN_KAFKA_PARTITIONS": str(PARTITIONS),
                "LYNCHPIN_KAFKA_NAMESPACE": c.namespace,  # fresh topics and consumer groups
                "LYNCHPIN_ADMIN_TOKEN": ADMIN,
                "LYNCHPIN_INTEGRATION_KEY": KEY,
                "LYNCHPIN_SECRET": "b" * 32,
                "LYNCHPIN_LOG_LEVEL": "WARNING",
                **{f"LYNCHPIN_{s.upper()}_PORT": str(p) for s, p in ports.items()},
                **extra,
            }
        )
        for service in SERVICES:
            with logs[service].open("ab") as out:
                procs[service] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{service}"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        for service in SERVICES:
            try:
                wait_ready(f"{c.urls[service]}/readyz", timeout=120)
            except RuntimeError:
                text = logs[service].read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{service} not ready:\n{text}") from None
        yield c
    finally:
        c.sample_rss()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused one could not stop
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for s in dsns:
            with contextlib.suppress(Exception):
                pg.drop_database(f"bench_{tag}_{s}")


def kafka_trouble(log: Path) -> list[str]:
    """The broker's errors, and any change of its fencing after it first started serving (a broker whose
    heartbeats to its own controller are late under load is fenced, and its partitions lose their leader)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    started = text.find("Finished waiting for the broker to be unfenced")
    return [
        f"kafka: {line.strip()[:300]}"
        for line in text[max(started, 0) :].splitlines()[1:]
        if " ERROR " in line or ("fenc" in line.lower() and started >= 0)
    ]


# ------------------------------------------------------------------------------------ ingest


def admin_get(base: str, path: str, **params: Any) -> Any:
    r = httpx.get(f"{base}{path}", params=params, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    return r.json() if r.status_code == 200 else None


async def intake_truth(dsn: str, storm_key: str) -> tuple[int, int, int]:
    """From intake's own store: incidents opened, incidents the storm's key opened, and the storm
    incident's alerts (attached plus repeated)."""
    conn = await asyncpg.connect(dsn)
    try:
        opened = await conn.fetchval("SELECT count(*) FROM intake.events WHERE type = 'IncidentOpened'")
        storm = await conn.fetch(
            "SELECT DISTINCT data->>'incident_id' AS id FROM intake.events"
            " WHERE type = 'AlertAttached' AND data->>'dedup_key' = $1",
            storm_key,
        )
        alerts = await conn.fetchval(
            "SELECT count(*) FROM intake.events WHERE type IN ('AlertAttached', 'AlertRepeated')"
            " AND data->>'incident_id' = ANY($1::text[])",
            [r["id"] for r in storm],
        )
    finally:
        await conn.close()
    return int(opened), len(storm), int(alerts)


SUBSCRIBED: dict[str, tuple[str, ...]] = {
    "triage": ("intake",),
    "comms": ("intake", "triage"),
    "analytics": ("intake", "triage", "comms"),
}
"""Which services' topics each consumer group reads (as each service's app wires its bus)."""


async def backlog(c: Cluster) -> dict[str, int]:
    """What is still to flow: events each relay has not published yet (`relay:<service>`), and records each
    consumer group has not committed yet (`<service> group`)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    left: dict[str, int] = {}
    for service in ("intake", "triage", "comms"):
        conn = await asyncpg.connect(c.dsns[service])
        try:
            left[f"relay:{service}"] = await conn.fetchval(
                f"SELECT count(*) FROM {service}.events e WHERE NOT EXISTS (SELECT 1 FROM"
                f" {service}.checkpoints c WHERE c.consumer = 'relay:kafka'"
                " AND (e.tx, e.position) <= (c.tx::text::xid8, c.position))"
            )
        finally:
            await conn.close()
    bootstrap = c.servers.kafka.bootstrap
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await ends.start()
    try:
        for group, sources in SUBSCRIBED.items():
            topics = {f"{c.namespace}.{s}.events" for s in sources}
            committed = await admin.list_consumer_group_offsets(f"{c.namespace}.{group}")
            partitions = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
            end = await ends.end_offsets(partitions) if partitions else {}
            left[f"{group} group"] = sum(
                n - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                for tp, n in end.items()
            )
    finally:
        await ends.stop()
        await admin.close()
    return left


@dataclass(frozen=True)
class CatchUp:
    seconds: float
    incidents: int
    expected_incidents: int
    storm_alerts: int
    expected_storm_alerts: int
    storm_incidents_intake: int
    storm_incidents_analytics: int
    left: dict[str, int]

    @property
    def complete(self) -> bool:
        return (self.incidents, self.storm_alerts) == (
            self.expected_incidents,
            self.expected_storm_alerts,
        ) and not any(self.left.values())


def catch_up(c: Cluster, storm_key: str, timeout: float) -> CatchUp:
    """Wait until nothing is left to flow (every relay published, every consumer group committed all) and
    analytics holds what intake's store holds: every incident, and every copy on the storm's incident.
    Intake's store is read again each time: requests the load tool gave up on may still be committing."""
    began = time.monotonic()
    incidents = alerts = 0
    items: list[dict[str, Any]] = []
    left: dict[str, int] = {}
    while True:
        c.sample_rss()
        opened, storm_opened, storm_alerts = run_async(lambda: intake_truth(c.dsns["intake"], storm_key))
        status = admin_get(c.urls["analytics"], "/v1/status")
        incidents = status["incidents"] if status else 0
        listed = admin_get(c.urls["analytics"], "/v1/incidents", service="bench", limit=500)
        items = listed["items"] if listed else []
        alerts = max((i["alert_count"] for i in items), default=0)
        left = run_async(lambda: backlog(c))
        settled = (incidents, alerts) == (opened, storm_alerts) and not any(left.values())
        if settled or time.monotonic() > began + timeout:
            break
        time.sleep(0.2)
    return CatchUp(
        seconds=time.monotonic() - began,
        incidents=incidents,
        expected_incidents=opened,
        storm_alerts=alerts,
        expected_storm_alerts=storm_alerts,
        storm_incidents_intake=storm_opened,
        storm_incidents_analytics=sum(1 for i in items if i["alert_count"] > 1),
        left=left,
    )


WARM_UP = 10


def warm_up(c: Cluster, n: int = WARM_UP, timeout: float = 180) -> float:
    """Send `n` critical alerts at once and wait until analytics shows each with its priority and nothing is
    left to flow: the JVM's JIT, the consumer groups and the pools are warm, and idle, before any timing."""
    began = time.monotonic()
    headers = {"Authorization": f"Bearer {KEY}"}
    tag = uuid.uuid4().hex[:6]
    with httpx.Client(base_url=c.urls["intake"], headers=headers, timeout=60) as client:
        for i in range(n):
            body = {
                "title": f"Warm {i}",
                "service": "warmup",
                "severity": "critical",
                "dedup_key": f"w{tag}{i}",
            }
            client.post("/v1/alerts", json=body).raise_for_status()
    while time.monotonic() < began + timeout:
        listed = admin_get(c.urls["analytics"], "/v1/incidents", service="warmup", limit=500)
        items = listed["items"] if listed else []
        if sum(1 for i in items if i["priority"]) >= n and not any(run_async(lambda: backlog(c)).values()):
            break
        time.sleep(0.2)
    return time.monotonic() - began


# ------------------------------------------------------------------------------------ delivery


@dataclass(frozen=True)
class Delivery:
    rate: float
    seconds: float
    offered: int
    posted_rate: float
    latencies_ms: list[float]
    in_window: int
    drain_s: float
    errors: int
    cpu_s: dict[str, float]
    wall_s: float
    left: dict[str, int]

    @property
    def drained(self) -> bool:
        return len(self.latencies_ms) == self.offered

    def row(self) -> dict[str, Any]:
        d = self.latencies_ms
        return {
            "offered_rate": self.rate,
            "seconds": self.seconds,
            "offered": self.offered,
            "posted_rate": round(self.posted_rate, 1),
            "post_errors": self.errors,
            "delivered": len(d),
            "p50_ms": round(pct(d, 0.5), 1) if d else None,
            "p99_ms": round(pct(d, 0.99), 1) if d else None,
            "arrived_per_s_while_offered": round(self.in_window / self.seconds, 1),
            "rest_took_s": round(self.drain_s, 1),
            "cpu_ms_per_alert": {k: round(v * 1000 / self.offered, 1) for k, v in self.cpu_s.items()},
            "cores_used": {k: round(v / self.wall_s, 2) for k, v in self.cpu_s.items()},
            "left_after_drain": self.left,
        }


async def offer(c: Cluster, hook: Any, rate: float, seconds: float, drain: float, tag: str) -> Delivery:
    """Offer critical alerts at `rate` for `seconds` (open loop, each its own incident); time each from its
    POST to its responders' webhook; wait up to `drain` s after the last POST for the rest."""
    sent: dict[str, float] = {}
    errors = 0
    first = len(hook.received)
    cpu0, wall0 = c.cpu(), time.monotonic()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=c.urls["intake"], headers={"Authorization": f"Bearer {KEY}"}, limits=limits, timeout=120
    ) as client:

        async def post(i: int) -> None:
            nonlocal errors
            start = time.perf_counter()
            try:
                r = await client.post("/v1/alerts", json=page_alert(i, f"{tag}-"))
                sent[r.json()["incident_id"]] = start
            except (httpx.HTTPError, KeyError, ValueError):
                errors += 1

        n = int(rate * seconds)
        began = time.perf_counter()
        posts = []
        for i in range(n):
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            posts.append(asyncio.create_task(post(i)))
        offered_until = time.perf_counter()
        await asyncio.gather(*posts)
        posted_rate = n / (time.perf_counter() - began)
    seen: dict[str, float] = {}
    read = first
    deadline = time.monotonic() + drain
    while time.monotonic() < deadline and len(seen) < len(sent):
        for got in hook.received[read:]:
            read += 1
            incident = orjson.loads(got.body)["incident_id"]
            if incident in sent and incident not in seen:
                seen[incident] = got.at
        c.sample_rss()
        await asyncio.sleep(0.05)
    cpu1 = c.cpu()
    left = await backlog(c) if len(seen) < len(sent) else {}
    return Delivery(
        rate=rate,
        seconds=seconds,
        offered=n,
        posted_rate=posted_rate,
        latencies_ms=[(at - sent[i]) * 1000 for i, at in seen.items()],
        in_window=sum(1 for at in seen.values() if at <= offered_until),
        drain_s=max(0.0, max(seen.values(), default=offered_until) - offered_until),
        errors=errors,
        cpu_s={k: cpu1[k] - cpu0[k] for k in cpu0},
        wall_s=time.monotonic() - wall0,
        left=left,
    )


async def deliveries(
    servers: Servers, data: Path, rates: list[float], seconds: float, drain: float
) -> tuple[list[Delivery], list[Cluster]]:
    """Each rate in turn (lowest first) on one cluster; a fresh cluster after a rate that left a backlog."""
    from tests.receivers import webhook_receiver

    done: list[Delivery] = []
    used: list[Cluster] = []
    policy = data / "policy.yaml"
    data.mkdir(parents=True, exist_ok=True)
    policy.write_text(POLICY)
    async with webhook_receiver() as hook:
        stack = contextlib.ExitStack()
        try:
            c: Cluster | None = None
            for n, rate in enumerate(sorted(rates)):
                if c is None:
                    where = data / f"cluster{n}"
                    extra = {"LYNCHPIN_WEBHOOK_URL": hook.url, "LYNCHPIN_POLICY": str(policy)}
                    c = await asyncio.to_thread(stack.enter_context, cluster(servers, where, **extra))
                    used.append(c)
                    await asyncio.to_thread(warm_up, c)
                d = await offer(c, hook, rate, seconds, drain, tag=f"r{n}")
                done.append(d)
                if not d.drained:
                    await asyncio.to_thread(stack.close)
                    c = None
        finally:
            await asyncio.to_thread(stack.close)
    return done, used


# ------------------------------------------------------------------------------------ the run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a small run (about two minutes)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--alerts", type=int, default=20000, help="alerts per ingest measurement")
    p.add_argument("--samples", type=int, default=60, help="alerts timed until visible in analytics")
    p.add_argument("--rate", type=float, default=5.0, help="offered alerts/s for the delivery latency")
    p.add_argument("--higher", default="20,50,200", help="higher offered rates to probe ('' for none)")
    p.add_argument("--latency-seconds", type=float, default=15.0, help="how long each rate is offered")
    p.add_argument("--drain", type=float, default=60.0, help="max seconds to wait for late deliveries")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    return p


def quick(args: argparse.Namespace) -> argparse.Namespace:
    if args.quick:
        args.runs, args.alerts, args.samples = 1, 500, 10
        args.latency_seconds, args.drain, args.higher = 5.0, 15.0, "50"
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure everything; the figures as a dict (what `main` prints as a table)."""
    args = quick(args)
    results: dict[str, list[Load]] = {"noop": [], "distinct": [], "storm": [], "alone": []}
    catchups: list[CatchUp] = []
    visible: list[float] = []
    problems: list[str] = []
    peaks: dict[str, float] = {}
    warnings: Counter[str] = Counter()
    pipeline: list[dict[str, float]] = []
    rates = [args.rate] + [float(r) for r in args.higher.split(",") if r.strip()]
    with (
        tempfile.TemporaryDirectory(prefix="lynchpin-bench-") as tmp,
        PostgresServer() as pg,
        KafkaServer(fast_jit=False) as kafka,  # full JIT: steady state, not start-up speed
        contextlib.ExitStack() as stack,
    ):
        servers = Servers(pg, kafka)

        def keep(c: Cluster, what: str) -> None:
            nonlocal warnings
            for name, mb in c.peak_mb.items():
                peaks[name] = max(peaks.get(name, 0.0), mb)
            problems.extend(c.trouble(what))
            warnings += c.warnings()

        for n in range(args.runs):
            with phase(f"run {n + 1}/{args.runs}: no-op baseline"), noop() as (url, baseline):
                results["noop"].append(load(url, args, duplicate=False, tag=f"n{n}", pid=baseline.pid))
            with phase(f"run {n + 1}/{args.runs}: start and warm up"):
                c = stack.enter_context(cluster(servers, Path(tmp) / f"ingest{n}"))
                warm_up(c)
            began = time.monotonic()
            with phase(f"run {n + 1}/{args.runs}: ingest"):
                intake = c.procs["intake"].pid
                results["distinct"].append(
                    load(c.urls["intake"], args, duplicate=False, tag=f"d{n}", pid=intake)
                )
                c.sample_rss()
                results["storm"].append(load(c.urls["intake"], args, duplicate=True, tag=f"s{n}", pid=intake))
                c.sample_rss()
            with phase(f"run {n + 1}/{args.runs}: catch up"):
                catchups.append(caught := catch_up(c, f"s{n}-storm", timeout=900))
                alerts = caught.expected_incidents - WARM_UP + caught.expected_storm_alerts - 1
                took = time.monotonic() - began
                pipeline.append(
                    {"alerts": alerts, "seconds": round(took, 1), "per_s": round(alerts / took, 1)}
                )
            with phase(f"run {n + 1}/{args.runs}: visible latency"):
                samples = args.samples // args.runs
                visible += asyncio.run(visible_latency(c.urls["intake"], c.urls["analytics"], samples))
            with phase(f"run {n + 1}/{args.runs}: ingest, consumers paused"):
                c.signal(CONSUMERS, signal.SIGSTOP)  # last: they rejoin their groups after this
                try:
                    results["alone"].append(
                        load(c.urls["intake"], args, duplicate=False, tag=f"a{n}", pid=c.procs["intake"].pid)
                    )
                finally:
                    c.signal(CONSUMERS, signal.SIGCONT)
            stack.close()
            keep(c, f"ingest{n}")
        with phase(f"delivery latency at {', '.join(f'{r:g}' for r in rates)} alerts/s"):
            done, used = asyncio.run(
                deliveries(servers, Path(tmp) / "delivery", rates, args.latency_seconds, args.drain)
            )
        for n, c in enumerate(used):
            keep(c, f"delivery{n}")
        problems += kafka_trouble(kafka.log_path)

    base = statistics.median(r.rate for r in results["noop"])
    ingest = {
        key: {
            "rate": round(statistics.median(r.rate for r in rs), 1),
            "vs_noop": round(statistics.median(r.rate for r in rs) / base, 3),
            "p50_ms": round(statistics.median(r.p50_ms for r in rs), 1),
            "p99_ms": round(statistics.median(r.p99_ms for r in rs), 1),
            "requests": sum(r.requests for r in rs),
            "cpu_ms": round(statistics.median(r.cpu_ms for r in rs if r.cpu_ms is not None), 3),
        }
        for key, rs in results.items()
    }
    return {
        "tool": "wrk" if shutil.which("wrk") else "httpx",
        "concurrency": args.concurrency,
        "runs": args.runs,
        "ingest": ingest,
        "storm_incidents": [c.storm_incidents_analytics for c in catchups],
        "pipeline": pipeline,
        "catch_up": [
            {
                "seconds": round(c.seconds, 1),
                "complete": c.complete,
                "incidents": c.incidents,
                "expected_incidents": c.expected_incidents,
                "storm_alerts": c.storm_alerts,
                "expected_storm_alerts": c.expected_storm_alerts,
                "storm_incidents_in_intake": c.storm_incidents_intake,
            }
            for c in catchups
        ],
        "visible_ms": {
            "samples": len(visible),
            "p50": round(pct(visible, 0.5), 1) if visible else None,
            "p99": round(pct(visible, 0.99), 1) if visible else None,
        },
        "delivery": [d.row() for d in done],
        "peak_rss_mb": {
            **{s: round(peaks.get(s, 0.0)) for s in SERVICES},
            **{k: round(v) for k, v in servers.peak_mb.items()},
        },
        "problems": problems,
        "warnings": dict(warnings.most_common()),
    }


def report(r: dict[str, Any]) -> str:
    lines = ingest_table("Durable ingest, distributed mode: four processes, PostgreSQL, Kafka", r)
    lines.append(f"\nIncidents opened by each storm: {r['storm_incidents']} (must be [1, ...])")
    for c in r["catch_up"]:
        lines.append(
            f"Analytics caught up {c['seconds']:.1f}s after the storm: incidents "
            f"{c['incidents']}/{c['expected_incidents']} of intake's store, storm incident alerts "
            f"{c['storm_alerts']}/{c['expected_storm_alerts']}" + ("" if c["complete"] else "  INCOMPLETE")
        )
    for p in r["pipeline"]:
        lines.append(
            f"Through every consumer: {p['alerts']} alerts (distinct and storm copies) in {p['seconds']}s "
            f"from the first POST to settled, {p['per_s']} alerts/s"
        )
    v = r["visible_ms"]
    lines.append(f"\nAlert -> visible in analytics (with its priority), {v['samples']} sequential alerts:")
    lines.append(f"  p50 {v['p50']} ms   p99 {v['p99']} ms")
    lines.append(
        "\nAlert -> responders' webhook delivered (critical alerts, open loop, each its own incident):"
    )
    lines.append(
        f"{'offered/s':>9} {'for s':>6} {'posted/s':>9} {'delivered':>11} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'arrived/s while offered':>24} {'rest took s':>12}"
    )
    for d in r["delivery"]:
        got = f"{d['delivered']}/{d['offered']}"
        lines.append(
            f"{d['offered_rate']:>9g} {d['seconds']:>6g} {d['posted_rate']:>9.1f} {got:>11} "
            f"{d['p50_ms'] or 0:>9.1f} {d['p99_ms'] or 0:>9.1f} {d['arrived_per_s_while_offered']:>24.1f} "
            f"{d['rest_took_s']:>12.1f}"
        )
    for d in r["delivery"]:
        if d["left_after_drain"]:
            left = ", ".join(f"{k} {v}" for k, v in d["left_after_drain"].items())
            lines.append(f"  {d['offered_rate']:g}/s, still to flow when the wait ended: {left}")
    lines.append("CPU per offered alert, ms (and cores used while offered and draining):")
    for d in r["delivery"]:
        cpu = ", ".join(f"{k} {v:g} ({d['cores_used'][k]:.2f})" for k, v in d["cpu_ms_per_alert"].items())
        lines.append(f"  {d['offered_rate']:g}/s: {cpu}")
    p = r["peak_rss_mb"]
    lines.append(
        "\nPeak RSS (VmHWM), MB: "
        + ", ".join(f"{s} {p[s]}" for s in SERVICES)
        + f"; Kafka {p['kafka']}; PostgreSQL largest process {p['postgres_largest']}"
        f" (sum over {p['postgres_processes']} processes {p['postgres_sum']}, shared memory counted in each)"
    )
    lines.append(f"\nService log lines with ERROR/Traceback: {len(r['problems'])}")
    lines += [f"  {line}" for line in r["problems"][:20]]
    lines.append(f"Service WARNING lines: {sum(r['warnings'].values())}")
    lines += [f"  {n} x {w}" for w, n in list(r["warnings"].items())[:10]]
    return "\n".join(lines)


def main() -> None:
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwind: every `finally` stops what it started

    signal.signal(signal.SIGTERM, stop)
    args = parser().parse_args()
    figures = run(args)
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    print(report(figures))


if __name__ == "__main__":
    main()

"""`python -m bench [--quick] [--sections embedded,analytics,distributed]`: the benchmark suite.

- embedded: durable ingest (20,000 distinct alerts, a storm of 20,000 copies of one alert, at a fixed
  concurrency) against a no-op FastAPI endpoint measured in the same run (ratios, medians of runs);
  the rate every consumer kept up with; alert -> visible in analytics, once caught up; alert ->
  responders' webhook at a fixed offered rate; peak RSS.
- analytics (`bench.analytics`): rebuild rate against a raw read of the same log, and query latency,
  on a generated log of 1,000,000 events.
- distributed (`bench.distributed`): the embedded figures with four processes, PostgreSQL and Kafka.

Every figure goes to `bench/results/results.json`, and a picture of them as ratios to their baselines
or targets to `bench/results/benchmarks.png` (`bench.plot`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

ADMIN, KEY = "bench-admin", "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


@contextmanager
def process(args: list[str], env: dict[str, str], ready: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(ready)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def noop() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    with process([sys.executable, "-m", "bench.noop"], env, f"http://127.0.0.1:{port}/docs") as proc:
        yield f"http://127.0.0.1:{port}", proc


@contextmanager
def lynchpin(data: Path, **extra: str) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    ports = {s: free_port() for s in ("INTAKE", "TRIAGE", "COMMS", "ANALYTICS")}
    env = {
        **os.environ,
        "LYNCHPIN_DATA_DIR": str(data),
        "LYNCHPIN_ADMIN_TOKEN": ADMIN,
        "LYNCHPIN_INTEGRATION_KEY": KEY,
        "LYNCHPIN_SECRET": "b" * 32,
        "LYNCHPIN_LOG_LEVEL": "WARNING",
        **{f"LYNCHPIN_{s}_PORT": str(p) for s, p in ports.items()},
        **extra,
    }
    with process(
        [sys.executable, "-m", "shared.launcher"], env, f"http://127.0.0.1:{ports['ANALYTICS']}/readyz"
    ) as proc:
        yield f"http://127.0.0.1:{ports['INTAKE']}", f"http://127.0.0.1:{ports['ANALYTICS']}", proc


@dataclass(frozen=True)
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_ms: float | None = None
    """CPU time (user + system) of the serving process per request, while the load ran: unlike a
    rate, little disturbed by what else runs on the machine."""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WRK_CAP_SECONDS = 900
"""The longest a count of alerts may take before wrk gives up on the rest (its duration)."""


def wrk_load(base: str, alerts: int, concurrency: int, *, duplicate: bool, tag: str) -> Load:
    """Offer `alerts` with wrk (one thread, fixed connections); every answer must be 202. The script
    says ENOUGH once that many answers are in and stops sending; interrupted then, wrk sums up the
    time until the last of them."""
    env = {
        **os.environ,
        "DEDUP": "storm" if duplicate else "distinct",
        "TAG": tag,
        "KEY": KEY,
        "ALERTS": str(alerts),
    }
    script = str(Path(__file__).with_name("alerts.lua"))
    with subprocess.Popen(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{WRK_CAP_SECONDS}s", "-s", script, base],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    ) as wrk:
        assert wrk.stdout is not None
        lines = []
        for line in wrk.stdout:
            if line.startswith("ENOUGH"):
                wrk.send_signal(signal.SIGINT)
            lines.append(line)
        if wrk.wait() != 0:
            raise RuntimeError(f"wrk failed against {base}: {''.join(lines)[-500:]}")
    line = next(x for x in lines if x.startswith("RESULT"))
    fields = dict(item.split("=") for item in line.split()[1:])
    if int(fields["failed"]) or int(fields["errors"]):
        raise RuntimeError(f"{base}: {fields['failed']} non-202 answers, {fields['errors']} socket errors")
    n = int(fields["requests"])
    return Load(n / float(fields["seconds"]), int(fields["p50_us"]) / 1000, int(fields["p99_us"]) / 1000, n)


async def httpx_load(base: str, n: int, concurrency: int, *, duplicate: bool, tag: str) -> Load:
    """The same without wrk: n alerts at a fixed concurrency from this process."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                key = f"{tag}-storm" if duplicate else f"{tag}-{i}"
                body = {"title": f"Alert {i}", "service": "bench", "severity": "warning", "dedup_key": key}
                start = time.perf_counter()
                r = await client.post("/v1/alerts", json=body)
                latencies.append(time.perf_counter() - start)
                if r.status_code != 202:
                    raise RuntimeError(f"HTTP {r.status_code}: {r.text}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return Load(n / elapsed, pct(latencies, 0.5) * 1000, pct(latencies, 0.99) * 1000, n)


def load(base: str, args: argparse.Namespace, *, duplicate: bool, tag: str, pid: int | None = None) -> Load:
    """Offer the load; with the serving process's `pid`, also its CPU time per request."""
    before = cpu_seconds(pid) if pid is not None else 0.0
    if shutil.which("wrk"):
        result = wrk_load(base, args.alerts, args.concurrency, duplicate=duplicate, tag=tag)
    else:
        result = asyncio.run(httpx_load(base, args.alerts, args.concurrency, duplicate=duplicate, tag=tag))
    if pid is None:
        return result
    cpu_ms = (cpu_seconds(pid) - before) * 1000 / result.requests
    return Load(result.rate, result.p50_ms, result.p99_ms, result.requests, cpu_ms)


async def visible_latency(intake: str, analytics: str, samples: int) -> list[float]:
    """Post one alert at a time; time until analytics shows it with the priority triage gave it."""
    out = []
    async with httpx.AsyncClient(timeout=30) as client:
        for i in range(samples):
            body = {
                "title": f"Latency {i}",
                "service": "bench",
                "severity": "critical",
                "dedup_key": f"lat-{i}",
            }
            start = time.perf_counter()
            r = await client.post(
                f"{intake}/v1/alerts", json=body, headers={"Authorization": f"Bearer {KEY}"}
            )
            incident = r.json()["incident_id"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                d = await client.get(
                    f"{analytics}/v1/incidents/{incident}", headers={"Authorization": f"Bearer {ADMIN}"}
                )
                if d.status_code == 200 and d.json()["priority"]:
                    break
                await asyncio.sleep(0.001)
            out.append((time.perf_counter() - start) * 1000)
    return out


def page_alert(i: int, tag: str) -> dict[str, str]:
    """A critical alert of its own service and key: a new incident that pages its responders."""
    return {"title": f"Page {i}", "service": f"svc{i}", "severity": "critical", "dedup_key": f"{tag}{i}"}


POLICY = """
comms:
  coalesce: {max_per_window: 1000000}
"""


async def notification_latency(rate: float, seconds: float, data: Path) -> tuple[list[float], int]:
    """Offer critical alerts at a fixed rate (open loop); time each from its POST to the arrival of
    its responders' notification at a real webhook receiver. Returns latencies (ms) and alerts sent."""
    from tests.receivers import webhook_receiver

    sent: dict[str, float] = {}
    latencies: list[float] = []
    async with webhook_receiver() as hook:
        policy = data / "policy.yaml"
        policy.write_text(POLICY)
        with lynchpin(data, LYNCHPIN_WEBHOOK_URL=hook.url, LYNCHPIN_POLICY=str(policy)) as (intake, _, _proc):
            headers = {"Authorization": f"Bearer {KEY}"}
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(
                base_url=intake, headers=headers, limits=limits, timeout=30
            ) as client:

                async def post(i: int) -> None:
                    start = time.perf_counter()
                    r = await client.post("/v1/alerts", json=page_alert(i, "p"))
                    sent[r.json()["incident_id"]] = start

                n = int(rate * seconds)
                began = time.perf_counter()
                posts = []
                for i in range(n):
                    await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
                    posts.append(asyncio.create_task(post(i)))
                await asyncio.gather(*posts)
                deadline = time.monotonic() + 60
                seen: set[str] = set()
                while time.monotonic() < deadline and len(seen) < n:
                    for got in hook.received[len(seen) :]:
                        incident = orjson.loads(got.body)["incident_id"]
                        if incident in sent and incident not in seen:
                            seen.add(incident)
                            latencies.append((got.at - sent[incident]) * 1000)
                    await asyncio.sleep(0.05)
    return latencies, len(sent)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def backlog(data: Path) -> int:
    """Events each consumer of an embedded Lynchpin in `data` takes, in the logs it follows, that it
    has not handled yet. Every event a consumer handled left one tracking record under its name for
    that source, so counts suffice; the logs and records are read from the SQLite files, read-only."""
    import sqlite3
    from contextlib import closing

    from services.analytics.rebuild import read_store_path
    from shared.bus.base import tracking_name
    from shared.settings import Settings
    from shared.store import sqlite_path
    from tests.faults.audit import FOLLOWS, inputs

    settings = Settings(data_dir=data)
    takes = inputs(settings)

    def count(path: str, sql: str, *args: str) -> int:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
            return int(conn.execute(sql, args).fetchone()[0])

    left = 0
    for consumer, sources in FOLLOWS.items():
        own = (
            read_store_path(settings)
            if consumer == "analytics"
            else sqlite_path(settings.store_url_for(consumer))
        )
        types = sorted(takes[consumer])
        where = f" WHERE type IN ({', '.join('?' * len(types))})"
        for source in sources:
            events = count(
                sqlite_path(settings.store_url_for(source)), f"SELECT count(*) FROM events{where}", *types
            )
            handled = count(
                own, "SELECT count(*) FROM handled WHERE consumer = ?", tracking_name(consumer, source)
            )
            left += max(0, events - handled)
    return left


def settle(data: Path, timeout: float = 600) -> tuple[float, int]:
    """Wait until every consumer has handled every event it takes; the seconds waited, and the
    events still not handled (0 unless it gave up after `timeout`)."""
    began = time.monotonic()
    while (left := backlog(data)) and time.monotonic() < began + timeout:
        time.sleep(0.5)
    return time.monotonic() - began, left


def embedded(args: argparse.Namespace) -> dict[str, Any]:
    """Durable ingest, alert -> visible and alert -> webhook in embedded mode; the figures as a dict."""
    results: dict[str, list[Load]] = {"noop": [], "distinct": [], "storm": []}
    latencies: list[float] = []
    peak = 0.0
    incidents_after_storm: list[int] = []
    settled: list[dict[str, float]] = []
    for run in range(args.runs):
        with noop() as (url, baseline):
            results["noop"].append(load(url, args, duplicate=False, tag=f"n{run}", pid=baseline.pid))
        with tempfile.TemporaryDirectory() as tmp, lynchpin(Path(tmp)) as (intake, analytics, proc):
            began = time.monotonic()
            results["distinct"].append(load(intake, args, duplicate=False, tag=f"d{run}", pid=proc.pid))
            results["storm"].append(load(intake, args, duplicate=True, tag=f"s{run}", pid=proc.pid))
            caught_up, left = settle(Path(tmp))
            alerts = results["distinct"][-1].requests + results["storm"][-1].requests
            settled.append(
                {
                    "alerts": alerts,
                    "seconds": time.monotonic() - began,
                    "catch_up_s": caught_up,
                    "left": left,
                }
            )
            incidents_after_storm.append(storm_incidents(analytics))
            latencies += asyncio.run(visible_latency(intake, analytics, args.samples // args.runs))
            peak = max(peak, rss_mb(proc.pid))

    deliveries = []
    for offered_rate in [float(r) for r in args.rates.split(",") if r.strip()]:
        with tempfile.TemporaryDirectory() as tmp:
            delivered, offered = asyncio.run(notification_latency(offered_rate, args.seconds, Path(tmp)))
        deliveries.append(
            {
                "offered_rate": offered_rate,
                "seconds": args.seconds,
                "offered": offered,
                "delivered": len(delivered),
                "p50_ms": pct(delivered, 0.5) if delivered else None,
                "p99_ms": pct(delivered, 0.99) if delivered else None,
            }
        )

    base = statistics.median(r.rate for r in results["noop"])
    return {
        "tool": "wrk" if shutil.which("wrk") else "httpx",
        "concurrency": args.concurrency,
        "runs": args.runs,
        "ingest": {
            key: {
                "rate": statistics.median(r.rate for r in rs),
                "vs_noop": statistics.median(r.rate for r in rs) / base,
                "p50_ms": statistics.median(r.p50_ms for r in rs),
                "p99_ms": statistics.median(r.p99_ms for r in rs),
                "requests": sum(r.requests for r in rs),
                "cpu_ms": statistics.median(r.cpu_ms for r in rs if r.cpu_ms is not None),
            }
            for key, rs in results.items()
        },
        "storm_incidents": incidents_after_storm,
        "settled": [{**r, "alerts_per_s": r["alerts"] / r["seconds"]} for r in settled],
        "visible_ms": {"samples": len(latencies), "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99)},
        "delivery": deliveries,
        "peak_rss_mb": peak,
    }


WORKLOADS = {
    "noop": "no-op FastAPI endpoint (baseline)",
    "distinct": "distinct alerts",
    "storm": "duplicate storm (one alert key)",
    "alone": "distinct alerts, consumers paused",
}


def ingest_table(title: str, r: dict[str, Any]) -> list[str]:
    """The ingest rows of a run's figures (embedded or distributed), against the same run's no-op."""
    lines = [
        f"\n{title} ({r['tool']}, {r['concurrency']} connections, median of {r['runs']} runs)",
        f"{'workload':<40} {'alerts/s':>9} {'vs no-op':>9} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}"
        f" {'CPU ms/req':>11}",
    ]
    for key, name in WORKLOADS.items():
        if (i := r["ingest"].get(key)) is not None:
            cpu = f"{i['cpu_ms']:>11.3f}" if i.get("cpu_ms") is not None else f"{'':>11}"
            lines.append(
                f"{name:<40} {i['rate']:>9,.0f} {i['vs_noop']:>9.2f} {i['p50_ms']:>8.1f} "
                f"{i['p99_ms']:>8.1f} {i['requests']:>9} {cpu}"
            )
    return lines


def report(r: dict[str, Any]) -> str:
    lines = ingest_table("Durable ingest, embedded mode", r)
    v = r["visible_ms"]
    lines += [
        f"\nIncidents opened by each storm: {r['storm_incidents']} (must be [1, ...])",
        "\nThrough every consumer (from the first POST of a run until every consumer had handled every"
        " event it takes):",
        *(
            f"  {t['alerts']} alerts in {t['seconds']:.1f} s ({t['catch_up_s']:.1f} s after the load"
            f" stopped): {t['alerts_per_s']:.0f} alerts/s"
            + (f"; {t['left']} events still not handled when it gave up waiting" if t.get("left") else "")
            for t in r.get("settled", [])
        ),
        f"\nAlert -> visible in analytics (with its priority), {v['samples']} sequential alerts, once"
        " caught up:",
        f"  p50 {v['p50']:.1f} ms   p99 {v['p99']:.1f} ms",
        "\nAlert -> responders' webhook delivered (open loop, each alert its own incident):",
        *(
            f"  {d['offered_rate']:g} alerts/s offered for {d['seconds']:g}s: "
            f"{d['delivered']}/{d['offered']} delivered   "
            f"p50 {d['p50_ms'] or 0:.1f} ms   p99 {d['p99_ms'] or 0:.1f} ms"
            for d in r["delivery"]
        ),
        f"\nPeak RSS of the embedded process (all four services in one): {r['peak_rss_mb']:.0f} MB",
    ]
    return "\n".join(lines)


def plotted(results: dict[str, Any]) -> dict[str, Any]:
    """The figures `bench.plot` draws, against the targets the project set itself."""
    out: dict[str, Any] = {"latencies": {}, "memory": {}}
    for mode, target_ms in (("embedded", 100.0), ("distributed", 250.0)):
        r = results.get(mode)
        if not r:
            continue
        ingest = r["ingest"]
        out["ingest" if mode == "embedded" else f"ingest_{mode}"] = {
            "noop": ingest["noop"]["rate"],
            "distinct": ingest["distinct"]["rate"],
            "storm": ingest["storm"]["rate"],
            "target_ratio": 0.5,
        }
        for d in r["delivery"]:
            if d.get("p99_ms"):
                name = f"{mode}: alert -> webhook p99 at {d['offered_rate']:g}/s"
                out["latencies"][name] = {"ms": d["p99_ms"], "target_ms": target_ms}
    if results.get("embedded"):
        out["memory"]["embedded process RSS"] = {"mb": results["embedded"]["peak_rss_mb"], "limit_mb": 300.0}
    if results.get("distributed"):
        for service in ("intake", "triage", "comms", "analytics"):
            mb = results["distributed"]["peak_rss_mb"].get(service)
            if mb:
                out["memory"][f"{service} RSS (distributed)"] = {"mb": mb, "limit_mb": 300.0}
    if results.get("analytics"):
        out["analytics"] = results["analytics"]
        out["memory"]["analytics RSS at 1M events"] = {
            "mb": results["analytics"]["analytics_rss_mb"]["peak"],
            "limit_mb": 300.0,
        }
    return out


SECTIONS = ("embedded", "analytics", "distributed")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small run of every section")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"which to run, of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--alerts", type=int, default=20000, help="alerts per ingest measurement")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="how long each rate is offered (notification latency)"
    )
    parser.add_argument("--samples", type=int, default=200, help="alerts timed until visible in analytics")
    parser.add_argument(
        "--rates", default="20,200", help="offered alerts/s for the notification latency, one run each"
    )
    parser.add_argument("--events", type=int, default=None, help="analytics: events in the log (1,000,000)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results"), help="results folder"
    )
    args = parser.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.quick:
        args.runs, args.seconds, args.alerts, args.samples, args.rates = 1, 2.0, 1000, 20, "20"

    results: dict[str, Any] = {"quick": args.quick, "machine": machine()}
    if "embedded" in sections:
        results["embedded"] = embedded(args)
        print(report(results["embedded"]), flush=True)
    if "analytics" in sections:
        from bench import analytics

        events = args.events if args.events is not None else (50_000 if args.quick else 1_000_000)
        results["analytics"] = analytics.run(events)
        print(analytics.report(results["analytics"]), flush=True)
    if "distributed" in sections:
        from bench import distributed

        options = distributed.parser().parse_args(["--quick"] if args.quick else [])
        results["distributed"] = distributed.run(options)
        print(distributed.report(results["distributed"]), flush=True)

    from bench.plot import plot

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    picture = plot(plotted(results), args.out / "benchmarks.png")
    print(f"\nFigures: {args.out / 'results.json'}; picture: {picture}")


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0]}


def storm_incidents(analytics: str) -> int:
    """How many incidents of the service `bench` hold more than one alert (the storm's), read from
    analytics once `settle` saw every consumer caught up."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    items = httpx.get(
        f"{analytics}/v1/incidents", params={"service": "bench", "limit": 500}, headers=headers
    ).json()["items"]
    return sum(1 for i in items if i["alert_count"] > 1)


if __name__ == "__main__":
    main()

"""`python -m bench [--quick]`: durable ingest and alert-to-analytics latency, embedded mode,
each against a no-op FastAPI endpoint measured in the same run (ratios, medians of runs)."""

from __future__ import annotations

import argparse
import asyncio
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


def wrk_load(base: str, seconds: float, concurrency: int, *, duplicate: bool, tag: str) -> Load:
    """Offer load with wrk (one thread, fixed connections); every answer must be 202."""
    env = {**os.environ, "DEDUP": "storm" if duplicate else "distinct", "TAG": tag, "KEY": KEY}
    script = str(Path(__file__).with_name("alerts.lua"))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{round(seconds)}s", "-s", script, base],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
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


def load(base: str, args: argparse.Namespace, *, duplicate: bool, tag: str) -> Load:
    if shutil.which("wrk"):
        return wrk_load(base, args.seconds, args.concurrency, duplicate=duplicate, tag=tag)
    return asyncio.run(httpx_load(base, args.requests, args.concurrency, duplicate=duplicate, tag=tag))


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
                    body = {
                        "title": f"Page {i}",
                        "service": f"svc{i}",
                        "severity": "critical",
                        "dedup_key": f"p{i}",
                    }
                    start = time.perf_counter()
                    r = await client.post("/v1/alerts", json=body)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run, for CI")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement, with wrk")
    parser.add_argument("--requests", type=int, default=20000, help="per measurement, without wrk")
    parser.add_argument("--samples", type=int, default=200, help="alerts timed until visible in analytics")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="offered alerts/s for the notification latency"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds, args.requests, args.samples = 1, 2.0, 1000, 20

    results: dict[str, list[Load]] = {"noop": [], "distinct": [], "storm": []}
    latencies: list[float] = []
    peak = 0.0
    incidents_after_storm: list[int] = []
    for run in range(args.runs):
        with noop() as (url, _):
            results["noop"].append(load(url, args, duplicate=False, tag=f"n{run}"))
        with tempfile.TemporaryDirectory() as tmp, lynchpin(Path(tmp)) as (intake, analytics, proc):
            results["distinct"].append(load(intake, args, duplicate=False, tag=f"d{run}"))
            results["storm"].append(load(intake, args, duplicate=True, tag=f"s{run}"))
            incidents_after_storm.append(storm_incidents(analytics, f"s{run}-storm"))
            latencies += asyncio.run(visible_latency(intake, analytics, args.samples // args.runs))
            peak = max(peak, rss_mb(proc.pid))

    offered_rate = 20.0 if args.quick else args.rate
    with tempfile.TemporaryDirectory() as tmp:
        delivered, offered = asyncio.run(notification_latency(offered_rate, args.seconds, Path(tmp)))

    base = statistics.median(r.rate for r in results["noop"])
    tool = "wrk" if shutil.which("wrk") else "httpx"
    print(
        f"\nDurable ingest, embedded mode ({tool}, {args.concurrency} connections, "
        f"median of {args.runs} runs)"
    )
    print(f"{'workload':<34} {'alerts/s':>10} {'vs no-op':>9} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}")
    names = {
        "noop": "no-op FastAPI endpoint (baseline)",
        "distinct": "distinct alerts",
        "storm": "duplicate storm (one alert key)",
    }
    for key, name in names.items():
        rs = results[key]
        rate = statistics.median(r.rate for r in rs)
        print(
            f"{name:<34} {rate:>10,.0f} {rate / base:>9.2f} {statistics.median(r.p50_ms for r in rs):>8.1f} "
            f"{statistics.median(r.p99_ms for r in rs):>8.1f} {sum(r.requests for r in rs):>9}"
        )
    print(f"\nIncidents opened by each storm: {incidents_after_storm} (must be [1, ...])")
    print(f"\nAlert -> visible in analytics (with its priority), {len(latencies)} sequential alerts:")
    print(f"  p50 {pct(latencies, 0.5):.1f} ms   p99 {pct(latencies, 0.99):.1f} ms")
    print(f"\nAlert -> responders' webhook delivered, {offered_rate:g} alerts/s offered for {args.seconds:g}s:")
    print(
        f"  {len(delivered)}/{offered} delivered   "
        f"p50 {pct(delivered, 0.5):.1f} ms   p99 {pct(delivered, 0.99):.1f} ms"
    )
    print(f"\nPeak RSS of the embedded process (all four services in one): {peak:.0f} MB")


def storm_incidents(analytics: str, dedup_key: str) -> int:
    """How many incidents the storm's key opened, read from analytics once it caught up."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = httpx.get(f"{analytics}/v1/status", headers=headers).json()
        if not any(status["lag"].values()):
            break
        time.sleep(0.1)
    items = httpx.get(
        f"{analytics}/v1/incidents", params={"service": "bench", "limit": 500}, headers=headers
    ).json()["items"]
    return sum(1 for i in items if i["alert_count"] > 1)


if __name__ == "__main__":
    main()

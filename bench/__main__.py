"""`python -m bench [--quick]`: durable ingest and alert-to-analytics latency, embedded mode,
each against a no-op FastAPI endpoint measured in the same run (ratios, medians of runs)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

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
def lynchpin(data: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    ports = {s: free_port() for s in ("INTAKE", "TRIAGE", "COMMS", "ANALYTICS")}
    env = {
        **os.environ,
        "LYNCHPIN_DATA_DIR": str(data),
        "LYNCHPIN_ADMIN_TOKEN": ADMIN,
        "LYNCHPIN_INTEGRATION_KEY": KEY,
        "LYNCHPIN_SECRET": "b" * 32,
        "LYNCHPIN_LOG_LEVEL": "WARNING",
        **{f"LYNCHPIN_{s}_PORT": str(p) for s, p in ports.items()},
    }
    with process(
        [sys.executable, "-m", "shared.launcher"], env, f"http://127.0.0.1:{ports['ANALYTICS']}/readyz"
    ) as proc:
        yield f"http://127.0.0.1:{ports['INTAKE']}", f"http://127.0.0.1:{ports['ANALYTICS']}", proc


async def ingest(base: str, n: int, concurrency: int, *, duplicate: bool, tag: str) -> tuple[float, float]:
    """Post n alerts at a fixed concurrency; return (alerts/s answered 202, p99 latency ms)."""
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
    latencies.sort()
    return n / elapsed, latencies[int(len(latencies) * 0.99) - 1] * 1000


async def visible_latency(intake: str, analytics: str, samples: int) -> list[float]:
    """Post one alert at a time; time until analytics lists it with a priority and a notification."""
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
            while True:
                d = await client.get(
                    f"{analytics}/v1/incidents/{incident}", headers={"Authorization": f"Bearer {ADMIN}"}
                )
                if d.status_code == 200 and d.json()["priority"] and d.json()["notification_count"]:
                    break
                await asyncio.sleep(0.001)
            out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small, for CI")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    n, runs, samples = (1000, 1, 20) if args.quick else (20000, 3, 200)

    rows: list[tuple[str, str, str, str]] = []
    base_rates, distinct, storm, p99s = [], [], [], {"noop": [], "distinct": [], "storm": []}
    peak = 0.0
    for run in range(runs):
        with noop() as (url, _):
            rate, p99 = asyncio.run(ingest(url, n, args.concurrency, duplicate=False, tag=f"n{run}"))
            base_rates.append(rate)
            p99s["noop"].append(p99)
        with tempfile.TemporaryDirectory() as tmp, lynchpin(Path(tmp)) as (intake, analytics, proc):
            rate, p99 = asyncio.run(ingest(intake, n, args.concurrency, duplicate=False, tag=f"d{run}"))
            distinct.append(rate)
            p99s["distinct"].append(p99)
            rate, p99 = asyncio.run(ingest(intake, n, args.concurrency, duplicate=True, tag=f"s{run}"))
            storm.append(rate)
            p99s["storm"].append(p99)
            if run == runs - 1:
                latencies = asyncio.run(visible_latency(intake, analytics, samples))
            peak = max(peak, rss_mb(proc.pid))

    base = statistics.median(base_rates)
    for name, rates in (
        ("no-op FastAPI endpoint (baseline)", base_rates),
        ("distinct alerts", distinct),
        ("duplicate storm (one key)", storm),
    ):
        key = {"distinct alerts": "distinct", "duplicate storm (one key)": "storm"}.get(name, "noop")
        med = statistics.median(rates)
        rows.append((name, f"{med:,.0f}/s", f"{med / base:.2f}", f"{statistics.median(p99s[key]):.1f} ms"))
    print(f"\nDurable ingest, embedded mode: {n} alerts x {runs} run(s), concurrency {args.concurrency}")
    print(f"{'workload':<36} {'median rate':>12} {'vs baseline':>12} {'p99':>10}")
    for row in rows:
        print(f"{row[0]:<36} {row[1]:>12} {row[2]:>12} {row[3]:>10}")
    print(f"\nAlert -> visible in analytics (prioritised and notified), {samples} sequential alerts:")
    print(f"  p50 {pct(latencies, 0.5):.1f} ms   p99 {pct(latencies, 0.99):.1f} ms")
    print(f"\nPeak RSS of the embedded process (all four services): {peak:.0f} MB")


if __name__ == "__main__":
    main()

"""`python -m bench.analytics [--events N] [--quick]`: analytics at scale.

On a realistic log of N events (`bench.eventlog`, written through the SQLite store the embedded mode
uses), it measures:

- raw read: every envelope of the four logs analytics folds, read as the rebuild reads them (the
  store's `read_all` in pages of 5,000; each row parsed into its envelope and typed event: JSON
  decoding and pydantic validation). Nothing is folded or written: this is the floor a rebuild
  cannot go below, and the rebuild's rate is given as a fraction of it (target: 50 % or more).
- rebuild: `services.analytics.rebuild.rebuild`, the `lynchpin rebuild` command: the same reads, the
  fold into incident views and timelines, the write into a fresh read store, the swap.
- queries: analytics served by its own process (`python -m services.analytics`) over the rebuilt
  read store; sequential requests per query, p50 and p95 (target: p95 under 50 ms), then the
  process's peak RSS. Its memo of metrics and dashboard answers (`services.analytics.results`) is
  turned off, so that each timed request pays for computing its answer.

`run(events)` returns the figures as a plain dict, the shape `bench.plot` draws.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.__main__ import free_port, pct, process, rss_mb
from bench.eventlog import SERVICES, TEAMS, embedded, write_log
from services.analytics.rebuild import SOURCES, collector_paused, events_url, read_store_path, rebuild
from shared.settings import Settings
from shared.store import START, EventStore, open_store, sqlite_path

ADMIN = "bench-admin"
TARGET_P95_MS = 50.0
TARGET_REBUILD_RATIO = 0.5
PAGE = 5000  # the rebuild's page size


async def raw_read(settings: Settings) -> int:
    """Every event of every log analytics folds, read and parsed, not folded; returns how many.
    Under the same pause of the garbage collector as the rebuild's (its passes are a third of a
    read's time otherwise), so that the rebuild is measured against its own reading."""
    with collector_paused():
        return await _read_all(settings)


async def _read_all(settings: Settings) -> int:
    total = 0
    async with AsyncExitStack() as stack:
        for source in SOURCES:
            url = events_url(settings) if source == "analytics" else settings.store_url_for(source)
            store: EventStore = await stack.enter_async_context(open_store(url, source=source))
            at = START
            while batch := await store.read_all(after=at, limit=PAGE):
                total += len(batch)
                at = batch[-1].checkpoint
    return total


def full_rebuild(settings: Settings) -> int:
    return sum(asyncio.run(rebuild(settings)).events.values())


@dataclass(frozen=True)
class Timing:
    events: int
    seconds: float
    cpu: float
    """CPU seconds of this process, every thread: less disturbed than wall time by others' load."""


def measure(fn: Callable[[], int]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    events = fn()
    return Timing(events, time.perf_counter() - wall, time.process_time() - cpu)


def read_and_rebuild(settings: Settings, runs: int) -> tuple[Timing, Timing]:
    """Median raw read and median rebuild, alternated so that both see the same machine."""
    reads: list[Timing] = []
    rebuilds: list[Timing] = []
    for _ in range(runs):
        reads.append(measure(lambda: asyncio.run(raw_read(settings))))
        rebuilds.append(measure(lambda: full_rebuild(settings)))

    def median(ts: list[Timing]) -> Timing:
        return Timing(
            ts[0].events, statistics.median(t.seconds for t in ts), statistics.median(t.cpu for t in ts)
        )

    return median(reads), median(rebuilds)


def counted(settings: Settings) -> dict[str, int]:
    """Events per source in logs written before."""
    out = {}
    for source in SOURCES:
        url = events_url(settings) if source == "analytics" else settings.store_url_for(source)
        with sqlite3.connect(sqlite_path(url)) as conn:
            out[source] = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    return out


# --- queries over HTTP ----------------------------------------------------------------------------


def sample_ids(settings: Settings, n: int, seed: int = 2) -> list[str]:
    with sqlite3.connect(read_store_path(settings)) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM incidents ORDER BY id")]
    return random.Random(seed).sample(ids, min(n, len(ids)))


def queries(ids: list[str], now: datetime) -> dict[str, Callable[[int], str]]:
    """The requests timed, by name: a path for the i-th request."""
    week = (now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    busiest = SERVICES[0]
    return {
        "list: newest 50": lambda i: "/v1/incidents",
        "list: open, one service": lambda i: (
            f"/v1/incidents?status=open,acknowledged&service={SERVICES[i % len(SERVICES)]}"
        ),
        "list: one team": lambda i: f"/v1/incidents?team={TEAMS[i % len(TEAMS)]}",
        "list: P1-P2, last 7 days": lambda i: f"/v1/incidents?priority=P1,P2&from={week}",
        "list: text search": lambda i: f"/v1/incidents?q={busiest}",
        "incident detail": lambda i: f"/v1/incidents/{ids[i % len(ids)]}",
        "metrics: last 7 days": lambda i: f"/v1/metrics?from={week}",
        "metrics: all time": lambda i: "/v1/metrics",
        "dashboard (30 days)": lambda i: "/dashboard",
    }


def time_queries(
    base: str, paths: dict[str, Callable[[int], str]], requests: int, budget: float
) -> dict[str, dict[str, float]]:
    """Sequential requests per query (one untimed first), until `requests` or `budget` seconds."""
    out: dict[str, dict[str, float]] = {}
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        for name, path in paths.items():
            client.get(path(0)).raise_for_status()
            latencies: list[float] = []
            deadline = time.monotonic() + budget
            while len(latencies) < requests and (len(latencies) < 5 or time.monotonic() < deadline):
                start = time.perf_counter()
                r = client.get(path(len(latencies)))
                latencies.append((time.perf_counter() - start) * 1000)
                r.raise_for_status()
            out[name] = {
                "p50_ms": pct(latencies, 0.5),
                "p95_ms": pct(latencies, 0.95),
                "requests": len(latencies),
            }
    return out


def serve_and_query(settings: Settings, requests: int, budget: float) -> tuple[dict[str, Any], float, float]:
    """Start analytics on the rebuilt read store; returns (timings, RSS after start, peak RSS) in MB."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LYNCHPIN_")},
        "LYNCHPIN_DATA_DIR": str(settings.data_dir),
        "LYNCHPIN_ADMIN_TOKEN": ADMIN,
        "LYNCHPIN_SECRET": "b" * 32,
        "LYNCHPIN_LOG_LEVEL": "WARNING",
        "LYNCHPIN_ANALYTICS_PORT": str(port),
        "LYNCHPIN_ANALYTICS_RESULTS_SECONDS": "0",  # every timed request computes its answer
    }
    ids = sample_ids(settings, 1000)
    base = f"http://127.0.0.1:{port}"
    with process([sys.executable, "-m", "services.analytics"], env, f"{base}/readyz") as proc:
        started = rss_mb(proc.pid)
        timings = time_queries(base, queries(ids, datetime.now(UTC)), requests, budget)
        peak = rss_mb(proc.pid)
    return timings, started, peak


# --- the whole run --------------------------------------------------------------------------------


def run(
    events: int,
    *,
    runs: int | None = None,
    requests: int = 200,
    budget: float = 30.0,
    keep: Path | None = None,
    reuse: bool = False,
) -> dict[str, Any]:
    """Generate, read, rebuild and query a log of `events` events; the figures as a plain dict.

    `runs` (median of) defaults to 3, or 1 from 500,000 events. Each query gets `requests` requests
    or `budget` seconds, whichever ends first (at least 5). With `keep`, the data stays there; with
    `reuse` too, the logs already there are measured again (`events` is then ignored)."""
    if runs is None:
        runs = 1 if events >= 500_000 else 3
    with tempfile.TemporaryDirectory(prefix="lynchpin-bench-") as tmp:
        data = keep if keep is not None else Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        settings = embedded(data)
        started = time.perf_counter()
        if reuse and (data / "intake.db").exists():
            written = counted(settings)
        elif any(data.iterdir()):
            raise SystemExit(f"{data} is not empty: give an empty directory, or --reuse its logs")
        else:
            written = write_log(data, events, now=datetime.now(UTC))
        generated = time.perf_counter() - started
        total = sum(written.values())

        read, rebuilt = read_and_rebuild(settings, runs)
        if read.events != total or rebuilt.events != total:
            raise RuntimeError(f"wrote {total} events, read {read.events}, rebuilt from {rebuilt.events}")
        with sqlite3.connect(read_store_path(settings)) as conn:
            (incidents,) = conn.execute("SELECT count(*) FROM incidents").fetchone()
        sizes = {p.name: p.stat().st_size for p in data.iterdir() if p.suffix == ".db"}

        timings, rss_start, rss_peak = serve_and_query(settings, requests, budget)

    return {
        "events": total,
        "events_by_source": written,
        "incidents": incidents,
        "runs": runs,
        "generate_seconds": generated,
        "store_mb": {k: v / 2**20 for k, v in sorted(sizes.items())},
        "rebuild": {
            "raw_read_seconds": read.seconds,
            "raw_read_cpu_seconds": read.cpu,
            "raw_read_events_per_s": total / read.seconds,
            "rebuild_seconds": rebuilt.seconds,
            "rebuild_cpu_seconds": rebuilt.cpu,
            "rebuild_events_per_s": total / rebuilt.seconds,
            "ratio": read.seconds / rebuilt.seconds,
            "ratio_cpu": read.cpu / rebuilt.cpu,
            "target_ratio": TARGET_REBUILD_RATIO,
        },
        "queries": timings,
        "query_target_ms": TARGET_P95_MS,
        "analytics_rss_mb": {"after_start": rss_start, "peak": rss_peak},
    }


def report(r: dict[str, Any]) -> str:
    b = r["rebuild"]
    lines = [
        f"\nAnalytics over {r['events']:,} events ({r['incidents']:,} incidents; "
        + ", ".join(f"{k} {v:,}" for k, v in r["events_by_source"].items())
        + f"), written in {r['generate_seconds']:.1f}s; median of {r['runs']} run(s)",
        f"{'':<28} {'seconds':>8} {'events/s':>10} {'CPU s':>8} {'events/CPU s':>13}",
        *(
            f"{name:<28} {b[k + '_seconds']:>8.2f} {r['events'] / b[k + '_seconds']:>10,.0f} "
            f"{b[k + '_cpu_seconds']:>8.2f} {r['events'] / b[k + '_cpu_seconds']:>13,.0f}"
            for name, k in (
                ("raw read (parsed envelopes)", "raw_read"),
                ("rebuild (lynchpin rebuild)", "rebuild"),
            )
        ),
        f"rebuild / raw read: {b['ratio']:.2f} by wall time, {b['ratio_cpu']:.2f} by CPU time "
        f"(target >= {b['target_ratio']:.2f})",
        f"\nQueries, sequential, p95 target {r['query_target_ms']:.0f} ms "
        "(metrics and dashboard answers not memoised: every request computes)",
        f"{'query':<28} {'p50 ms':>8} {'p95 ms':>8} {'requests':>9}",
    ]
    for name, q in r["queries"].items():
        flag = "" if q["p95_ms"] < r["query_target_ms"] else "  over target"
        lines.append(f"{name:<28} {q['p50_ms']:>8.1f} {q['p95_ms']:>8.1f} {q['requests']:>9}{flag}")
    rss = r["analytics_rss_mb"]
    lines.append(
        f"\nAnalytics RSS: {rss['after_start']:.0f} MB after start, {rss['peak']:.0f} MB peak (VmHWM)"
    )
    lines.append("Store files (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in r["store_mb"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=None, help="events in the log (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="50,000 events, for CI")
    parser.add_argument("--runs", type=int, default=None, help="median of (default 3; 1 from 500,000 events)")
    parser.add_argument("--requests", type=int, default=200, help="per query")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per query at most")
    parser.add_argument("--keep", type=Path, default=None, help="write the logs and read store here")
    parser.add_argument("--reuse", action="store_true", help="with --keep: measure the logs already there")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures here (under 'analytics')"
    )
    args = parser.parse_args()
    events = args.events if args.events is not None else (50_000 if args.quick else 1_000_000)
    results = run(
        events, runs=args.runs, requests=args.requests, budget=args.budget, keep=args.keep, reuse=args.reuse
    )
    print(report(results))
    if args.json is not None:
        whole = json.loads(args.json.read_text()) if args.json.exists() else {}
        whole["analytics"] = results
        args.json.write_text(json.dumps(whole, indent=2) + "\n")


if __name__ == "__main__":
    main()

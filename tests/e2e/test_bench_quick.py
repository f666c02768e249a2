"""`make bench-quick` (`python -m bench --quick`) runs every section to the end on real servers, and what
it measured holds together: every alert offered was answered, every storm opened one incident, every
notification arrived, analytics caught up with intake and rebuilt every event. Times are not asserted
(they depend on the machine); only that each figure was measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_ALERTS, DISTRIBUTED_ALERTS = 1000, 500  # what --quick offers per ingest measurement


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Durable ingest, embedded mode" in run.stdout and "Analytics over" in run.stdout
    return json.loads((out / "results.json").read_text()), out


def ingest_measured(ingest: dict[str, Any], alerts: int) -> None:
    for workload in ("noop", "distinct", "storm"):
        row = ingest[workload]
        assert row["requests"] >= alerts, (workload, row)
        assert row["rate"] > 0 and row["vs_noop"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0


def every_notification_arrived(deliveries: list[dict[str, Any]]) -> None:
    assert deliveries
    for d in deliveries:
        assert d["offered"] > 0 and d["delivered"] == d["offered"], d


def test_embedded_figures(figures: tuple[dict[str, Any], Path]) -> None:
    e = figures[0]["embedded"]
    ingest_measured(e["ingest"], EMBEDDED_ALERTS)
    assert e["storm_incidents"] == [1]
    every_notification_arrived(e["delivery"])
    (settled,) = e["settled"]
    assert settled["left"] == 0, settled  # every consumer handled every event it takes
    assert e["visible_ms"]["samples"] > 0 and e["peak_rss_mb"] > 0


def test_distributed_figures(figures: tuple[dict[str, Any], Path]) -> None:
    d = figures[0]["distributed"]
    ingest_measured(d["ingest"], DISTRIBUTED_ALERTS)
    assert d["ingest"]["alone"]["requests"] >= DISTRIBUTED_ALERTS
    assert d["storm_incidents"] == [1]
    (caught,) = d["catch_up"]
    assert caught["complete"], caught
    assert caught["incidents"] == caught["expected_incidents"] > DISTRIBUTED_ALERTS
    assert caught["storm_alerts"] == caught["expected_storm_alerts"] >= DISTRIBUTED_ALERTS
    every_notification_arrived(d["delivery"])
    assert set(d["peak_rss_mb"]) >= {"intake", "triage", "comms", "analytics"}


def test_analytics_figures(figures: tuple[dict[str, Any], Path]) -> None:
    a = figures[0]["analytics"]
    assert a["events"] >= 50_000 and sum(a["events_by_source"].values()) == a["events"]
    rebuild = a["rebuild"]
    assert rebuild["raw_read_seconds"] > 0 and rebuild["rebuild_seconds"] > 0 and rebuild["ratio"] > 0
    assert a["queries"] and all(
        q["requests"] > 0 and q["p95_ms"] >= q["p50_ms"] > 0 for q in a["queries"].values()
    )


def test_the_picture_is_drawn(figures: tuple[dict[str, Any], Path]) -> None:
    assert (figures[1] / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

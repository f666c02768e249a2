"""Embedded mode under crashes: the single process (four services on SQLite) SIGKILLed mid-stream.

The same checks as in distributed mode: every 202 in exactly one incident, no key with two open
incidents, one notification per (cause, recipient), webhook deliveries at most once more after a crash,
and analytics equal to a clean rebuild.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults import audit
from tests.faults.cluster import Embedded, base_env, settings_of, url
from tests.faults.conftest import Scale
from tests.faults.scenario import audit_cluster, run_faults
from tests.faults.stream import AlertStream
from tests.receivers import webhook_receiver

pytestmark = [pytest.mark.slow]


async def test_no_loss_no_duplicates_when_the_embedded_process_is_killed(
    tmp_path: Path, scale: Scale, figures: list[str]
) -> None:
    async with webhook_receiver() as hook:
        env = base_env(tmp_path / "data", webhook_url=hook.url)
        settings = settings_of(env)
        cluster = Embedded(env, tmp_path / "lynchpin.log")
        report = audit.Report("embedded")
        try:
            await asyncio.to_thread(cluster.start_all)
            kills = scale.n(6, 2)
            faults: list[tuple[str, Callable[[], object]]] = [
                ("SIGKILL+restart lynchpin", cluster.crash_and_restart) for _ in range(kills)
            ]
            stream = AlertStream(
                url(env, "intake"),
                keys=scale.n(1000, 60),
                count=scale.n(6000, 400),
                seconds=600 if scale.full else 90,
                workers=8 if scale.full else 4,
            )
            done = await run_faults(stream, faults, between=scale.n(400, 60))
            await audit_cluster(
                report,
                stream,
                settings,
                hook,
                intake=url(env, "intake"),
                analytics=url(env, "analytics"),
                comms=url(env, "comms"),
                comms_crashes=cluster.kills.get("lynchpin", 0),
                settle_timeout=900 if scale.full else 120,
            )
        finally:
            await asyncio.to_thread(cluster.stop_all)
        await audit.check_rebuild(report, settings, tmp_path)
    figures.append(report.line())
    figures.append("[embedded] faults: " + "; ".join(done))
    print(report.line())
    assert not report.problems, "\n".join(report.problems)
    assert report.figures["accepted"] > 0 and report.figures["lost"] == 0

"""Distributed mode under crashes: four processes, PostgreSQL and Kafka of the test's own.

While a stream of alerts flows, each service is SIGKILLed and restarted in turn, the Kafka broker is
SIGKILLed and restarted, and PostgreSQL is restarted (at full size also SIGKILLed). Afterwards every alert
answered 202 is in exactly one incident, no key has two open incidents, no notification is planned twice
for one (cause, recipient), webhook deliveries are exactly once (at most one duplicate per notification
after a comms crash), and analytics equals a clean rebuild from the logs.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.settings import SERVICES
from shared.testing.servers import KafkaServer, PostgresServer
from tests.faults import audit
from tests.faults.cluster import Distributed, distributed_env, settings_of, url
from tests.faults.conftest import Scale
from tests.faults.scenario import audit_cluster, run_faults
from tests.faults.stream import AlertStream
from tests.receivers import webhook_receiver

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.kafka]


def crash_and_restart(server: KafkaServer | PostgresServer) -> None:
    """SIGKILL (no shutdown: a crash), then start again on the same ports with the same data."""
    server.kill()
    server.start()


async def test_no_loss_no_duplicates_when_services_kafka_and_postgres_crash(
    own_postgres: PostgresServer,
    own_kafka: KafkaServer,
    tmp_path: Path,
    scale: Scale,
    figures: list[str],
) -> None:
    async with webhook_receiver() as hook:
        env = distributed_env(tmp_path, own_postgres.dsn, own_kafka.bootstrap, webhook_url=hook.url)
        settings = settings_of(env)
        cluster = Distributed(env, tmp_path / "services.log")
        report = audit.Report("distributed")
        try:
            await asyncio.to_thread(cluster.start_all)
            rounds = 2 if scale.full else 1
            faults: list[tuple[str, Callable[[], object]]] = []
            for r in range(rounds):
                for service in SERVICES:
                    faults.append(
                        (f"SIGKILL+restart {service}", functools.partial(cluster.crash_and_restart, service))
                    )
                faults.append(("SIGKILL+restart kafka", functools.partial(crash_and_restart, own_kafka)))
                if r == 0:
                    faults.append(("restart postgres", own_postgres.restart))
                else:
                    faults.append(
                        ("SIGKILL+restart postgres", functools.partial(crash_and_restart, own_postgres))
                    )
            stream = AlertStream(
                url(env, "intake"),
                keys=scale.n(1000, 100),
                count=scale.n(4000, 800),
                seconds=900 if scale.full else 150,
                workers=4 if scale.full else 2,
                pace=0.05 if scale.full else 0.15,
            )
            done = await run_faults(stream, faults, between=scale.n(200, 30))
            await audit_cluster(
                report,
                stream,
                settings,
                hook,
                intake=url(env, "intake"),
                analytics=url(env, "analytics"),
                comms=url(env, "comms"),
                comms_crashes=cluster.kills.get("comms", 0),
                settle_timeout=900 if scale.full else 150,
            )
        finally:
            await asyncio.to_thread(cluster.stop_all)
        await audit.check_rebuild(report, settings, tmp_path)
    figures.append(report.line())
    figures.append("[distributed] faults: " + "; ".join(done))
    print(report.line())
    assert not report.problems, "\n".join(report.problems)
    assert report.figures["accepted"] > 0 and report.figures["lost"] == 0

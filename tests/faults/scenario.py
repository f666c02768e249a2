"""The common shape of a fault run: a stream of alerts, faults while it flows, then the audit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from shared.envelope import Envelope
from shared.events import IncidentOpened
from shared.settings import Settings
from tests.faults import audit
from tests.faults.stream import AlertStream
from tests.receivers import WebhookReceiver


async def flowing(stream: AlertStream, more: int, timeout: float = 60.0) -> None:
    """Wait until `more` further alerts were answered (or the stream ended)."""
    target = len(stream.answers) + more
    deadline = time.monotonic() + timeout
    while len(stream.answers) < target and stream.sent < stream.count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def wait_settled(settings: Settings, timeout: float) -> dict[str, int]:
    """Poll the stores until every consumer caught up and every notification has an outcome."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            ok, lag = await audit.settled(settings)
            print(f"settling {time.monotonic() - t0:5.1f}s: {lag}")
        except Exception as e:  # a store still recovering: look again
            lag = {"error": 1}
            last = repr(e)
        else:
            last = ""
            if ok:
                return lag
        await asyncio.sleep(0.5)
    raise AssertionError(f"not settled within {timeout:.0f}s: {lag} {last}")


async def run_faults(
    stream: AlertStream, faults: list[tuple[str, Callable[[], object]]], *, between: int
) -> list[str]:
    """Run the stream; apply each fault (a blocking call, run in a thread) after `between` more answers."""
    sender = asyncio.create_task(stream.run())
    done: list[str] = []
    try:
        for name, fault in faults:
            await flowing(stream, between)
            t0 = time.monotonic()
            await asyncio.to_thread(fault)
            done.append(f"{name} ({time.monotonic() - t0:.1f}s)")
        await flowing(stream, between)
    finally:
        stream.stop.set()
        await sender
    return done


async def audit_cluster(
    report: audit.Report,
    stream: AlertStream,
    settings: Settings,
    receiver: WebhookReceiver,
    *,
    intake: str,
    analytics: str,
    comms: str,
    comms_crashes: int,
    settle_timeout: float,
) -> dict[str, list[Envelope]]:
    """The checks made while the services still run (their APIs answer)."""
    t0 = time.monotonic()
    await wait_settled(settings, settle_timeout)
    report.figures["settle_seconds"] = round(time.monotonic() - t0)
    logs = await audit.read_logs(settings)
    audit.check_alerts(report, stream.answers, logs["intake"])
    audit.check_incidents(report, stream.answers, logs["intake"])
    audit.check_order(report, logs)
    deliveries = [r.headers.get("idempotency-key", "") for r in receiver.received]
    opened = [e.event.incident_id for e in logs["intake"] if isinstance(e.event, IncidentOpened)]
    audit.check_notifications(
        report, logs["comms"], deliveries, comms_crashes=comms_crashes, incidents=opened
    )
    await audit.check_analytics(report, analytics, logs)
    await audit.check_comms_api(report, comms, logs["comms"])
    return logs

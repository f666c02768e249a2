"""The embedded default: all four services in one process, each on its own SQLite file, the
consumers following the producers' stores directly. What `make run` / `lynchpin up` start."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from shared import collector
from shared.bus.embedded import EmbeddedBus
from shared.logging import configure
from shared.settings import SERVICES, Settings
from shared.store import EventStore, open_store
from shared.web import server_options

ANALYTICS_LINGER = 0.05
"""Seconds analytics lets pass after a wake-up before it reads the logs. It shares the interpreter
with the services on an alert's path and is not on it: its pages carry more events (fewer
transactions, fewer wake-ups), and a dashboard is up to 50 ms later."""


def with_credentials(settings: Settings) -> Settings:
    """Generate the admin token and integration key when the environment gave none."""
    update: dict[str, str] = {}
    if settings.admin_token is None:
        update["admin_token"] = "lpa_" + secrets.token_urlsafe(24)
    if settings.integration_key is None:
        update["integration_key"] = "lpk_" + secrets.token_urlsafe(24)
    if settings.secret is None:
        update["secret"] = secrets.token_urlsafe(32)
    return settings.model_copy(update=update)


def embedded_apps(settings: Settings) -> dict[str, FastAPI]:
    """Build the four apps wired to each other's stores (they open their own in their lifespans)."""
    from services.analytics.app import create_app as analytics
    from services.comms.app import create_app as comms
    from services.intake.app import create_app as intake
    from services.triage.app import create_app as triage

    stores: dict[str, EventStore] = {
        name: open_store(settings.store_url_for(name), source=name) for name in ("intake", "triage", "comms")
    }

    def bus(*sources: str, linger: float = 0.0) -> EmbeddedBus:
        return EmbeddedBus({s: stores[s] for s in sources}, linger=linger)

    return {
        "intake": intake(settings, store=stores["intake"]),
        "triage": triage(settings, store=stores["triage"], bus=bus("intake")),
        "comms": comms(settings, store=stores["comms"], bus=bus("intake", "triage")),
        "analytics": analytics(settings, bus=bus("intake", "triage", "comms", linger=ANALYTICS_LINGER)),
    }


def banner(settings: Settings) -> str:
    base = f"http://{settings.host}"
    lines = ["", "Lynchpin is running (embedded mode, data in " + str(settings.data_dir.absolute()) + ")", ""]
    for name in SERVICES:
        lines.append(
            f"  {name:<10} {base}:{settings.port(name)}   (API docs: {base}:{settings.port(name)}/docs)"
        )
    lines += [
        "",
        f"  admin token      {settings.admin_token}",
        f"  integration key  {settings.integration_key}",
        "",
        f"  dashboard        {base}:{settings.analytics_port}/dashboard?key={settings.admin_token}",
        "",
        "  Try it:",
        f"    curl -s -X POST {base}:{settings.intake_port}/v1/alerts -H 'Authorization: Bearer "
        f"{settings.integration_key}' -H 'Content-Type: application/json' \\",
        '      -d \'{"title": "Disk full", "service": "db", "severity": "critical", '
        '"dedup_key": "disk-db-1"}\'',
        f"    curl -s {base}:{settings.analytics_port}/v1/incidents "
        f"-H 'Authorization: Bearer {settings.admin_token}'",
        "",
    ]
    return "\n".join(lines)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve`: four servers each capturing SIGINT and raising
    it again on exit would interrupt the others' shutdown halfway."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    apps = embedded_apps(settings)
    servers = [
        _Server(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port(name),
                lifespan="on",
                **server_options(settings.log_format),
            )
        )
        for name, app in apps.items()
    ]
    print(banner(settings), flush=True)

    loop = asyncio.get_running_loop()
    running: dict[uvicorn.Server, asyncio.Task[None]] = {}
    stopping: list[asyncio.Task[None]] = []

    async def shutdown() -> None:
        # Consumers first (analytics, comms, triage, then intake): a store is closed by its owner only
        # after every service following it has stopped.
        for server in reversed(servers):
            server.should_exit = True
            if server in running:
                await asyncio.wait([running[server]])

    def stop() -> None:
        if stopping:  # a second Ctrl-C: stop at once
            for server in servers:
                server.force_exit = server.should_exit = True
            return
        stopping.append(loop.create_task(shutdown()))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    # Producers first (intake, triage, comms, analytics): a consumer's first read of a source's store
    # then finds it opened by its owner's lifespan.
    for server in servers:
        if stopping:
            break
        running[server] = asyncio.create_task(server.serve())
        while not server.started and not running[server].done() and not server.should_exit:
            await asyncio.sleep(0.01)
    collector.tune()
    await asyncio.gather(*running.values(), *stopping)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `uvicorn.run` would pick (`loop="auto"`: uvloop when installed), so that the four
    servers here run as each would alone and as the no-op baseline the bench compares with."""
    return uvicorn.Config(None, loop="auto").get_loop_factory()  # type: ignore[arg-type]


def main() -> None:
    settings = with_credentials(Settings())
    configure("lynchpin", level=settings.log_level, fmt=settings.log_format)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve(settings))


if __name__ == "__main__":
    main()

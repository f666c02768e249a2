"""The operator dashboard in a real headless Chromium, served by a real uvicorn server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from playwright.async_api import Page, async_playwright

from services.analytics.app import SOURCES, create_app
from services.analytics.readstore import ReadStore
from shared.bus.embedded import EmbeddedBus
from shared.clock import FakeClock
from shared.settings import Settings
from shared.store import EventStore, Write
from shared.store.memory import MemoryStore
from tests.helpers import eventually
from tests.service.test_analytics_api import ADMIN, NOW, POLICY, ago, opened, seed

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """A real uvicorn server on a free port of 127.0.0.1."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await eventually(started)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def drawn(page: Page, selector: str) -> int:
    """How many of the chart's shapes the browser laid out with a real size."""
    count: int = await page.eval_on_selector_all(
        selector,
        "els => els.filter(e => { const b = e.getBoundingClientRect(); "
        "return b.width > 0 && b.height > 0; }).length",
    )
    return count


async def test_dashboard_loads_draws_its_charts_refreshes_itself_and_leads_to_an_incident(
    tmp_path: Path,
) -> None:
    stores: dict[str, EventStore] = {s: MemoryStore(source=s) for s in (*SOURCES, "analytics")}
    await seed(stores)
    app = create_app(
        Settings(admin_token=ADMIN, secret="s" * 32),
        reads=ReadStore(":memory:"),
        bus=EmbeddedBus({s: stores[s] for s in SOURCES}, poll=0.05),
        events=stores["analytics"],
        clock=FakeClock(NOW),
        policy=POLICY.model_copy(update={"dashboard_refresh_seconds": 5}),
    )
    ARTIFACTS.mkdir(exist_ok=True)
    async with serving(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            page = await browser.new_page()

            async def listed() -> bool:
                response = await page.goto(f"{base}/dashboard?key={ADMIN}")
                assert response is not None and response.status == 200
                return await page.locator("#open-count").inner_text() == "2"

            await eventually(listed, timeout=20)
            assert page.url == f"{base}/dashboard"  # the key went into a cookie, out of the address bar
            assert await page.title() == "Lynchpin: operator dashboard"
            assert await page.locator("svg.chart").count() == 4
            assert await drawn(page, "#volume rect.bar") == 3  # P1, P2 and P3 have incidents; P4 and P5 none
            assert await drawn(page, "#sla rect.bar") >= 1
            assert await drawn(page, "#mttr-trend circle.point") == 2
            assert await page.locator("#mttr-trend polyline.line").count() == 1
            assert "Primary database down" in await page.locator("#majors").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            # The page refreshes by itself: a new incident shows up without anyone reloading.
            await stores["intake"].commit(
                [
                    Write(
                        "incident-inc-e", [opened("inc-e", ago(minutes=5), "queue", "Queue backlog")[1]], None
                    )
                ]
            )
            async with page.expect_navigation(timeout=20_000):
                pass
            await eventually(lambda: _shows(page, "Queue backlog"), timeout=20)

            await page.click("#majors a")
            await page.wait_for_load_state()
            assert await page.locator("#title").inner_text() == "Primary database down"
            assert await drawn(page, "#phases rect.bar") == 2
            assert "Accepted as a major incident" in await page.locator("#timeline").inner_text()
            await page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)
        finally:
            await browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


async def _shows(page: Page, text: str) -> bool:
    try:
        await page.wait_for_load_state()
        return text in await page.locator("#open").inner_text()
    except Exception:  # the page may be mid-navigation; ask again
        return False

"""`python -m services.analytics`: run analytics alone, configured from the environment (LYNCHPIN_*).

`LYNCHPIN_ANALYTICS_RESULTS_SECONDS` (default 5; 0 turns it off) is how long a computed metrics or
dashboard answer may be served again while no event has been applied since (a benchmark of the
computation turns it off)."""

from __future__ import annotations

import os

import uvicorn

from services.analytics.app import RESULTS_SECONDS, create_app
from shared.logging import configure, uvicorn_log_config
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    configure("analytics", level=settings.log_level, fmt=settings.log_format)
    uvicorn.run(
        create_app(
            settings,
            results_seconds=float(os.environ.get("LYNCHPIN_ANALYTICS_RESULTS_SECONDS", RESULTS_SECONDS)),
        ),
        host=settings.host,
        port=settings.analytics_port,
        log_level="warning",
        log_config=uvicorn_log_config(settings.log_format),
    )


if __name__ == "__main__":
    main()

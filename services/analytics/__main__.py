"""`python -m services.analytics`: run analytics alone, configured from the environment (LYNCHPIN_*)."""

from __future__ import annotations

import uvicorn

from services.analytics.app import create_app
from shared.logging import configure, uvicorn_log_config
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    configure("analytics", level=settings.log_level, fmt=settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.analytics_port,
        log_level="warning",
        log_config=uvicorn_log_config(settings.log_format),
    )


if __name__ == "__main__":
    main()

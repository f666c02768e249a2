"""`python -m services.intake`: run intake alone, configured from the environment (LYNCHPIN_*)."""

from __future__ import annotations

import uvicorn

from services.intake.app import create_app
from shared import collector
from shared.logging import configure
from shared.settings import Settings
from shared.web import server_options


def main() -> None:
    settings = Settings()
    configure("intake", level=settings.log_level, fmt=settings.log_format)
    app = create_app(settings)
    collector.tune()  # start-up set aside, full passes on a schedule
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.intake_port,
        **server_options(settings.log_format),
    )


if __name__ == "__main__":
    main()

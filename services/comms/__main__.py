"""`python -m services.comms`: run comms alone, configured from the environment (LYNCHPIN_*)."""

from __future__ import annotations

import uvicorn

from services.comms.app import create_app
from shared import collector
from shared.logging import configure
from shared.settings import Settings
from shared.web import server_options


def main() -> None:
    settings = Settings()
    configure("comms", level=settings.log_level, fmt=settings.log_format)
    app = create_app(settings)
    collector.tune()  # start-up set aside, full passes on a schedule
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.comms_port,
        **server_options(settings.log_format),
    )


if __name__ == "__main__":
    main()

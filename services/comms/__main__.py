"""`python -m services.comms`: run comms alone, configured from the environment (LYNCHPIN_*)."""

from __future__ import annotations

import logging

import uvicorn

from services.comms.app import create_app
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.comms_port, log_level="warning")


if __name__ == "__main__":
    main()

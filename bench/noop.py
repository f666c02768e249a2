"""The baseline: a no-op FastAPI endpoint that accepts the same JSON body, served the same way."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared import collector
from shared.web import server_options


def create_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/alerts", status_code=202)
    async def accept(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"status": "accepted"}, status_code=202)

    return app


if __name__ == "__main__":
    app = create_app()
    collector.tune()  # as every service does
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), **server_options("text"))

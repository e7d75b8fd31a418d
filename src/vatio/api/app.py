"""Application factory and the error translation at the HTTP boundary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vatio import __version__
from vatio.api.live import LiveHub
from vatio.api.routers import alerts, anomalies, devices, health, history, live, models, sites, tariffs
from vatio.errors import ConfigError, ConflictError, NotFoundError, StoreError
from vatio.store import Store
from vatio.transport import BrokerUrl
from vatio.web import mount as mount_dashboard
from vatio.web import mount_api_docs


def _error(status: int, code: str, message: str, detail: object | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "detail": detail}}, status_code=status)


def create_app(
    store: Store, *, manage_store: bool = False, broker: BrokerUrl | None = None, broker_protocol: Literal[4, 5] = 5
) -> FastAPI:
    """The API over ``store``. With ``manage_store`` the app migrates and closes it.

    With ``broker`` the app subscribes to it for the live WebSocket feed
    (``broker_protocol`` 4 for MQTT 3.1.1-only brokers); without, the feed says so.
    """
    hub = LiveHub(broker=broker, protocol=broker_protocol) if broker is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_store:
            await store.migrate()
        live_task = asyncio.create_task(hub.run(), name="api-live-feed") if hub is not None else None
        try:
            yield
        finally:
            if live_task is not None:
                live_task.cancel()
                await asyncio.gather(live_task, return_exceptions=True)
            if manage_store:
                await store.close()

    app = FastAPI(
        title="Vatio",
        version=__version__,
        description="Residential electricity monitoring and anomaly detection.",
        lifespan=lifespan,
        docs_url=None,  # served from the fastapi-offline wheel below: no CDN
        redoc_url=None,
    )
    mount_api_docs(app)
    app.state.store = store
    app.state.live = hub
    app.include_router(health.router)
    app.include_router(devices.router)
    app.include_router(history.router)
    app.include_router(anomalies.router)
    app.include_router(models.router)
    app.include_router(live.router)
    app.include_router(sites.router)
    app.include_router(tariffs.router)
    app.include_router(alerts.router)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(exc), {"kind": exc.kind, "id": exc.key})

    @app.exception_handler(ConflictError)
    async def conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return _error(409, "conflict", str(exc), {"kind": exc.kind, "id": exc.key, "state": exc.state})

    @app.exception_handler(ConfigError)
    async def bad_request(_: Request, exc: ConfigError) -> JSONResponse:
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> JSONResponse:
        return _error(503, "store_unavailable", str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _error(422, "validation_error", "request parameters are invalid", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and str(exc.detail).startswith("There was an error parsing the body"):
            # A body that is not JSON is invalid input like any other: the documented 422.
            return _error(422, "validation_error", "the request body is not valid JSON")
        return _error(exc.status_code, "http_error", str(exc.detail))

    mount_dashboard(app)
    return app

"""Application factory and the error translation at the HTTP boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vatio import __version__
from vatio.api.routers import devices, health
from vatio.errors import ConfigError, NotFoundError, StoreError
from vatio.store import Store


def _error(status: int, code: str, message: str, detail: object | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "detail": detail}}, status_code=status)


def create_app(store: Store, *, manage_store: bool = False) -> FastAPI:
    """The API over ``store``. With ``manage_store`` the app migrates and closes it."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_store:
            await store.migrate()
        try:
            yield
        finally:
            if manage_store:
                await store.close()

    app = FastAPI(
        title="Vatio",
        version=__version__,
        description="Residential electricity monitoring and anomaly detection.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.include_router(health.router)
    app.include_router(devices.router)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(exc), {"kind": exc.kind, "id": exc.key})

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
        return _error(exc.status_code, "http_error", str(exc.detail))

    return app

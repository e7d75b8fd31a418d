"""The web dashboard: static files served by the API, no build step, no CDN.

:func:`mount` adds to an API app:

* ``GET /`` — the one-page dashboard (hash routes: overview, device, alerts, devices);
* ``/static/...`` — its ES modules and style sheet (``src/vatio/web/static``);
* ``GET /static/vendor/plotly.min.js`` — Plotly.js from the installed ``plotly``
  wheel, so the dashboard works offline and the library is never copied into
  the repository;
* ``GET /web/features`` — which API paths this server has (HTTP and WebSocket),
  so the dashboard asks only for what exists: a missing optional router
  (alerts, sites, live feed) degrades a panel instead of failing requests.

:func:`mount_api_docs` serves the OpenAPI page ``/docs`` the same way: Swagger
UI 5 (which reads FastAPI's OpenAPI 3.1) from the ``fastapi-offline`` wheel,
where FastAPI's default page loads it from a CDN and is blank offline.

>>> import asyncio, httpx
>>> from fastapi import FastAPI, WebSocket
>>> app = FastAPI()
>>> mount(app)
>>> def get(path: str) -> httpx.Response:
...     async def fetch() -> httpx.Response:
...         async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
...             return await client.get(path)
...     return asyncio.run(fetch())
>>> get("/").headers["content-type"]
'text/html; charset=utf-8'
>>> get("/static/vendor/plotly.min.js").status_code
200
>>> get("/web/features").json()
{'http': [], 'websocket': []}
>>> @app.get("/api/v1/sites")
... async def sites() -> list[str]: return []
>>> @app.websocket("/api/v1/live")
... async def feed(websocket: WebSocket) -> None: ...
>>> app.openapi_schema = None  # FastAPI caches the document; routes were added
>>> get("/web/features").json()
{'http': ['/api/v1/sites'], 'websocket': ['/api/v1/live']}
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match

from vatio.errors import ConfigError

STATIC_DIR = Path(__file__).parent / "static"
#: WebSocket paths the dashboard can use when the server has them.
WEBSOCKET_PATHS = ("/api/v1/live",)


def plotly_js() -> Path:
    """Path of ``plotly.min.js`` inside the installed ``plotly`` package."""
    try:
        path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError as exc:
        raise ConfigError("the dashboard needs plotly: pip install plotly") from exc
    if not path.is_file():
        raise ConfigError(f"plotly.min.js not found at {path}: reinstall plotly")
    return path


def features(app: FastAPI) -> dict[str, list[str]]:
    """The API paths ``app`` serves: ``{"http": [...], "websocket": [...]}``, sorted.

    HTTP paths come from the OpenAPI document (path templates such as
    ``/api/v1/sites/{site}/summary``); WebSocket routes are not in it, so each
    path the dashboard may use is matched against the app's router instead.
    """
    http = sorted(app.openapi().get("paths", {}))
    return {"http": http, "websocket": [p for p in WEBSOCKET_PATHS if _serves_websocket(app, p)]}


def _serves_websocket(app: FastAPI, path: str) -> bool:
    scope: dict[str, Any] = {"type": "websocket", "path": path, "root_path": "", "path_params": {}}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def swagger_ui_dir() -> Path:
    """Swagger UI's files inside the installed ``fastapi-offline`` wheel (only its files are used)."""
    try:
        path = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError as exc:
        raise ConfigError("the API docs page needs fastapi-offline: pip install fastapi-offline") from exc
    if not (path / "swagger-ui-bundle.js").is_file():
        raise ConfigError(f"swagger-ui-bundle.js not found in {path}: reinstall fastapi-offline")
    return path


def mount_api_docs(app: FastAPI, path: str = "/docs") -> None:
    """``GET path``: Swagger UI for ``app.openapi_url``, every file served by ``app`` itself.

    Paths in the page carry the request's ``root_path``, so it works behind a proxy prefix.
    No ``/redoc``: ReDoc, even from the wheel, loads its logo from cdn.redoc.ly.

    >>> import asyncio, httpx
    >>> app = FastAPI(docs_url=None, redoc_url=None)
    >>> mount_api_docs(app)
    >>> async def fetch(path: str) -> httpx.Response:
    ...     async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
    ...         return await client.get(path)
    >>> page = asyncio.run(fetch("/docs")).text
    >>> "cdn" in page, "/docs/static/swagger-ui-bundle.js" in page
    (False, True)
    >>> asyncio.run(fetch("/redoc")).status_code
    404
    >>> asyncio.run(fetch("/docs/static/swagger-ui-bundle.js")).status_code
    200
    """
    assets = f"{path}/static"

    def prefixed(request: Request) -> tuple[str, str]:
        root = request.scope.get("root_path", "").rstrip("/")
        return root + (app.openapi_url or "/openapi.json"), root + assets

    @app.get(path, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        openapi, static = prefixed(request)
        return get_swagger_ui_html(
            openapi_url=openapi,
            title=f"{app.title} API",
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=f"{static}/favicon.png",
        )

    app.mount(assets, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")


def mount(app: FastAPI) -> None:
    """Serve the dashboard from ``app`` (see the module docstring for the paths)."""
    vendor = plotly_js()

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    async def plotly() -> FileResponse:
        # The wheel's copy never changes while this process runs: let the browser keep it.
        return FileResponse(vendor, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/web/features", include_in_schema=False)
    async def web_features() -> dict[str, list[str]]:
        # Computed per request: routers may be added after mount() runs.
        return features(app)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

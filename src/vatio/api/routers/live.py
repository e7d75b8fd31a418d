"""WebSocket ``/api/v1/live?site=S``: the site's readings and alert events as they happen.

Refusals are explained before the socket closes: the server accepts, sends
``{"type": "error", "message": ...}`` and closes with a 4xxx code that mirrors
the HTTP status (4400 bad query, 4404 unknown site, 4503 no live feed or no
store). See :mod:`vatio.api.live` for the messages of an open feed.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from vatio.api.live import LiveClient, LiveHub
from vatio.contracts import id_problem
from vatio.errors import StoreError
from vatio.store import Store

router = APIRouter(tags=["live"])

NO_BROKER = "no live feed: the API runs without a broker"
CLOSE_BAD_REQUEST, CLOSE_NOT_FOUND, CLOSE_UNAVAILABLE = 4400, 4404, 4503


@router.websocket("/api/v1/live")
async def live(websocket: WebSocket) -> None:
    await websocket.accept()
    site = websocket.query_params.get("site")
    problem = "query parameter site is required" if site is None else _site_problem(site)
    if problem is not None or site is None:
        await _refuse(websocket, CLOSE_BAD_REQUEST, problem or "bad site")
        return
    hub: LiveHub | None = getattr(websocket.app.state, "live", None)
    if hub is None:
        await _refuse(websocket, CLOSE_UNAVAILABLE, NO_BROKER)
        return
    try:
        known = await site_known(websocket.app.state.store, site)
    except StoreError as exc:
        await _refuse(websocket, CLOSE_UNAVAILABLE, f"store unavailable: {exc}")
        return
    if not known:
        await _refuse(websocket, CLOSE_NOT_FOUND, f"site {site!r} not found")
        return
    with hub.client(site) as client:
        await websocket.send_text(orjson.dumps({"type": "subscribed", "site": site}).decode())
        await _serve(websocket, client)


def _site_problem(site: str) -> str | None:
    problem = id_problem(site)
    return None if problem is None else f"site {problem}"


async def site_known(store: Store, site: str) -> bool:
    """A site exists when a device reported from it or it has stored settings."""
    if any(device.site_id == site for device in await store.list_devices()):
        return True
    return await store.get_site(site) is not None


async def _refuse(websocket: WebSocket, code: int, message: str) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.send_text(orjson.dumps({"type": "error", "message": message}).decode())
        await websocket.close(code=code, reason=message.encode()[:120].decode(errors="ignore"))


async def _serve(websocket: WebSocket, client: LiveClient) -> None:
    """Send the client's queue until it disconnects; what it sends us is ignored."""

    async def pump() -> None:
        while True:
            await websocket.send_text(await client.get())

    async def watch() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.create_task(pump(), name="live-pump"), asyncio.create_task(watch(), name="live-watch")]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # A send to a socket that went away raises: that is how a disconnect ends the pump.
        await asyncio.gather(*tasks, return_exceptions=True)

"""The live WebSocket over a real uvicorn, a real mosquitto and a real store.

Two browsers watch two sites; a device publishes telemetry and the detector
publishes alert events on the broker. Each browser sees its own site's
messages and nothing of the other's; refusals arrive as a JSON error and a
4xxx close code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from vatio.api import create_app
from vatio.api.routers.live import NO_BROKER
from vatio.contracts import encode_telemetry, telemetry_topic
from vatio.model import Reading
from vatio.sim.wire import FastPublisher
from vatio.store import Store, open_store, write_all
from vatio.testing import free_port
from vatio.transport import BrokerUrl

pytestmark = pytest.mark.integration


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/live.db")
    await store.migrate()
    now = datetime.now(UTC)
    await write_all(store, [Reading("plug-1", now, power_w=1.0)], "home-1")
    await write_all(store, [Reading("plug-2", now, power_w=1.0)], "home-2")
    yield store
    await store.close()


@asynccontextmanager
async def serve(store: Store, broker: BrokerUrl | None) -> AsyncIterator[str]:
    """A real uvicorn serving the API; yields its ws:// base URL once the live feed is subscribed."""
    app = create_app(store, broker=broker)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(), name="test-uvicorn")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
            if app.state.live is not None:
                await app.state.live.connected.wait()
        yield f"ws://127.0.0.1:{port}/api/v1/live"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert isinstance(message, dict)
    return message


async def test_each_site_sees_its_readings_and_alerts_only(sqlite_store: Store, broker_port: int) -> None:
    broker = BrokerUrl.parse(f"mqtt://127.0.0.1:{broker_port}")
    ts = datetime.now(UTC).replace(microsecond=0)
    async with (
        serve(sqlite_store, broker) as url,
        connect(f"{url}?site=home-1") as home1,
        connect(f"{url}?site=home-2") as home2,
    ):
        assert await receive(home1) == {"type": "subscribed", "site": "home-1"}
        assert await receive(home2) == {"type": "subscribed", "site": "home-2"}
        async with FastPublisher(host="127.0.0.1", port=broker_port, client_id="test-live-pub") as publisher:
            # home-2 first: were it leaked to home-1, it would arrive there before home-1's own messages.
            batch = [Reading("plug-2", ts - timedelta(seconds=s), power_w=50.0 + s) for s in (2, 1, 0)]
            await publisher.publish(telemetry_topic("home-2", "plug-2"), encode_telemetry("plug-2", batch))
            await publisher.publish("vatio/v1/home-2/alerts", b'{"v":1,"event":"anomaly_opened","id":2}')
            cbor = encode_telemetry("plug-1", [Reading("plug-1", ts, power_w=7.5, energy_wh=12.0)], "cbor")
            await publisher.publish(telemetry_topic("home-1", "plug-1", "cbor"), cbor)
            await publisher.publish("vatio/v1/home-1/alerts", b'{"v":1,"event":"anomaly_opened","id":1}')
            await publisher.drain()
        stamp = ts.isoformat().replace("+00:00", ".000Z")
        assert [await receive(home1), await receive(home1)] == [
            {"type": "reading", "site": "home-1", "device": "plug-1", "ts": stamp, "power_w": 7.5, "energy_wh": 12.0},
            {"type": "alert", "v": 1, "event": "anomaly_opened", "id": 1, "site": "home-1"},
        ]
        reading, alert = await receive(home2), await receive(home2)
        assert (reading["device"], reading["ts"], reading["power_w"]) == ("plug-2", stamp, 50.0), "newest of the batch"
        assert (alert["type"], alert["id"], alert["site"]) == ("alert", 2, "home-2")


async def assert_refused(url: str, code: int, message: str) -> None:
    async with connect(url) as ws:
        assert (await receive(ws))["message"].startswith(message)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


async def test_bad_and_unknown_sites_are_refused_with_reasons(sqlite_store: Store, broker_port: int) -> None:
    async with serve(sqlite_store, BrokerUrl.parse(f"mqtt://127.0.0.1:{broker_port}")) as url:
        await assert_refused(url, 4400, "query parameter site is required")
        await assert_refused(f"{url}?site=a%2Fb", 4400, "site contains '/'")
        await assert_refused(f"{url}?site=home-9", 4404, "site 'home-9' not found")


async def test_without_a_broker_the_feed_says_so(sqlite_store: Store) -> None:
    async with serve(sqlite_store, None) as url:
        await assert_refused(f"{url}?site=home-1", 4503, NO_BROKER)

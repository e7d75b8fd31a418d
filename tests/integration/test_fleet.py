"""The simulated fleet against a private mosquitto, stored by an in-process ingest on SQLite.

Covers: every reading of 200 meters stored with complete seqs; the last will
turning a killed meter's retained status offline; the offline buffer
replayed in order after a network outage; CoAP and HTTP through the edge
southbound (and its 4.00/400 answers naming the field); simulated time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiocoap
import cbor2
import httpx
import orjson
import pytest

from vatio.contracts import parse_topic
from vatio.contracts.schema import Limits
from vatio.edge.southbound import Southbound
from vatio.ingest.mqtt import MqttSubscriber
from vatio.ingest.pipeline import IngestPipeline
from vatio.ingest.service import IngestOptions, IngestService
from vatio.model.instants import utcnow
from vatio.sim.fleet import Fleet
from vatio.sim.fleet_devices import FleetOptions, MqttDevice, Transport
from vatio.store import Store, open_store
from vatio.testing import free_port, mosquitto
from vatio.transport import BrokerUrl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


@pytest.fixture
def broker_port() -> Iterator[int]:
    with mosquitto() as port:
        yield port


@dataclass
class Ingest:
    pipeline: IngestPipeline
    store: Store
    path: Path

    def seqs(self) -> dict[str, list[int]]:
        """Stored seqs per device, in ts order (read straight from the SQLite file)."""
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            rows = db.execute("SELECT device_id, seq FROM readings ORDER BY device_id, ts").fetchall()
        out: dict[str, list[int]] = defaultdict(list)
        for device, seq in rows:
            out[device].append(seq)
        return out

    def timestamps_ms(self, device: str) -> list[int]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return [ts for (ts,) in db.execute("SELECT ts FROM readings WHERE device_id = ? ORDER BY ts", (device,))]

    async def wait_for(self, readings: int, timeout_s: float = 15) -> None:
        async with asyncio.timeout(timeout_s):
            while self.pipeline.counters.readings_inserted < readings:
                await asyncio.sleep(0.05)


@pytest.fixture
async def ingest(broker_port: int, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Ingest]:
    """`vatio ingest` in process on SQLite, subscribed before the test publishes."""
    path = tmp_path / "vatio.db"
    store = open_store(f"sqlite:///{path}")
    await store.migrate()
    pipeline = IngestPipeline(store=store, flush_interval_s=0.05)
    service = IngestService(
        broker=BrokerUrl.parse(f"mqtt://127.0.0.1:{broker_port}"),
        pipeline=pipeline,
        options=IngestOptions(group=f"fleet-{request.node.name[:40]}", session_expiry_s=60),
    )
    task = asyncio.create_task(service.run(), name="ingest")
    try:
        async with asyncio.timeout(10):
            await service.connected.wait()
        yield Ingest(pipeline, store, path)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


@dataclass
class Observer:
    """Every message on ``filters``, in arrival order."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def on_message(self, topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        self.messages.append((topic, payload))

    def statuses(self, device: str) -> list[dict[str, object]]:
        return [orjson.loads(p) for t, p in self.messages if t.endswith(f"/{device}/status")]


@contextlib.asynccontextmanager
async def observing(port: int, *filters: str) -> AsyncIterator[Observer]:
    observer = Observer()
    subscriber = MqttSubscriber(
        host="127.0.0.1", port=port, client_id=f"observer-{time.monotonic_ns()}", subscriptions=filters,
        on_message=observer.on_message, qos=0, clean_start=True, session_expiry_s=0,
    )  # fmt: skip
    async with subscriber:
        yield observer


async def eventually(condition: object, timeout_s: float = 10) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


def assert_complete(seqs: dict[str, list[int]], fleet: Fleet) -> None:
    for device in fleet.devices:
        meter = device.meter
        assert seqs[meter.device_id] == list(range(1, meter.seq + 1)), meter.device_id


def broker(port: int) -> BrokerUrl:
    return BrokerUrl.parse(f"mqtt://127.0.0.1:{port}")


# -- MQTT ---------------------------------------------------------------------------------------
async def test_200_meters_every_reading_stored_once(broker_port: int, ingest: Ingest) -> None:
    options = FleetOptions(meters=200, meters_per_site=4, interval_s=0.25, batch=2, prefix="many")
    async with Fleet(options, broker=broker(broker_port)) as fleet:
        await eventually(lambda: fleet.counters.readings >= 200 * 6)
    counters = fleet.counters
    assert counters.meters_connected == 200
    assert counters.connect_failures == counters.dropped == 0
    assert counters.published == counters.readings == sum(d.meter.seq for d in fleet.devices)
    await ingest.wait_for(counters.readings)
    assert_complete(ingest.seqs(), fleet)
    assert ingest.pipeline.counters.dead_letters == 0


async def test_last_will_marks_a_killed_meter_offline(broker_port: int) -> None:
    options = FleetOptions(meters=3, interval_s=0.2, backoff_initial_s=3.0, prefix="will")
    async with (
        observing(broker_port, "vatio/v1/+/+/status") as observer,
        Fleet(options, broker=broker(broker_port)) as fleet,
    ):
        victim = fleet.devices[0]
        assert isinstance(victim, MqttDevice)
        name = victim.meter.device_id
        await eventually(lambda: len(observer.statuses(name)) == 1)
        assert observer.statuses(name)[0]["online"] is True
        victim.abort()
        await eventually(lambda: len(observer.statuses(name)) == 2)
        assert observer.statuses(name)[1] == {"v": 1, "online": False, "fw": "vatio-fleet/0.1"}
        # A newcomer gets the will as the retained status while the meter is down.
        async with observing(broker_port, victim.status) as late:
            await eventually(lambda: late.messages)
            assert orjson.loads(late.messages[0][1])["online"] is False
        await eventually(lambda: len(observer.statuses(name)) == 3, timeout_s=10)
        assert observer.statuses(name)[2]["online"] is True
        assert fleet.counters.connects == 4
    async with observing(broker_port, "vatio/v1/+/+/status") as after:
        await eventually(lambda: len(after.messages) == 3)
        assert all(orjson.loads(p)["online"] is False and "ts" in orjson.loads(p) for _, p in after.messages)


class CuttableLink:
    """A TCP proxy in front of the broker that can be cut and restored: a network outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._transports: list[asyncio.WriteTransport] = []

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for transport in self._transports:
            transport.abort()
        self._transports.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._transports += [writer.transport, up_writer.transport]

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
            sink.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


async def test_offline_buffer_is_replayed_in_order(broker_port: int, ingest: Ingest) -> None:
    link = CuttableLink(broker_port)
    await link.restore()
    options = FleetOptions(
        meters=5, interval_s=0.05, batch=3, backoff_initial_s=0.1, backoff_cap_s=0.4, prefix="outage"
    )
    async with (
        observing(broker_port, "vatio/v1/+/+/telemetry") as observer,
        Fleet(options, broker=broker(link.port)) as fleet,
    ):
        await eventually(lambda: fleet.counters.published >= 5 * 6)
        await link.cut()
        await eventually(lambda: fleet.counters.connected == 0)
        buffered_from = fleet.counters.readings
        await asyncio.sleep(1.5)
        assert fleet.counters.readings - buffered_from >= 5 * 20, "readings go on while offline"
        assert all(len(d.buffer) >= 10 for d in fleet.devices), "the meters buffer while offline"
        await link.restore()
        await eventually(lambda: fleet.counters.connected == 5)
        await asyncio.sleep(0.3)
    assert fleet.counters.dropped == 0
    assert fleet.counters.disconnects >= 5
    await ingest.wait_for(fleet.counters.readings)
    assert_complete(ingest.seqs(), fleet)
    # On the wire: first appearances are in seq order (a resent message may repeat, never reorder).
    arrived: dict[str, list[int]] = defaultdict(list)
    for topic, payload in observer.messages:
        name = parse_topic(topic).device
        assert name is not None
        for reading in orjson.loads(payload)["readings"]:
            if reading["seq"] not in arrived[name]:
                arrived[name].append(reading["seq"])
    for device in fleet.devices:
        assert arrived[device.meter.device_id] == list(range(1, device.meter.seq + 1))


async def test_full_buffer_drops_the_oldest_readings() -> None:
    closed = BrokerUrl.parse(f"mqtt://127.0.0.1:{free_port()}")
    options = FleetOptions(
        meters=2, interval_s=0.02, buffer_limit=5, drain_timeout_s=0.1, backoff_initial_s=0.05, prefix="full"
    )
    async with Fleet(options, broker=closed) as fleet:
        await eventually(lambda: fleet.counters.readings >= 2 * 12)
    assert fleet.counters.connect_failures > 0
    assert fleet.counters.dropped == fleet.counters.readings - 2 * 5
    for device in fleet.devices:
        newest = [r.seq for r in device.buffer.take(10)]
        assert newest == list(range(device.meter.seq - 4, device.meter.seq + 1))


async def test_simulated_time_runs_at_the_simulated_pace(broker_port: int, ingest: Ingest) -> None:
    start = (utcnow() - timedelta(days=2)).replace(microsecond=0)
    options = FleetOptions(
        meters=3, interval_s=60.0, batch=10, encoding="pb", speed=3600.0, start=start, prefix="simtime"
    )
    began = time.monotonic()
    async with Fleet(options, broker=broker(broker_port)) as fleet:
        await asyncio.sleep(1.0)
    wall_s = time.monotonic() - began
    await ingest.wait_for(fleet.counters.readings)
    assert_complete(ingest.seqs(), fleet)
    assert fleet.counters.messages <= fleet.counters.readings / 10 + 3
    start_ms = int(start.timestamp() * 1000)
    for device in fleet.devices:
        stamps = ingest.timestamps_ms(device.meter.device_id)
        assert stamps[0] >= start_ms
        assert {b - a for a, b in itertools.pairwise(stamps)} == {60_000}
        # About an hour of simulated time per wall second: 50-70 readings a minute apart.
        assert 0.8 * 3600 * 1000 <= stamps[-1] - start_ms <= 3600 * 1000 * wall_s


# -- CoAP and HTTP through the edge southbound ----------------------------------------------------
@pytest.fixture
async def southbound(broker_port: int) -> AsyncIterator[Southbound]:
    gateway = Southbound(broker=broker(broker_port), coap_port=0, http_port=0, limits=Limits(max_payload_bytes=4000))
    async with gateway:
        await asyncio.wait_for(gateway.uplink_ready.wait(), 10)
        yield gateway


@pytest.mark.parametrize("transport", ["coap", "http"])
async def test_meters_reach_the_store_through_the_southbound(
    transport: Transport, southbound: Southbound, ingest: Ingest
) -> None:
    port = southbound.coap_port if transport == "coap" else southbound.http_port
    options = FleetOptions(meters=20, interval_s=0.2, batch=2, transport=transport, prefix=f"sb{transport}")
    async with Fleet(options, edge=f"{transport}://127.0.0.1:{port}") as fleet:
        await eventually(lambda: fleet.counters.readings >= 20 * 6)
    assert fleet.counters.published == fleet.counters.readings
    assert fleet.counters.rejected == fleet.counters.dropped == 0
    await ingest.wait_for(fleet.counters.readings)
    assert_complete(ingest.seqs(), fleet)
    assert southbound.counters.readings == fleet.counters.readings


def _bad_batch(encoding: str) -> bytes:
    batch = {"v": 1, "device": "m-1", "readings": [{"ts": "2026-11-24T00:00:00Z", "seq": 1, "power_w": "high"}]}
    return cbor2.dumps(batch) if encoding == "cbor" else orjson.dumps(batch)


async def test_coap_answers_bad_input_with_the_field(southbound: Southbound) -> None:
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    base = f"coap://127.0.0.1:{southbound.coap_port}/t"

    async def post(path: str, payload: bytes, content_format: int = 60) -> aiocoap.Message:
        request = aiocoap.Message(code=aiocoap.POST, uri=base + path, payload=payload, content_format=content_format)
        return await asyncio.wait_for(context.request(request).response, 10)

    try:
        bad = await post("/home-1/m-1", _bad_batch("cbor"))
        assert bad.code == aiocoap.BAD_REQUEST
        body = cbor2.loads(bad.payload)
        assert body["field"] == "readings[0].power_w"
        assert body["rejected"] == 1
        wrong_device = await post("/home-1/m-2", _bad_batch("cbor"))
        assert cbor2.loads(wrong_device.payload)["field"] == "device"
        bad_site = await post("/home%201/m-1", _bad_batch("cbor"))
        assert (bad_site.code, cbor2.loads(bad_site.payload)["field"]) == (aiocoap.BAD_REQUEST, "site")
        unsupported = await post("/home-1/m-1", b"x", content_format=0)
        assert unsupported.code == aiocoap.UNSUPPORTED_CONTENT_FORMAT
        too_large = await post("/home-1/m-1", b"\xa0" * 6000)
        assert too_large.code == aiocoap.REQUEST_ENTITY_TOO_LARGE
        assert too_large.opt.size1 == 4000
    finally:
        await context.shutdown()
    assert southbound.counters.batches == 0


async def test_http_answers_bad_input_with_the_field(southbound: Southbound) -> None:
    base = f"http://127.0.0.1:{southbound.http_port}/v1"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        bad = await client.post("/home-1/m-1/telemetry", content=_bad_batch("json"))
        assert bad.status_code == 400
        assert bad.json()["field"] == "readings[0].power_w"
        not_json = await client.post("/home-1/m-1/telemetry", content=b"{")
        assert (not_json.status_code, not_json.json()["field"]) == (400, None)
        bad_device = await client.post("/home-1/m%201/telemetry", content=_bad_batch("json"))
        assert (bad_device.status_code, bad_device.json()["field"]) == (400, "device")
        cbor_ok_type = await client.post(
            "/home-1/m-1/telemetry", content=_bad_batch("cbor"), headers={"content-type": "application/cbor"}
        )
        assert cbor_ok_type.json()["field"] == "readings[0].power_w"
        unsupported = await client.post("/home-1/m-1/telemetry", content=b"x", headers={"content-type": "text/plain"})
        assert unsupported.status_code == 415
        too_large = await client.post("/home-1/m-1/telemetry", content=b" " * 6000)
        assert too_large.status_code == 413
    assert southbound.counters.batches == 0


async def test_southbound_without_a_broker_asks_devices_to_retry() -> None:
    closed = BrokerUrl.parse(f"mqtt://127.0.0.1:{free_port()}")
    batch = {"v": 1, "device": "m-1", "readings": [{"ts": "2026-11-24T00:00:00Z", "seq": 1, "power_w": 5.0}]}
    async with Southbound(broker=closed, coap_port=0, http_port=0) as gateway:
        async with httpx.AsyncClient(timeout=10) as client:
            url = f"http://127.0.0.1:{gateway.http_port}/v1/home-1/m-1/telemetry"
            answer = await client.post(url, content=orjson.dumps(batch))
        assert (answer.status_code, answer.headers["retry-after"]) == (503, "5")
        context = await aiocoap.Context.create_client_context(transports=["udp6"])
        try:
            uri = f"coap://127.0.0.1:{gateway.coap_port}/t/home-1/m-1"
            request = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=cbor2.dumps(batch), content_format=60)
            response = await asyncio.wait_for(context.request(request).response, 10)
        finally:
            await context.shutdown()
        assert (response.code, response.opt.max_age) == (aiocoap.SERVICE_UNAVAILABLE, 5)
        assert gateway.counters.unavailable == 2

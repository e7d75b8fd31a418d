"""`vatio sim`: meters publishing telemetry and status over MQTT.

Each meter has its own connection, so each has its own last will: when the
process dies, the broker marks every meter offline on its retained status
topic, as a real device would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from vatio.contracts import encode_telemetry, status_topic, telemetry_topic
from vatio.model import Reading
from vatio.sim.meter import SimulatedMeter
from vatio.transport import BrokerUrl

log = logging.getLogger(__name__)

FIRMWARE = "vatio-sim/0.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class SimOptions:
    """What to simulate and how to publish it."""

    homes: int = 3
    devices_per_home: int = 2
    interval_s: float = 2.0
    batch: int = 1
    qos: Literal[0, 1] = 1
    encoding: Literal["json", "cbor", "pb"] = "json"
    protocol: Literal[4, 5] = 5
    seed: int = 0
    site_prefix: str = "home"


@dataclass(slots=True)
class SimCounters:
    messages: int = 0
    readings: int = 0
    devices: list[str] = field(default_factory=list)
    #: Meters whose connection the broker has accepted (updated from paho's threads).
    connected: set[str] = field(default_factory=set)


def _status(online: bool) -> bytes:
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"v": 1, "online": online, "ts": ts, "fw": FIRMWARE})


class _MeterLink:
    """One meter and its MQTT connection (paho runs its network loop in a thread)."""

    def __init__(self, meter: SimulatedMeter, broker: BrokerUrl, options: SimOptions, counters: SimCounters) -> None:
        self.meter = meter
        self.options = options
        self.counters = counters
        self.status = status_topic(meter.site_id, meter.device_id)
        self.topic = telemetry_topic(meter.site_id, meter.device_id, options.encoding)
        version = paho.MQTTv5 if options.protocol == 5 else paho.MQTTv311
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{meter.device_id}", protocol=version)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set_context(broker.ssl_context())
        self.client.will_set(self.status, _status(False), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.broker = broker
        self.pending: list[Reading] = []

    def _on_connect(self, client: paho.Client, _data: object, _flags: object, reason: ReasonCode, *_: object) -> None:
        if reason.is_failure:
            return  # refused (e.g. bad credentials): paho tries again
        self.counters.connected.add(self.meter.device_id)
        client.publish(self.status, _status(True), qos=1, retain=True)

    def _on_disconnect(self, *_: object) -> None:
        self.counters.connected.discard(self.meter.device_id)

    def start(self) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()

    def emit(self, ts: datetime) -> None:
        self.pending.append(self.meter.read(ts))
        if len(self.pending) >= self.options.batch:
            payload = encode_telemetry(self.meter.device_id, self.pending, self.options.encoding)
            # paho queues while disconnected and replays on reconnect.
            self.client.publish(self.topic, payload, qos=self.options.qos)
            self.counters.messages += 1
            self.counters.readings += len(self.pending)
            self.pending = []

    def stop(self) -> None:
        info = self.client.publish(self.status, _status(False), qos=1, retain=True)
        if self.client.is_connected():
            info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()


def build_meters(options: SimOptions) -> list[SimulatedMeter]:
    """The simulated fleet: ``homes`` sites with ``devices_per_home`` meters each."""
    meters = []
    for h in range(options.homes):
        site = f"{options.site_prefix}-{h + 1}"
        for d in range(options.devices_per_home):
            name = "main" if d == 0 else f"plug-{d}"
            seed = options.seed * 1_000_003 + h * 101 + d
            meters.append(SimulatedMeter(f"{site}-{name}", site, seed=seed))
    return meters


async def run_sim(broker: BrokerUrl, options: SimOptions, counters: SimCounters | None = None) -> None:
    """Publish in real time until cancelled: every meter reads every ``interval_s``."""
    counters = counters if counters is not None else SimCounters()
    links = [_MeterLink(m, broker, options, counters) for m in build_meters(options)]
    counters.devices = [link.meter.device_id for link in links]
    for link in links:
        link.start()
    try:
        tick = time.monotonic()
        while True:
            wall = datetime.now(UTC)
            now = wall.replace(microsecond=wall.microsecond // 1000 * 1000)
            for link in links:
                link.emit(now)
            tick += options.interval_s
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
    finally:
        await asyncio.to_thread(_stop_all, links)


def _stop_all(links: list[_MeterLink]) -> None:
    for link in links:
        link.stop()


def backfill(options: SimOptions, *, start: datetime, end: datetime) -> list[Reading]:
    """Readings of the whole fleet from ``start`` to ``end`` at ``interval_s``, for tests and tools."""
    out: list[Reading] = []
    step = timedelta(seconds=options.interval_s)
    for meter in build_meters(options):
        ts = start
        while ts < end:
            out.append(meter.read(ts))
            ts += step
    return out

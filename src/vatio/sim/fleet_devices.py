"""The devices of a simulated fleet: one meter and its link (MQTT, or CoAP/HTTP via the edge).

See :mod:`vatio.sim.fleet` for how a fleet runs them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, Literal

import orjson

from vatio.contracts import Encoding, encode_telemetry, format_ts, status_topic, telemetry_topic
from vatio.errors import ConfigError
from vatio.ingest.mqtt_codec import MqttConnectionLost, MqttError
from vatio.model import Reading
from vatio.model.instants import from_ms
from vatio.sim.meters_ext import FleetMeter, ReadingBuffer
from vatio.sim.wire import FastPublisher, Unacked
from vatio.transport import Backoff, BrokerUrl

if TYPE_CHECKING:  # only for annotations: fleet.py imports this module
    from vatio.sim.fleet import Fleet

log = logging.getLogger(__name__)

Transport = Literal["mqtt", "coap", "http"]
FIRMWARE: Final = "vatio-fleet/0.1"
#: POSTs one payload for (site, device) and returns an HTTP-style status (CoAP 2.04 -> 204).
Sender = Callable[[str, str, bytes], Awaitable[int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOptions:
    """What the fleet simulates and how its meters talk; ``speed`` None is real time."""

    meters: int = 100
    meters_per_site: int = 1
    interval_s: float = 10.0
    batch: int = 1
    max_batch: int = 500
    qos: Literal[0, 1] = 1
    encoding: Encoding | None = None  # None: JSON over MQTT and HTTP, CBOR over CoAP
    transport: Transport = "mqtt"
    protocol: Literal[4, 5] = 5
    speed: float | None = None
    start: datetime | None = None
    buffer_limit: int = 10_000
    connect_rate: float = 1000.0
    connect_concurrency: int = 200
    keepalive_s: int = 60
    window: int = 32
    backoff_initial_s: float = 1.0
    backoff_cap_s: float = 60.0
    drain_timeout_s: float = 30.0
    resets_per_year: float = 0.5
    seed: int = 0
    prefix: str = "fleet"

    def __post_init__(self) -> None:
        if self.meters < 1 or self.batch < 1 or self.buffer_limit < self.batch or self.interval_s < 0.001:
            raise ConfigError("need meters >= 1, batch >= 1, buffer_limit >= batch, interval_s >= 0.001")
        if self.speed is not None and self.speed <= 0:
            raise ConfigError("speed must be positive (simulated seconds per wall second)")
        if self.transport != "mqtt" and self.encoding == "pb":
            raise ConfigError("CoAP and HTTP carry CBOR or JSON, not Protobuf")

    @property
    def wire_encoding(self) -> Encoding:
        return self.encoding or ("cbor" if self.transport == "coap" else "json")


@dataclass(slots=True)
class FleetCounters:
    """Running totals; ``published`` counts readings the first time a message carries them."""

    readings: int = 0
    published: int = 0
    messages: int = 0
    resent: int = 0
    dropped: int = 0
    rejected: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    connected: int = 0
    meters_connected: int = 0
    connect_s: float | None = None


class FleetDevice:
    """One meter: its buffer, its backoff and (in subclasses) its link to the outside."""

    def __init__(self, fleet: Fleet, meter: FleetMeter) -> None:
        self.fleet, self.meter, self.options = fleet, meter, fleet.options
        self.buffer = ReadingBuffer(self.options.buffer_limit)
        self.connected_once = False
        self._backoff: Backoff | None = None  # made on the first failure: a Random costs 3 KB per meter

    def retry_delay(self) -> float:
        """The next reconnect or resend delay: capped exponential backoff with jitter."""
        if self._backoff is None:
            opts = self.options
            self._backoff = Backoff(initial_s=opts.backoff_initial_s, cap_s=opts.backoff_cap_s, seed=self.meter.seed)
        return self._backoff.next()

    def reset_backoff(self) -> None:
        if self._backoff is not None:
            self._backoff.reset()

    def take(self, ts: datetime) -> None:
        """Read the meter at ``ts`` and queue the reading for sending."""
        if self.buffer.append(self.meter.read(ts)):
            self.fleet.counters.dropped += 1
        self.flush()

    def next_batch(self) -> list[Reading] | None:
        """The readings of the next message, or None while fewer than ``batch`` wait."""
        size = len(self.buffer)
        if not size or (size < self.options.batch and not self.fleet.stopping):
            return None
        return self.buffer.take(self.options.max_batch)

    def online(self) -> None:
        if not self.connected_once:
            self.connected_once = True
            counters = self.fleet.counters
            counters.meters_connected += 1
            if counters.meters_connected == len(self.fleet.devices):
                counters.connect_s = time.monotonic() - self.fleet.started

    @property
    def pending(self) -> int:
        """Readings and messages not yet confirmed delivered."""
        return len(self.buffer)

    def flush(self) -> None:
        """Send what is due, if the link allows."""

    async def run(self) -> None:
        """Keep the link up until cancelled."""

    def go_offline(self) -> None:
        """Say goodbye at the end of the run."""


class MqttDevice(FleetDevice):
    """A meter with its own MQTT connection, last will and retained status."""

    def __init__(self, fleet: Fleet, meter: FleetMeter, broker: BrokerUrl) -> None:
        super().__init__(fleet, meter)
        self.broker = broker
        self.topic = telemetry_topic(meter.site_id, meter.device_id, self.options.wire_encoding)
        self.status = status_topic(meter.site_id, meter.device_id)
        self.link: FastPublisher | None = None
        self.resend: list[Unacked] = []

    async def run(self) -> None:
        opts, broker, counters = self.options, self.broker, self.fleet.counters
        while True:
            link = FastPublisher(
                host=broker.host, port=broker.port, client_id=f"{opts.prefix}-{self.meter.device_id}",
                window=opts.window, protocol=opts.protocol, keepalive_s=opts.keepalive_s,
                username=broker.username, password=broker.password, ssl=broker.ssl_context(),
                will_topic=self.status, will_payload=WILL, will_qos=1, will_retain=True,
                remember_unacked=opts.qos == 1, on_ack=self.flush, on_lost=self._on_lost,
            )  # fmt: skip
            try:
                async with self.fleet.gate:
                    await link.connect()
            except (MqttError, OSError) as exc:
                counters.connect_failures += 1
                log.debug("%s cannot connect: %s", self.meter.device_id, exc)
            else:
                self.link = link
                self.reset_backoff()
                counters.connects += 1
                counters.connected += 1
                self.online()
                at = self.fleet.clock.now_ms()
                link.publish_nowait(self.status, _status(online=True, at=at), retain=True)
                self.flush()
                await link.wait_closed()
            await asyncio.sleep(self.retry_delay())

    def _on_lost(self, reason: MqttConnectionLost) -> None:
        link, self.link = self.link, None
        if link is None:
            return  # a failed handshake: never online
        self.fleet.counters.connected -= 1
        self.fleet.counters.disconnects += 1
        if link.remember_unacked:
            # Older than anything still waiting to be resent: they go out first.
            self.resend[:0] = [m for m in link.unacked() if m[0] == self.topic]
        log.debug("%s lost the broker: %s", self.meter.device_id, reason)

    def flush(self) -> None:
        link = self.link
        if link is None or not link.connected:
            return
        counters, qos, resend = self.fleet.counters, self.options.qos, self.resend
        if resend:
            sent = 0
            while sent < len(resend) and link.has_room:
                link.publish_nowait(resend[sent][0], resend[sent][1], qos=qos)
                sent += 1
            del resend[:sent]
            counters.resent += sent
        while not resend and (qos == 0 or link.has_room) and (readings := self.next_batch()):
            payload = encode_telemetry(self.meter.device_id, readings, self.options.wire_encoding)
            link.publish_nowait(self.topic, payload, qos=qos)
            counters.messages += 1
            counters.published += len(readings)

    @property
    def pending(self) -> int:
        return len(self.buffer) + len(self.resend) + (self.link.inflight if self.link else 0)

    def abort(self) -> None:
        """Drop the connection without DISCONNECT: the broker publishes the last will."""
        if self.link is not None:
            self.link.abort()

    def go_offline(self) -> None:
        link, self.link = self.link, None  # a goodbye, not a lost connection: _on_lost ignores it
        if link is not None and link.connected:
            self.fleet.counters.connected -= 1
            payload = _status(online=False, at=self.fleet.clock.now_ms())
            link.publish_nowait(self.status, payload, qos=1 if link.has_room else 0, retain=True)
            link.close()


class RequestDevice(FleetDevice):
    """A meter POSTing to the edge gateway (CoAP or HTTP), one request at a time, in order."""

    def __init__(self, fleet: Fleet, meter: FleetMeter, send: Sender) -> None:
        super().__init__(fleet, meter)
        self.send = send
        self.in_flight = 0
        self._wake = asyncio.Event()

    def flush(self) -> None:
        if len(self.buffer) >= self.options.batch or (self.fleet.stopping and len(self.buffer)):
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self.buffer) + self.in_flight

    async def run(self) -> None:
        counters, meter = self.fleet.counters, self.meter
        self.online()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while readings := self.next_batch():
                self.in_flight = len(readings)
                payload = encode_telemetry(meter.device_id, readings, self.options.wire_encoding)
                try:
                    status = await self.send(meter.site_id, meter.device_id, payload)
                except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
                    status = 0
                    log.debug("%s cannot reach the edge: %s", meter.device_id, exc)
                self.in_flight = 0
                if 200 <= status < 300 or 400 <= status < 500:
                    # A 4xx answer will not change on retry: count the readings as refused.
                    counters.rejected += len(readings) if status >= 400 else 0
                    counters.messages += 1
                    counters.published += len(readings)
                    self.reset_backoff()
                    continue
                counters.dropped += self.buffer.put_back(readings)
                await asyncio.sleep(self.retry_delay())


def _status(*, online: bool, at: int | None = None) -> bytes:
    body: dict[str, object] = {"v": 1, "online": online}
    if at is not None:
        body["ts"] = format_ts(from_ms(at))
    body["fw"] = FIRMWARE
    return orjson.dumps(body)


#: Every meter's last will. It is composed at CONNECT and published by the broker
#: at some later moment, so it carries no ts rather than a wrong one.
WILL: Final = _status(online=False)

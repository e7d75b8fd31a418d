"""`vatio sim fleet`: thousands of simulated meters in one process, each behaving like a device.

Every meter (:class:`~vatio.sim.meters_ext.FleetMeter`) reads every
``interval_s`` on a phase of its own, so N meters make a smooth N / interval
readings per second. Over MQTT each meter has its own connection and last
will (retained ``{"v":1,"online":false}`` on its status topic) and publishes
a retained online status on every connect. Over CoAP (confirmable POSTs to
``/t/{site}/{device}``, CBOR) and HTTP (POST ``/v1/{site}/{device}/telemetry``,
JSON) meters talk to the edge gateway's southbound receivers instead, one
request in flight each.

* Readings wait in a bounded :class:`~vatio.sim.meters_ext.ReadingBuffer`
  until a message carries them (``batch`` per message, up to ``max_batch``
  while catching up); a full buffer drops its oldest reading, counted in
  ``dropped``.
* After a reconnect the QoS 1 messages never acknowledged go out again
  first, then the buffer: delivery stays in order, and a message whose
  PUBACK was lost becomes a duplicate the store absorbs (it is idempotent on
  ``(device, ts)``). QoS 0 keeps no copies, by definition.
* Reconnects back off exponentially with jitter, and every connect passes a
  fleet-wide :class:`~vatio.sim.wire.ConnectGate`.
* Readings carry their scheduled instant on a
  :class:`~vatio.sim.meters_ext.SimClock`: real time, or simulated time
  ``speed`` times faster (a year in minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from vatio.contracts import Encoding, encode_telemetry, format_ts, status_topic, telemetry_topic
from vatio.errors import ConfigError
from vatio.ingest.mqtt_codec import MqttConnectionLost, MqttError
from vatio.model import Reading
from vatio.model.instants import from_ms
from vatio.sim.meters_ext import FleetMeter, ReadingBuffer, SimClock
from vatio.sim.wire import ConnectGate, FastPublisher, Unacked
from vatio.transport import Backoff, BrokerUrl

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


def build_meters(options: FleetOptions) -> list[FleetMeter]:
    """Meters ``{prefix}-{n}`` in sites ``{prefix}-site-{n // meters_per_site}``."""
    return [
        FleetMeter(
            f"{options.prefix}-{n:05d}",
            f"{options.prefix}-site-{n // options.meters_per_site:05d}",
            seed=options.seed * 1_000_003 + n,
            resets_per_year=options.resets_per_year,
        )
        for n in range(options.meters)
    ]


class Fleet:
    """Runs the meters of ``options``: ``async with Fleet(...) as fleet: ...``.

    ``broker`` serves the MQTT transport, ``edge`` (``coap://host:port`` or
    ``http://host:port``) the others. Leaving the context stops the meters
    reading, sends what they buffered (for up to ``drain_timeout_s``),
    publishes their retained offline status and disconnects.
    """

    def __init__(self, options: FleetOptions, *, broker: BrokerUrl | None = None, edge: str | None = None) -> None:
        needed = "broker" if options.transport == "mqtt" else "edge"
        if (broker if needed == "broker" else edge) is None:
            raise ConfigError(f"the {options.transport} transport needs the {needed} URL")
        self.options, self.broker, self.edge = options, broker, edge
        self.clock = SimClock(speed=options.speed, start=options.start)
        self.counters = FleetCounters()
        self.devices: list[FleetDevice] = []
        self.gate = ConnectGate(rate=options.connect_rate, concurrency=options.connect_concurrency)
        self.stopping = False
        self.started = time.monotonic()
        self._stop = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._senders = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Fleet:
        meters = build_meters(self.options)
        async with contextlib.AsyncExitStack() as stack:
            if self.options.transport == "mqtt":
                assert self.broker is not None
                self.devices = [MqttDevice(self, m, self.broker) for m in meters]
            else:
                assert self.edge is not None
                # Imported here: the receivers' module pulls in aiocoap, FastAPI and uvicorn.
                from vatio.edge.southbound import coap_sender, http_sender

                make = coap_sender if self.options.transport == "coap" else http_sender
                send = await stack.enter_async_context(make(self.edge, self.options.wire_encoding))
                self.devices = [RequestDevice(self, m, send) for m in meters]
            self._senders = stack.pop_all()
        self.started = time.monotonic()
        self._main = asyncio.create_task(self._run(), name="fleet")
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        try:
            if self._main is not None:
                await self._main
        finally:
            await self._senders.aclose()

    async def run(self, duration_s: float) -> None:
        """Run for ``duration_s`` wall seconds, then stop as leaving the context does."""
        async with self:
            assert self._main is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._main), duration_s)

    @property
    def pending(self) -> int:
        return sum(device.pending for device in self.devices)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(d.run(), name=f"meter-{d.meter.device_id}") for d in self.devices]
            clock = group.create_task(self._produce(), name="fleet-clock")
            await self._stop.wait()
            self.stopping = True
            clock.cancel()
            await self._drain()
            closing = [d.link for d in self.devices if isinstance(d, MqttDevice) and d.link]
            for device in self.devices:
                device.go_offline()
            if closing:  # the offline statuses and DISCONNECTs are still in socket buffers
                await asyncio.wait([asyncio.ensure_future(link.wait_closed()) for link in closing], timeout=5)
            for task in tasks:
                task.cancel()

    async def _produce(self) -> None:
        devices, clock, counters = self.devices, self.clock, self.counters
        count, interval_ms = len(devices), round(self.options.interval_s * 1000)
        phases = [n * interval_ms // count for n in range(count)]
        anchor, taken = clock.now_ms(), 0
        while True:
            now = clock.now_ms()
            while (due := anchor + taken // count * interval_ms + phases[taken % count]) <= now:
                devices[taken % count].take(from_ms(due))
                taken += 1
                counters.readings += 1
                if taken % 1000 == 0:
                    await asyncio.sleep(0)  # a simulated-time backlog must not starve the connections
            await asyncio.sleep(min(0.5, max(0.005, clock.wall_s(due - now))))

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.options.drain_timeout_s
        while time.monotonic() < deadline:
            for device in self.devices:
                device.flush()
            if not self.pending:
                return
            await asyncio.sleep(0.05)
        log.warning("fleet stopped with %d readings or messages undelivered", self.pending)


# -- `vatio sim fleet` ----------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    d = FleetOptions()
    p = argparse.ArgumentParser(prog="vatio sim fleet", description=__doc__.splitlines()[0])
    p.add_argument("--broker", help="mqtt://host:port (transport mqtt)")
    p.add_argument("--edge", help="coap://host:port or http://host:port of the southbound receivers")
    p.add_argument("--transport", choices=["mqtt", "coap", "http"], default=d.transport)
    p.add_argument("--meters", type=int, default=d.meters)
    p.add_argument("--meters-per-site", type=int, default=d.meters_per_site)
    p.add_argument("--interval", dest="interval_s", type=float, default=d.interval_s, help="clock seconds")
    p.add_argument("--batch", type=int, default=d.batch, help="readings per message")
    p.add_argument("--qos", type=int, choices=[0, 1], default=d.qos)
    p.add_argument("--encoding", choices=["json", "cbor", "pb"], default=None)
    p.add_argument("--protocol", type=int, choices=[4, 5], default=d.protocol)
    p.add_argument("--speed", type=float, default=None, help="simulated seconds per wall second")
    p.add_argument("--start", type=datetime.fromisoformat, default=None, help="simulated start, ISO 8601")
    p.add_argument("--buffer-limit", type=int, default=d.buffer_limit, help="readings kept while offline")
    p.add_argument("--connect-rate", type=float, default=d.connect_rate, help="connects per second")
    p.add_argument("--connect-concurrency", type=int, default=d.connect_concurrency)
    p.add_argument("--drain-timeout", dest="drain_timeout_s", type=float, default=d.drain_timeout_s)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--prefix", default=d.prefix)
    p.add_argument("--duration", type=float, default=60.0, help="wall seconds to run")
    p.add_argument("--progress", type=float, default=0, help="print counters every this many seconds")
    p.add_argument("--devices-out", help="write {device: last seq} as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run a fleet for ``--duration`` seconds; print its counters, CPU and memory as JSON."""
    args = parse(sys.argv[1:] if argv is None else argv)
    options = FleetOptions(**{f: getattr(args, f) for f in FleetOptions.__dataclass_fields__ if hasattr(args, f)})
    _raise_fd_limit(options.meters + 512)
    fleet = Fleet(options, broker=BrokerUrl.parse(args.broker) if args.broker else None, edge=args.edge)
    started = time.monotonic()
    asyncio.run(_run_cli(fleet, args.duration, args.progress))
    wall_s = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = usage.ru_utime + usage.ru_stime
    summary: dict[str, Any] = {
        "meters": options.meters, "transport": options.transport, "wall_s": round(wall_s, 2),
        **_counter_fields(fleet), "unsent": fleet.pending, "cpu_s": round(cpu_s, 2),
        "cpu_percent": round(100 * cpu_s / wall_s, 1), "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }  # fmt: skip
    print(json.dumps({"fleet": summary}), flush=True)
    if args.devices_out:
        with open(args.devices_out, "w") as out:
            json.dump({d.meter.device_id: d.meter.seq for d in fleet.devices}, out)
    return 0


async def _run_cli(fleet: Fleet, duration_s: float, progress_s: float) -> None:
    async def report() -> None:
        while True:
            await asyncio.sleep(progress_s)
            print(json.dumps({"progress": _counter_fields(fleet)}), flush=True)

    reporter = asyncio.create_task(report(), name="fleet-progress") if progress_s else None
    try:
        await fleet.run(duration_s)
    finally:
        if reporter is not None:
            reporter.cancel()


def _counter_fields(fleet: Fleet) -> dict[str, Any]:
    fields = asdict(fleet.counters)
    fields["connect_s"] = fields["connect_s"] and round(fields["connect_s"], 2)
    return fields


def _raise_fd_limit(needed: int) -> None:
    """Every MQTT meter holds a socket: lift the soft descriptor limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(f"{needed} file descriptors needed, the hard limit is {hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


if __name__ == "__main__":
    sys.exit(main())

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
from dataclasses import asdict
from datetime import datetime
from typing import Any

from vatio.errors import ConfigError
from vatio.model.instants import from_ms
from vatio.sim.fleet_devices import (
    FleetCounters,
    FleetDevice,
    FleetOptions,
    MqttDevice,
    RequestDevice,
)
from vatio.sim.meters_ext import FleetMeter, SimClock
from vatio.sim.wire import ConnectGate
from vatio.transport import BrokerUrl

log = logging.getLogger(__name__)


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

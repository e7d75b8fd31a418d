"""Live WebSocket fan-out: publish -> browser lag with 100 clients on one site.

Method: a private mosquitto (or ``--broker``), a SQLite store that knows the
site's devices, and ``vatio api --broker ...`` as its own process (uvicorn,
the live feed subscribed once to every site's telemetry). ``--client-procs``
forked processes open ``--clients`` WebSocket connections in all to
``/api/v1/live?site=bench``; a publisher sends each of ``--devices`` devices
one reading every ``1/--rate`` seconds (QoS 1, JSON), stamping the reading's
``ts`` with the wall-clock time just before the PUBLISH. Every client parses
every frame and records ``receipt time - ts``. After a warm-up (every client
has seen a reading) a window of ``--duration`` seconds is fixed; the readings
sent inside it are counted and must all reach every client (clients wait
3 s after the window for stragglers). The clients' own parsing delay is part
of the measured lag (a conservative number).

    vatio bench ws-fanout --clients 100 --devices 10 --rate 2 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from vatio.contracts import encode_telemetry, telemetry_topic
from vatio.model import Reading
from vatio.sim.wire import FastPublisher
from vatio.store import open_store, write_all
from vatio.testing import free_port, mosquitto, wait_port
from vatio.transport import BrokerUrl

SITE = "bench"
RESULTS = Path(__file__).resolve().parent / "results" / "ws_fanout.json"


GRACE_S = 3.0  # after the window, how long clients wait for its last readings


class ClientStats:
    """What one WebSocket client saw (plain class: `vatio bench` loads this file without a module entry)."""

    __slots__ = ("dropped", "lag_notes", "lags_ms", "readings")

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.readings = self.lag_notes = self.dropped = 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vatio bench ws-fanout", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--client-procs", type=int, default=2, help="processes the clients are spread over")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2.0, help="readings per second per device")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--broker", help="mqtt://host:port of a running broker (default: a private mosquitto)")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS.name}")
    return parser.parse_args(argv)


@contextlib.contextmanager
def broker_url(url: str | None) -> Iterator[BrokerUrl]:
    if url:
        yield BrokerUrl.parse(url)
        return
    with mosquitto() as port:
        yield BrokerUrl.parse(f"mqtt://127.0.0.1:{port}")


async def seed(db_url: str, devices: int) -> None:
    store = open_store(db_url)
    await store.migrate()
    now = datetime.now(UTC)
    await write_all(store, [Reading(f"meter-{n}", now, power_w=0.0) for n in range(devices)], SITE)
    await store.close()


@contextlib.contextmanager
def api_process(db_url: str, broker: BrokerUrl, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``vatio api`` with the live feed, as its own process; stopped on exit."""
    command = [sys.executable, "-m", "vatio.cli", "api", "--db", db_url, "--port", str(port), "--broker", str(broker)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout_s=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.status == 200
        yield process
    finally:
        process.terminate()
        process.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client_loop(ws: ClientConnection, stats: ClientStats, window: list[float]) -> None:
    """Record ``receipt - ts`` of every reading sent inside ``window`` (``[start, end)``, empty until set)."""
    async for frame in ws:
        received = time.time()
        message = json.loads(frame)
        kind = message.get("type")
        if kind == "reading":
            stats.readings += 1
            sent = datetime.fromisoformat(message["ts"]).timestamp()
            if window and window[0] <= sent < window[1]:
                stats.lags_ms.append((received - sent) * 1000.0)
        elif kind == "lag":
            stats.lag_notes += 1
            stats.dropped += message["dropped"]


async def clients_main(conn: Connection, url: str, count: int) -> None:
    """One client process: connect ``count`` clients, report warm, measure the window, send the stats."""
    loop = asyncio.get_running_loop()
    window: list[float] = []
    stats = [ClientStats() for _ in range(count)]
    async with contextlib.AsyncExitStack() as stack:
        tasks = []
        for client in stats:
            ws = await stack.enter_async_context(connect(url, max_queue=None))
            first = json.loads(await ws.recv())
            assert first == {"type": "subscribed", "site": SITE}, first
            tasks.append(asyncio.create_task(client_loop(ws, client, window)))
        conn.send("connected")
        while not all(client.readings for client in stats):
            await asyncio.sleep(0.05)
        conn.send("warm")
        window.extend(await loop.run_in_executor(None, conn.recv))
        await asyncio.sleep(window[1] + GRACE_S - time.time())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    conn.send([(c.lags_ms, c.lag_notes, c.dropped) for c in stats])


def client_process(conn: Connection, url: str, count: int) -> None:
    asyncio.run(clients_main(conn, url, count))


async def publish(broker: BrokerUrl, args: argparse.Namespace, window: list[float], stop: asyncio.Event) -> int:
    """Each device a reading every 1/rate s, spread evenly, ``ts`` = the wall clock at send.

    Returns how many readings were sent inside ``window``.
    """
    step = 1.0 / (args.rate * args.devices)
    loop = asyncio.get_running_loop()
    in_window = 0
    async with FastPublisher(host=broker.host, port=broker.port, client_id="bench-ws-fanout-pub") as publisher:
        next_at, seq = loop.time(), 0
        while not stop.is_set():
            device = f"meter-{seq % args.devices}"
            now = datetime.now(UTC)
            reading = Reading(device, now, seq=seq, power_w=100.0 + seq % 50, energy_wh=float(seq))
            await publisher.publish(telemetry_topic(SITE, device), encode_telemetry(device, [reading]))
            # The wire carries milliseconds: count by the ts the clients will see.
            sent = now.replace(microsecond=now.microsecond // 1000 * 1000).timestamp()
            in_window += bool(window) and window[0] <= sent < window[1]
            seq += 1
            next_at += step
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        await publisher.drain()
    return in_window


async def measure(args: argparse.Namespace, broker: BrokerUrl, api_pid: int, conns: list[Connection]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()

    async def from_all() -> list[Any]:
        return list(await asyncio.gather(*(loop.run_in_executor(None, c.recv) for c in conns)))

    async with asyncio.timeout(60):
        await from_all()  # every client connected and subscribed
    window: list[float] = []
    stop = asyncio.Event()
    publisher = asyncio.create_task(publish(broker, args, window, stop))
    async with asyncio.timeout(30):
        await from_all()  # warm-up: the feed reaches every client
    window.extend([time.time() + 0.5, time.time() + 0.5 + args.duration])
    for conn in conns:
        conn.send(window)
    await asyncio.sleep(window[0] - time.time())
    cpu_before = cpu_seconds(api_pid)
    await asyncio.sleep(window[1] - time.time())
    api_cpu = cpu_seconds(api_pid) - cpu_before
    stop.set()
    published = await publisher
    results = await from_all()
    clients = [stats for process in results for stats in process]
    return summarize(args, published, clients, api_cpu)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summarize(
    args: argparse.Namespace, published: int, clients: list[tuple[list[float], int, int]], api_cpu: float
) -> dict[str, Any]:
    lags = sorted(lag for lags_ms, _, _ in clients for lag in lags_ms)
    if not lags:
        raise RuntimeError("no reading reached a client while measuring")
    per_client = [len(lags_ms) for lags_ms, _, _ in clients]
    return {
        "benchmark": "ws-fanout",
        "clients": args.clients,
        "client_processes": args.client_procs,
        "devices": args.devices,
        "rate_per_device_hz": args.rate,
        "duration_s": args.duration,
        "readings_published": published,
        "frames_expected": published * args.clients,
        "frames_delivered": len(lags),
        "frames_per_s": round(len(lags) / args.duration, 1),
        "per_client_min_max": [min(per_client), max(per_client)],
        "lag_ms": {
            "p50": round(statistics.median(lags), 2),
            "p95": round(percentile(lags, 0.95), 2),
            "p99": round(percentile(lags, 0.99), 2),
            "max": round(lags[-1], 2),
        },
        "lag_notes": sum(notes for _, notes, _ in clients),
        "dropped": sum(dropped for _, _, dropped in clients),
        "api_cpu_percent": round(100.0 * api_cpu / args.duration, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(argv or []))
    with tempfile.TemporaryDirectory(prefix="vatio-ws-fanout-") as tmp, broker_url(args.broker) as broker:
        db_url = f"sqlite:///{tmp}/bench.db"
        asyncio.run(seed(db_url, args.devices))
        api_port = free_port()
        url = f"ws://127.0.0.1:{api_port}/api/v1/live?site={SITE}"
        with api_process(db_url, broker, api_port) as api, client_processes(url, args) as conns:
            result = asyncio.run(measure(args, broker, api.pid, conns))
    text = json.dumps(result, indent=2)
    print(text)
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text + "\n")
    return 0


@contextlib.contextmanager
def client_processes(url: str, args: argparse.Namespace) -> Iterator[list[Connection]]:
    """``--client-procs`` forked processes sharing the ``--clients`` WebSocket clients."""
    context = multiprocessing.get_context("fork")  # this file is not importable by name: no spawn
    shares = [
        args.clients // args.client_procs + (n < args.clients % args.client_procs) for n in range(args.client_procs)
    ]
    processes, conns = [], []
    for share in shares:
        parent, child = context.Pipe()
        process = context.Process(target=client_process, args=(child, url, share), daemon=True)
        process.start()
        processes.append(process)
        conns.append(parent)
    try:
        yield conns
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.terminate()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

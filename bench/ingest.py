"""`vatio bench ingest`: publish -> committed rows in PostgreSQL through Mosquitto, QoS 1.

Method: a private mosquitto (bench/_harness.py), a fresh PostgreSQL database,
`vatio ingest` as its own process (dedup on: the store is idempotent on
(device, ts); rollups left to another process with --no-rollups), and a
publisher process that pre-encodes every message, then publishes them at QoS 1
with a window of in-flight messages. The clock starts when the publisher is
told to go and stops when the ingest process reports the last reading
committed; the count is then checked with SELECT count(*). Ingest RSS is
sampled every 0.5 s. `--duration` runs a rate-limited publisher for that long
instead, to show memory stays flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psutil

from vatio.contracts import encode_telemetry, telemetry_topic
from vatio.model import Reading
from vatio.sim.wire import FastPublisher
from vatio.testing import fresh_database, mosquitto


# -- the publisher (runs in its own process) ----------------------------------------
def build_messages(*, devices: int, per_message: int, messages: int, start: datetime) -> Iterator[tuple[str, bytes]]:
    """(topic, payload) pairs, devices round-robin, one second apart per device."""
    seq = [0] * devices
    for m in range(messages):
        d = m % devices
        device = f"bench-{d:05d}"
        readings = []
        for _ in range(per_message):
            k = seq[d]
            seq[d] += 1
            readings.append(Reading(device, start + timedelta(seconds=k), k, 100.0 + k % 50, 1000.0 + k * 0.03, 230.0))
        yield telemetry_topic(f"site-{d // 4:05d}", device), encode_telemetry(device, readings)


async def publish(
    port: int, messages: Iterable[tuple[str, bytes]], *, window: int, rate: float | None
) -> dict[str, float]:
    async with FastPublisher(host="127.0.0.1", port=port, client_id=f"bench-pub-{os.getpid()}", window=window) as pub:
        started = time.perf_counter()
        for i, (topic, payload) in enumerate(messages):
            await pub.publish(topic, payload, qos=1)
            if rate and i % 100 == 0:
                ahead = i / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif i % 2000 == 0:
                await asyncio.sleep(0)
        await pub.drain()
        return {"published": pub.published, "publish_s": time.perf_counter() - started}


def publisher_main(args: argparse.Namespace) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    packets: Iterable[tuple[str, bytes]] = build_messages(
        devices=args.devices, per_message=args.per_message, messages=args.messages, start=start
    )
    if not args.rate:
        packets = list(packets)  # throughput runs encode everything before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    rate = args.rate / args.per_message if args.rate else None
    print(json.dumps(asyncio.run(publish(args.port, packets, window=args.window, rate=rate))), flush=True)


# -- the orchestrator -------------------------------------------------------------------
class _IngestWatch:
    """Reads the ingest process's JSON counter lines and samples its memory."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.inserted = 0
        self.counters: dict[str, Any] = {}
        self.rss: list[tuple[float, float]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.counters = json.loads(line)["ingest"]
                self.inserted = self.counters["readings_inserted"] + self.counters["duplicates"]

    def sample(self, t: float) -> None:
        self.rss.append((t, psutil.Process(self.proc.pid).memory_info().rss / 2**20))

    def wait_for(self, count: int, timeout_s: float, t0: float) -> float:
        deadline = time.monotonic() + timeout_s
        next_sample = 0.0
        while self.inserted < count:
            now = time.perf_counter()
            if now >= next_sample:
                self.sample(now - t0)
                next_sample = now + 0.5
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.inserted} of {count} readings committed")
            time.sleep(0.01)
        return time.perf_counter()


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    vatio = [sys.executable, "-m", "vatio.cli"]
    with mosquitto() as port, fresh_database() as db:
        subprocess.run([*vatio, "db", "migrate", "--db", db], check=True, capture_output=True)
        ingest = subprocess.Popen(
            [*vatio, "ingest", "--broker", f"mqtt://127.0.0.1:{port}", "--db", db, "--no-rollups",
             "--report-every", "0.1", "--instance", "bench", "--batch", str(args.batch)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        watch = _IngestWatch(ingest)
        messages = args.messages
        if args.duration:
            messages = int(args.rate * args.duration / args.per_message)
        publisher_args = {
            "--port": port, "--devices": args.devices, "--per-message": args.per_message,
            "--messages": messages, "--window": args.window, "--rate": args.rate if args.duration else 0,
        }  # fmt: skip
        pub = subprocess.Popen(
            [sys.executable, __file__, "--publisher", *(str(x) for kv in publisher_args.items() for x in kv)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert pub.stdout is not None
            assert pub.stdin is not None
            if pub.stdout.readline().strip() != "ready":
                raise RuntimeError("publisher failed to start")
            time.sleep(1.0)  # the ingest process connects and subscribes meanwhile
            t0 = time.perf_counter()
            pub.stdin.write("go\n")
            pub.stdin.flush()
            expected = messages * args.per_message
            t1 = watch.wait_for(expected, timeout_s=args.timeout, t0=t0)
            published = json.loads(pub.stdout.readline())
            stored = asyncio.run(_count(db))
        finally:
            pub.kill()
            ingest.terminate()
            ingest.wait(10)
    seconds = t1 - t0
    rss = [r for _, r in watch.rss]
    tail = watch.rss[len(watch.rss) // 10 :] or watch.rss
    slope = _slope(tail)
    return {
        "readings": expected,
        "messages": messages,
        "readings_per_message": args.per_message,
        "seconds": round(seconds, 3),
        "readings_per_s": round(expected / seconds),
        "messages_per_s": round(messages / seconds),
        "publish_s": round(published["publish_s"], 3),
        "stored": stored,
        "exactly_once": stored == expected,
        "ingest_rss_mb": {"first": round(rss[0], 1), "max": round(max(rss), 1), "last": round(rss[-1], 1)},
        "ingest_rss_slope_mb_per_min": round(slope * 60, 2),
        "flushes": watch.counters.get("flushes"),
        "paused": watch.counters.get("paused"),
    }


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return statistics.linear_regression(xs, ys).slope


async def _count(db: str) -> int:
    conn = await asyncpg.connect(db)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM readings"))
    finally:
        await conn.close()


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vatio bench ingest", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print JSON only (always JSON; kept for symmetry)")
    p.add_argument("--per-message", type=int, nargs="+", default=[1, 50], help="readings per message")
    p.add_argument("--readings", type=int, default=1_000_000, help="readings per run")
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--window", type=int, default=20_000, help="publisher's in-flight QoS 1 messages")
    p.add_argument("--batch", type=int, default=10_000, help="ingest readings per write")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=float, default=0, help="rate-limited soak of this many seconds")
    p.add_argument("--rate", type=float, default=20_000, help="readings/s of the soak")
    p.add_argument("--timeout", type=float, default=900)
    # publisher-process options
    p.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--messages", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.publisher:
        args.per_message = args.per_message[0]
        publisher_main(args)
        return 0
    results = []
    for per_message in args.per_message:
        runs = []
        for _ in range(1 if args.duration else args.repeat):
            one = argparse.Namespace(**{**vars(args), "per_message": per_message,
                                        "messages": max(1, args.readings // per_message)})  # fmt: skip
            runs.append(run_once(one))
        rates = [r["readings_per_s"] for r in runs]
        median = statistics.median(rates)
        results.append({"readings_per_message": per_message, "median_readings_per_s": median, "runs": runs})
    print(json.dumps({"benchmark": "ingest", "machine_cores": os.cpu_count(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import fresh_database, mosquitto  # noqa: E402

from vatio.contracts import encode_telemetry, telemetry_topic  # noqa: E402
from vatio.ingest.mqtt import decode_varint, encode_connect, encode_publish  # noqa: E402
from vatio.model import Reading  # noqa: E402


# -- the publisher (runs in its own process) ----------------------------------------
def build_messages(*, devices: int, per_message: int, messages: int, start: datetime) -> list[bytes]:
    """Pre-encoded QoS 1 PUBLISH packets without packet ids (patched in when sent)."""
    out = []
    seq = [0] * devices
    for m in range(messages):
        d = m % devices
        device = f"bench-{d:05d}"
        readings = []
        for _ in range(per_message):
            k = seq[d]
            seq[d] += 1
            readings.append(
                Reading(device, start + timedelta(seconds=k), k, 100.0 + k % 50, 1000.0 + k * 0.03, 230.0)
            )
        payload = encode_telemetry(device, readings)
        out.append(encode_publish(telemetry_topic(f"site-{d // 4:05d}", device), payload, qos=1, packet_id=0))
    return out


class _Publisher(asyncio.Protocol):
    def __init__(self, window: int) -> None:
        self.window = window
        self.inflight = 0
        self.acked = 0
        self.buffer = bytearray()
        self.room = asyncio.Event()
        self.connack = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        buf = bytes(self.buffer)
        while len(buf) - pos >= 2:
            try:
                length, body = decode_varint(buf, pos + 1)
            except (ValueError, IndexError):
                break
            if len(buf) < body + length:
                break
            kind = buf[pos] >> 4
            if kind == 2 and not self.connack.done():
                self.connack.set_result(None)
            elif kind == 4:
                self.acked += 1
                self.inflight -= 1
            pos = body + length
        del self.buffer[:pos]
        if self.inflight < self.window:
            self.room.set()


async def publish(port: int, packets: list[bytes], *, window: int, rate: float | None) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    proto = _Publisher(window)
    await loop.create_connection(lambda: proto, "127.0.0.1", port)
    assert proto.transport is not None
    proto.transport.write(encode_connect(client_id=f"bench-pub-{os.getpid()}", protocol=5, clean_start=True, keepalive_s=60))
    await proto.connack
    started = time.perf_counter()
    packet_id = 0
    for i, packet in enumerate(packets):
        while proto.inflight >= window:
            proto.room.clear()
            await proto.room.wait()
        packet_id = packet_id % 65535 + 1
        # The packet id sits right after the topic; topic length is in bytes 2..3 of the body.
        _, body = decode_varint(packet, 1)
        topic_len = int.from_bytes(packet[body : body + 2])
        at = body + 2 + topic_len
        proto.transport.write(packet[:at] + packet_id.to_bytes(2) + packet[at + 2 :])
        proto.inflight += 1
        if rate and i % 100 == 0:
            ahead = i / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        elif i % 2000 == 0:
            await asyncio.sleep(0)
    while proto.acked < len(packets):
        proto.room.clear()
        await proto.room.wait()
    return {"published": len(packets), "publish_s": time.perf_counter() - started}


def publisher_main(args: argparse.Namespace) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    packets = build_messages(devices=args.devices, per_message=args.per_message, messages=args.messages, start=start)
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
        pub = subprocess.Popen(
            [sys.executable, __file__, "--publisher", "--port", str(port), "--devices", str(args.devices),
             "--per-message", str(args.per_message), "--messages", str(messages), "--window", str(args.window),
             "--rate", str(args.rate if args.duration else 0)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert pub.stdout is not None and pub.stdin is not None
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
        results.append({"readings_per_message": per_message, "median_readings_per_s": statistics.median(rates),
                        "runs": runs})  # fmt: skip
    print(json.dumps({"benchmark": "ingest", "machine_cores": os.cpu_count(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

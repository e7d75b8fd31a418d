"""`vatio bench fleet`: thousands of simulated meters in one process, every reading stored.

Method: a private mosquitto, a fresh PostgreSQL database, `vatio ingest` as
its own process, and ONE process running the fleet (`vatio.sim.fleet`): every
meter its own MQTT connection (last will, retained status), QoS 1, one
reading per message every ``--interval`` seconds of real time on a phase of
its own, so N meters publish a smooth N / interval messages per second. For
``--transport coap|http`` the edge southbound runs in a process of its own
between the fleet and the broker.

While the fleet runs, a probe reads the newest stored ``ts`` of a few devices
every 0.2 s (a primary-key lookup): the ingest lag is the time from a
reading's instant (when its meter took and sent it) until PostgreSQL shows
it, so it spans broker, ingest batching and commit. When the fleet has
stopped and drained, every device's seqs 1..N are checked in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from vatio.testing import fresh_database, mosquitto

PROBES = 20
VATIO = [sys.executable, "-m", "vatio.cli"]


class _Lines:
    """Collects a child's JSON stdout lines on a thread; keeps the last of each kind."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.last: dict[str, Any] = {}
        self.history: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                kind, body = next(iter(json.loads(line).items()))
                self.last[kind] = body
                self.history.append((time.monotonic(), {kind: body}))
                self.ready.set()


def _rss_sampler(pid: int, samples: list[float], stop: threading.Event) -> None:
    process = psutil.Process(pid)
    while not stop.wait(1.0):
        try:
            samples.append(process.memory_info().rss / 2**20)
        except psutil.NoSuchProcess:
            return


async def _probe(db: str, devices: list[str], until: threading.Event, lags: list[tuple[float, float]]) -> None:
    """Record (wall time, lag s) each time a probed device's newest stored reading changes."""
    conn = await asyncpg.connect(db)
    newest: dict[str, datetime] = {}
    try:
        while not until.is_set():
            rows = await conn.fetch(
                "SELECT device_id, max(ts) AS ts FROM readings WHERE device_id = ANY($1) GROUP BY device_id", devices
            )
            now = datetime.now(UTC)
            for row in rows:
                if row["ts"] != newest.get(row["device_id"]):
                    if row["device_id"] in newest:  # the first sight may be an old reading
                        lags.append((time.monotonic(), (now - row["ts"]).total_seconds()))
                    newest[row["device_id"]] = row["ts"]
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _wait_stored(db: str, expected: int, timeout_s: float) -> tuple[int, float]:
    conn = await asyncpg.connect(db)
    started = time.monotonic()
    try:
        while True:
            stored = int(await conn.fetchval("SELECT count(*) FROM readings"))
            if stored >= expected or time.monotonic() - started > timeout_s:
                return stored, time.monotonic() - started
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _completeness(db: str, last_seq: dict[str, int]) -> dict[str, int]:
    """Per device, seqs 1..last must each be stored once (the meters' seqs start at 1)."""
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            "SELECT device_id, count(*) AS n, count(DISTINCT seq) AS distinct_seqs, min(seq) AS lo, "
            "max(seq) AS hi FROM readings GROUP BY device_id"
        )
    finally:
        await conn.close()
    seen = {row["device_id"]: row for row in rows}
    missing = duplicates = incomplete = 0
    for device, last in last_seq.items():
        row = seen.get(device)
        if row is None:
            missing += last
            incomplete += 1
            continue
        missing += max(0, last - row["distinct_seqs"])
        duplicates += row["n"] - row["distinct_seqs"]
        incomplete += (row["distinct_seqs"], row["lo"], row["hi"]) != (last, 1, last)
    return {
        "missing": missing,
        "duplicate_rows": duplicates,
        "incomplete_devices": incomplete,
        "unknown_devices": len(seen.keys() - last_seq.keys()),
    }


def _start_southbound(port: int, transport: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vatio.edge.southbound", "--broker", f"mqtt://127.0.0.1:{port}",
         "--coap-port", "0", "--http-port", "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    ports = json.loads(proc.stdout.readline())["southbound"]
    return proc, f"{transport}://127.0.0.1:{ports[f'{transport}_port']}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    with mosquitto() as port, fresh_database() as db, tempfile.TemporaryDirectory() as tmp:
        subprocess.run([*VATIO, "db", "migrate", "--db", db], check=True, capture_output=True)
        ingest = subprocess.Popen(
            [*VATIO, "ingest", "--broker", f"mqtt://127.0.0.1:{port}", "--db", db, "--no-rollups",
             "--report-every", "1", "--instance", "fleet-bench"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        ingest_lines = _Lines(ingest)
        southbound = None
        target = ["--broker", f"mqtt://127.0.0.1:{port}"]
        if args.transport != "mqtt":
            southbound, edge = _start_southbound(port, args.transport)
            target = ["--edge", edge]
        try:
            if not ingest_lines.ready.wait(30):
                raise RuntimeError("vatio ingest did not start")
            return _run_fleet(args, db, target, Path(tmp), ingest_lines)
        finally:
            for proc in (southbound, ingest):
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)


def _run_fleet(args: argparse.Namespace, db: str, target: list[str], tmp: Path, ingest: _Lines) -> dict[str, Any]:
    devices_out = tmp / "devices.json"
    fleet = subprocess.Popen(
        [sys.executable, "-m", "vatio.sim.fleet", *target, "--transport", args.transport,
         "--meters", str(args.meters), "--interval", str(args.interval), "--duration", str(args.duration),
         "--qos", "1", "--progress", "1", "--devices-out", str(devices_out), "--prefix", "bench"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines, rss, done = _Lines(fleet), list[float](), threading.Event()
    threading.Thread(target=_rss_sampler, args=(fleet.pid, rss, done), daemon=True).start()
    probes = [f"bench-{n * args.meters // PROBES:05d}" for n in range(PROBES)]
    lags: list[tuple[float, float]] = []
    prober = threading.Thread(target=lambda: asyncio.run(_probe(db, probes, done, lags)), daemon=True)
    prober.start()
    started = time.monotonic()
    fleet.wait(args.duration + 600)
    fleet_exit = time.monotonic()
    summary = lines.last.get("fleet")
    if summary is None:
        raise RuntimeError(f"the fleet process failed (exit code {fleet.returncode})")
    stored, drain_s = asyncio.run(_wait_stored(db, summary["published"], timeout_s=300))
    done.set()
    prober.join(10)
    check = asyncio.run(_completeness(db, json.loads(devices_out.read_text())))
    connected_at = started + (summary["connect_s"] or 0)
    steady = sorted(lag for at, lag in lags if at > connected_at + 5)
    every = sorted(lag for _, lag in lags)
    mqtt = args.transport == "mqtt"
    return {
        "benchmark": "fleet",
        "machine_cores": os.cpu_count(),
        "transport": args.transport,
        "meters": args.meters,
        "interval_s": args.interval,
        "duration_s": args.duration,
        # CoAP and HTTP meters hold no connection of their own (the fleet shares sockets).
        "connections_established": summary["meters_connected"] if mqtt else None,
        "connects": summary["connects"] if mqtt else None,
        "connect_failures": summary["connect_failures"] if mqtt else None,
        "disconnects_during_run": summary["disconnects"] if mqtt else None,
        "connect_s": summary["connect_s"] if mqtt else None,
        "readings_published": summary["published"],
        "readings_stored": stored,
        **check,
        "ingest_duplicates_absorbed": ingest.last.get("ingest", {}).get("duplicates"),
        "dropped_by_meters": summary["dropped"],
        "unsent_at_exit": summary["unsent"],
        "messages_per_s": _rates(lines.history, connected_at + 5, fleet_exit - 5),
        "publisher_cpu_percent": summary["cpu_percent"],
        "publisher_rss_mb": {"max": round(max(rss), 1), "last": round(rss[-1], 1)} if rss else None,
        "ingest_lag_s": _percentiles(steady),
        "ingest_lag_s_including_connect_phase": _percentiles(every),
        "drain_after_stop_s": round(drain_s, 2),
        "all_stored": stored == summary["published"] and check["missing"] == 0,
    }


def _rates(history: list[tuple[float, dict[str, Any]]], start: float, end: float) -> dict[str, float] | None:
    points = [(at, body["progress"]["messages"]) for at, body in history if "progress" in body and start <= at <= end]
    rates = [(m2 - m1) / (t2 - t1) for (t1, m1), (t2, m2) in itertools.pairwise(points)]
    if len(rates) < 3:
        return None
    rates.sort()
    return {"min": round(rates[0]), "median": round(statistics.median(rates)), "max": round(rates[-1])}


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ranked = {f"p{q}": round(values[min(len(values) - 1, len(values) * q // 100)], 3) for q in (50, 95, 99)}
    return {"samples": len(values), **ranked, "max": round(values[-1], 3)}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vatio bench fleet", description=__doc__.splitlines()[0])
    p.add_argument("--meters", type=int, default=10_000)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between a meter's readings")
    p.add_argument("--duration", type=float, default=600.0, help="seconds the fleet publishes")
    p.add_argument("--transport", choices=["mqtt", "coap", "http"], default="mqtt")
    p.add_argument("--out", help="also write the JSON result to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0 if result["all_stored"] else 1


if __name__ == "__main__":
    sys.exit(main())

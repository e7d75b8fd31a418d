"""`vatio bench train`: `vatio train` end to end over a year of half-hourly history per device.

Method: a fresh PostgreSQL database (``VATIO_PG_ADMIN_URL``, default the local
server); ``--devices`` simulated homes × ``--days`` of half-hourly readings
(mean power of the interval, as smart meters report it: a daily shape with
morning and evening peaks, weekends, a baseload, noise and the odd absence)
written through the store's write path (``store.write``, binary COPY), in
batches of a few devices — load time is reported but not counted. Rollups are
not refreshed, as for a half-hourly meter whose history was imported, so
`vatio train` (``--source auto``) reads each device's raw readings. Then
`vatio train --db URL` runs as its own process, end to end (start-up, reads,
fit, one model version stored per device); median of ``--repeat`` runs
(the first stores live versions, later ones shadows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from vatio.model import Reading, WriteBatch
from vatio.store import open_store
from vatio.testing import fresh_database

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"
STEP = timedelta(minutes=30)
END = datetime(2026, 1, 5, tzinfo=UTC)


def home(device: int, days: int) -> list[Reading]:
    rng = np.random.default_rng(device)
    n = days * 48
    start = END - days * timedelta(days=1)
    half_hour = np.arange(n)
    hod, dow = (half_hour // 2) % 24, (half_hour // 48 + start.weekday()) % 7
    base = rng.uniform(80.0, 300.0)
    power = base + np.where((hod >= 17) & (hod < 22), rng.uniform(300, 1500), 0.0)
    power += np.where((hod >= 6) & (hod < 9), rng.uniform(100, 600), 0.0) + np.where(dow >= 5, 150.0, 0.0)
    power += rng.gamma(2.0, 30.0, n)
    away = int(rng.integers(0, days - 14))
    power[away * 48 : (away + 10) * 48] = base + rng.normal(0, 5, 480)  # ten days away
    device_id = f"meter-{device:05d}"
    values = np.round(power, 1).tolist()
    return [Reading(device_id, start + i * STEP, i, power_w=values[i]) for i in range(n)]


async def load(url: str, devices: int, days: int, per_write: int) -> dict[str, float]:
    store = open_store(url)
    await store.migrate()
    started, rows = time.perf_counter(), 0
    try:
        for first in range(0, devices, per_write):
            batch = WriteBatch()
            for d in range(first, min(devices, first + per_write)):
                readings = home(d, days)
                batch.readings.extend(readings)
                batch.sites[readings[0].device_id] = f"site-{d // 4}"
                batch.last_seen[readings[0].device_id] = readings[-1].ts
            rows += (await store.write(batch)).inserted
    finally:
        await store.close()
    seconds = time.perf_counter() - started
    return {"rows": rows, "load_s": round(seconds, 1), "load_rows_per_s": round(rows / seconds)}


def train_once(url: str, days: int) -> dict[str, object]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "vatio.cli", "train", "--db", url, "--days", str(days)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**summary, "wall_s": round(time.perf_counter() - started, 2)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vatio bench train")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-write", type=int, default=20, help="devices per store.write")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    with fresh_database("vatio_bench_train") as url:
        loaded = asyncio.run(load(url, args.devices, args.days, args.per_write))
        runs = [train_once(url, args.days) for _ in range(args.repeat)]
    walls = [float(str(r["wall_s"])) for r in runs]
    result = {
        "benchmark": "train", "devices": args.devices, "days": args.days, **loaded, "runs": runs,
        "median_wall_s": statistics.median(walls), "target_s": 300,
        "median_rows_per_s": round(loaded["rows"] / statistics.median(walls)),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if not args.no_save:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0

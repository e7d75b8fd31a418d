"""`vatio bench score`: `vatio score` on 1,000,000 rows of half-hourly data.

Method: the six real SGSC homes (../shared/data) are cut into 200 device
series of 5,000 half-hours each (about 104 days), each scaled by a random
factor so no two devices are identical, interleaved by timestamp the way a
utility export is; then `vatio score IN --out OUT` runs as a subprocess
(reading, scoring, explaining and writing included) and the wall time is
taken. The output row count must equal the input's. Median of --repeat runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sgsc_households_halfhourly.csv.gz"


def build_input(path: Path, *, devices: int, rows_per_device: int, seed: int) -> int:
    real = pd.read_csv(DATA)
    rng = np.random.default_rng(seed)
    homes = [g["general_supply_kwh"].to_numpy() for _, g in real.groupby("customer_id")]
    start = pd.Timestamp("2026-01-01T00:00:00Z")
    stamps = pd.date_range(start, periods=rows_per_device, freq="30min").strftime("%Y-%m-%dT%H:%M:%SZ")
    frames = []
    for d in range(devices):
        home = homes[d % len(homes)]
        offset = int(rng.integers(0, len(home) - rows_per_device))
        energy = home[offset : offset + rows_per_device] * rng.uniform(0.5, 1.5)
        frames.append(pd.DataFrame({"timestamp": stamps, "device_id": f"dev-{d:04d}", "energy_kwh": energy}))
    frame = pd.concat(frames).sort_values(["timestamp", "device_id"], kind="stable")
    frame.to_csv(path, index=False, float_format="%.4f")
    return len(frame)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vatio bench score", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON (always)")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--rows-per-device", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vatio-score-") as tmp:
        source, out = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        rows = build_input(source, devices=args.devices, rows_per_device=args.rows_per_device, seed=args.seed)
        seconds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "vatio.cli", "score", str(source), "--out", str(out)], check=True)
            seconds.append(time.perf_counter() - started)
            with out.open() as handle:
                out_rows = sum(1 for _ in csv.reader(handle)) - 1
            if out_rows != rows:
                raise SystemExit(f"output has {out_rows} rows, input {rows}")
        flagged = int(pd.read_csv(out, usecols=["anomaly"])["anomaly"].sum())
    result = {
        "benchmark": "score",
        "rows": rows,
        "devices": args.devices,
        "resolution": "30min",
        "seconds": [round(s, 2) for s in seconds],
        "median_seconds": round(statistics.median(seconds), 2),
        "rows_per_s": round(rows / statistics.median(seconds)),
        "output_rows_equal_input": True,
        "rows_flagged": flagged,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

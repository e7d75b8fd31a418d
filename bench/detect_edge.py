"""`vatio bench detect-edge`: the edge detector suite, batched and per reading, on one core.

Method: simulated homes (:mod:`vatio.sim.household`, 10 s grid) become meter
streams — power with 1.5 W of measurement noise, a cumulative energy counter,
voltage and frequency, consecutive sequence numbers — and each device gets
one fault planted at random (a 10–30 kW spike, a voltage sag, an hour
offline, a counter reset, a stuck stretch, a duplicate sequence number or a
clock jump) so the protection feedback has work to do. A fresh
:class:`~vatio.detect.stream.EdgeSuite` per device runs ``score_batch``
(protected by ``Threshold(1.0)``) over all its readings, one device after
another; the clock covers scoring only, not data generation. The process is
pinned to one CPU. Median of ``--repeat`` runs.

Run twice: with glibc's allocator as it comes, then with its trim threshold
raised (``mallopt(M_TRIM_THRESHOLD)``, what ``MALLOC_TRIM_THRESHOLD_=268435456``
does for a deployed worker). By default glibc hands freed heap memory at the
top back to the kernel above 128 KB, and each vectorised pass frees about
that much, so the next pass faults the pages back in (kernel time).

For comparison the per-reading loop (``score_one`` then ``learn_one``) runs
over ``--loop-devices`` devices, and its scores are checked against the
batched ones. State size: JSON and pickle bytes of each device's suite after
its readings (a separate, untimed pass).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pickle
import statistics
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from vatio.detect.base import Threshold
from vatio.detect.stream import EdgeSuite, ObsBatch
from vatio.sim.household import HouseholdParams, simulate_household

STEP_S = 10
START = datetime(2024, 1, 8, tzinfo=UTC)


def device_stream(seed: int, readings: int) -> ObsBatch:
    """One simulated meter's readings with one planted fault."""
    home = HouseholdParams.draw(seed)
    trace = simulate_household(home, start=START, end=START + timedelta(seconds=STEP_S * readings), step_s=STEP_S)
    rng = np.random.default_rng(seed)
    n = len(trace.ts)
    ts = trace.ts.astype(np.float64)
    power = np.round(trace.power_w - trace.export_w + rng.normal(0.0, 1.5, n), 1)
    voltage = 231.0 + rng.normal(0.0, 1.0, n) - power / 2000.0
    frequency = 50.0 + rng.normal(0.0, 0.02, n)
    seq = np.arange(n, dtype=np.int64)
    at = int(rng.integers(n // 3, n - 400))
    fault = int(rng.integers(0, 7))
    if fault == 0:
        power[at : at + 3] += rng.uniform(10_000.0, 30_000.0)
    elif fault == 1:
        voltage[at : at + 30] = 196.0
    elif fault == 2:  # an hour offline: the readings of that hour are lost
        ts[at:] += 3600.0
        seq[at:] += 360
    elif fault == 4:
        power[at : at + 360] = power[at]
    elif fault == 5:
        seq[at] = seq[at - 1]
    elif fault == 6:  # the clock jumps 15 min ahead; sequence numbers stay consecutive
        ts[at:] += 900.0
    energy = 4.2e6 + np.cumsum(np.maximum(power, 0.0) * STEP_S / 3600.0)
    if fault == 3:
        energy[at:] -= energy[at] - 10.0
    return ObsBatch.from_arrays(
        ts, seq=seq, power_w=power, energy_wh=np.round(energy, 2), voltage_v=voltage, frequency_hz=frequency
    )


def run_batched(streams: list[ObsBatch], threshold: Threshold) -> tuple[float, int]:
    """Seconds to score every device with a fresh suite, and readings flagged."""
    flagged = 0
    started = time.perf_counter()
    for stream in streams:
        flagged += int(np.count_nonzero(EdgeSuite().score_batch(stream, threshold).score >= threshold.value))
    return time.perf_counter() - started, flagged


def run_loop(streams: list[ObsBatch], threshold: Threshold) -> tuple[float, list[np.ndarray]]:
    observations = [list(stream) for stream in streams]
    scores = []
    started = time.perf_counter()
    for obs in observations:
        suite, out = EdgeSuite(), []
        for x in obs:
            v = suite.score_one(x)
            suite.learn_one(x, anomalous=v.score >= threshold.value)
            out.append(v.score)
        scores.append(np.array(out))
    return time.perf_counter() - started, scores


def raise_trim_threshold() -> bool:
    """Stop glibc returning freed heap tops to the kernel (False where there is no glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold = -1
    return bool(libc.mallopt(m_trim_threshold, 256 << 20))


def timed(streams: list[ObsBatch], threshold: Threshold, repeat: int) -> tuple[list[float], int]:
    runs = [run_batched(streams, threshold) for _ in range(repeat)]
    return [seconds for seconds, _ in runs], runs[-1][1]


def state_sizes(streams: list[ObsBatch], threshold: Threshold) -> tuple[list[int], list[int]]:
    """JSON and pickle bytes of each device's suite after its readings (untimed)."""
    json_bytes, pickle_bytes = [], []
    for stream in streams:
        suite = EdgeSuite()
        suite.score_batch(stream, threshold)
        json_bytes.append(len(json.dumps(suite.state_dict())))
        pickle_bytes.append(len(pickle.dumps(suite)))
    return json_bytes, pickle_bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vatio bench detect-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON (always)")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=10_000, help="readings per device")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop-devices", type=int, default=10, help="devices for the per-reading comparison")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    threshold = Threshold(1.0)
    streams = [device_stream(seed, args.readings) for seed in range(args.devices)]
    total = sum(len(s) for s in streams)
    default_seconds, flagged = timed(streams, threshold, args.repeat)
    tuned = raise_trim_threshold()
    tuned_seconds = timed(streams, threshold, args.repeat)[0] if tuned else []
    loop_streams = streams[: args.loop_devices]
    loop_seconds, loop_scores = run_loop(loop_streams, threshold)
    batched_scores = [EdgeSuite().score_batch(s, threshold).score for s in loop_streams]
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(loop_scores, batched_scores, strict=True))
    json_bytes, pickle_bytes = state_sizes(streams, threshold)
    loop_rate = sum(len(s) for s in loop_streams) / loop_seconds

    def batched(seconds: list[float]) -> dict[str, object]:
        rate = total / statistics.median(seconds)
        return {
            "seconds": [round(s, 2) for s in seconds],
            "median_readings_per_s": round(rate),
            "over_per_reading": round(rate / loop_rate, 1),
        }

    result = {
        "benchmark": "detect-edge",
        "devices": args.devices,
        "readings_per_device": args.readings,
        "resolution_s": STEP_S,
        "readings": total,
        "cores": 1,
        "target_readings_per_s": 1_000_000,
        "batched_glibc_default": batched(default_seconds),
        "batched_trim_threshold_raised": batched(tuned_seconds) if tuned else None,
        "per_reading": {
            "devices": len(loop_streams),
            "seconds": round(loop_seconds, 2),
            "readings_per_s": round(loop_rate),
            "max_abs_score_diff_vs_batched": worst,
        },
        "flagged_share": round(flagged / total, 5),
        "state_bytes_per_device": {
            "json_mean": round(statistics.mean(json_bytes)),
            "json_max": max(json_bytes),
            "pickle_mean": round(statistics.mean(pickle_bytes)),
            "pickle_max": max(pickle_bytes),
            "target_max": 16 * 1024,
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

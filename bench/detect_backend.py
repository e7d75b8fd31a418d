"""`vatio bench detect-backend`: the streaming back-end tier's batch path, many devices, one core.

Method: ``--devices`` devices, each with its own :class:`~vatio.detect.backend.SeasonalDetector`
serving a model fitted (:func:`~vatio.detect.seasonal_model.fit_models`) on ten
weeks of a synthetic home's hourly means (evening peak, baseload, noise; each
device scaled differently). Each device then sends ``--messages`` messages of
``--readings`` readings at ``--step`` seconds (a gateway batching its uplink),
a tenth of the devices with a load left on from mid-stream. Messages arrive
interleaved (message 1 of every device, then message 2, ...) and each goes
through ``score_batch`` protected by ``Threshold(1.0)``, as `vatio detect`
does per flush; the clock covers scoring only, not building the batches.
Pinned to one CPU; median of ``--repeat`` runs. State: JSON bytes of each
device's ``state_dict`` after its readings, and the stored model's bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from vatio.detect.backend import SeasonalDetector
from vatio.detect.base import Threshold
from vatio.detect.seasonal_model import HOUR_S, SeasonalModel, fit_models
from vatio.detect.stream import ObsBatch

FIRST_HOUR = 1_736_121_600 // HOUR_S  # a Monday
RESULTS = Path(__file__).resolve().parent / "results" / "detect_backend.json"


def home_hours(days: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    hour = np.arange(days * 24)
    hod = hour % 24
    power = 150.0 + np.where((hod >= 18) & (hod < 22), 500.0, 0.0) + np.where((hod >= 7) & (hod < 9), 250.0, 0.0)
    return np.asarray(scale * (power + rng.normal(0.0, 25.0, len(hour))))


def models(devices: int, rng: np.random.Generator) -> tuple[list[SeasonalModel], np.ndarray]:
    scales = rng.uniform(0.5, 2.0, devices)
    fitted = fit_models(np.stack([home_hours(70, rng, s) for s in scales]), FIRST_HOUR)
    out = [r.model for r in fitted]
    assert all(m is not None for m in out)
    return [m for m in out if m is not None], scales


def messages(scales: np.ndarray, args: argparse.Namespace, rng: np.random.Generator) -> list[list[ObsBatch]]:
    """``[message][device]`` batches; streams start right after the training window."""
    n = args.messages * args.readings
    start = (FIRST_HOUR + 70 * 24) * HOUR_S
    out: list[list[ObsBatch]] = [[] for _ in range(args.messages)]
    for d, scale in enumerate(scales):
        ts = start + args.step * np.arange(n) + float(rng.uniform(0, 3600))
        hod = (ts // HOUR_S) % 24
        power = scale * (150.0 + np.where((hod >= 18) & (hod < 22), 500.0, 0.0) + rng.normal(0.0, 40.0, n))
        if d % 10 == 0:
            power[n // 2 :] += 1500.0
        batch = ObsBatch.from_arrays(ts, seq=np.arange(n), power_w=np.round(power, 1))
        for m in range(args.messages):
            out[m].append(batch.part(m * args.readings, (m + 1) * args.readings))
    return out


def run_once(fitted: list[SeasonalModel], stream: list[list[ObsBatch]]) -> tuple[float, int, list[SeasonalDetector]]:
    detectors = [SeasonalDetector(model=m) for m in fitted]
    threshold, flagged = Threshold(1.0), 0
    started = time.perf_counter()
    for message in stream:
        for det, batch in zip(detectors, message, strict=True):
            flagged += int(np.count_nonzero(det.score_batch(batch, threshold).score >= 1.0))
    return time.perf_counter() - started, flagged, detectors


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vatio bench detect-backend")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=12)
    parser.add_argument("--readings", type=int, default=30, help="readings per message")
    parser.add_argument("--step", type=float, default=10.0, help="seconds between readings")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rng = np.random.default_rng(0)
    fitted, scales = models(args.devices, rng)
    stream = messages(scales, args, rng)
    readings = args.devices * args.messages * args.readings
    runs = [run_once(fitted, stream) for _ in range(args.repeat)]
    seconds = [r[0] for r in runs]
    states = [len(json.dumps(d.state_dict())) for d in runs[-1][2]]
    state_bytes = {"mean": round(statistics.mean(states)), "max": max(states)}
    result = {
        "benchmark": "detect-backend", "devices": args.devices, "messages_per_device": args.messages,
        "readings_per_message": args.readings, "step_s": args.step, "readings": readings,
        "runs_s": [round(s, 3) for s in seconds], "median_readings_per_s": round(readings / statistics.median(seconds)),
        "flagged_readings": runs[-1][1], "state_json_bytes": state_bytes,
        "model_bytes": len(fitted[0].to_bytes()), "target_readings_per_s": 200_000, "target_state_bytes": 16 * 1024,
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if not args.no_save:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0

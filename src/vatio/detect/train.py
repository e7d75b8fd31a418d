"""`vatio train`: fit each device's seasonal model from its history and store it as a version.

For every device (all the store knows, or those named), the last ``--days``
of history up to its last reading are read from the store — the 1 h rollups,
or the raw readings where rollups are missing (a device whose rollups were
never refreshed, or ``--source raw``) — turned into hourly means, and fitted
in chunks of devices at once (:func:`~vatio.detect.seasonal_model.fit_models`).
Each fitted model becomes a :class:`~vatio.model.ModelVersion` of detector
``seasonal``: live when the device has no live version, else shadow (it runs
beside the live one in ``vatio detect`` and never alerts) unless ``--promote``
makes it live at once; ``--shadow`` stores even a first version as shadow.
Devices with less than two weeks of usable days are skipped and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from vatio.detect.base import FloatArray
from vatio.detect.seasonal_model import HOUR_S, fit_models, hourly_means
from vatio.errors import ConfigError
from vatio.model import ModelStatus, ModelVersion, Resolution
from vatio.model.instants import utcnow
from vatio.store import Store, open_store

DETECTOR = "seasonal"
#: Fewer hours of rollups than this and ``--source auto`` reads the raw readings instead.
MIN_ROLLUP_HOURS = 24 * 7
Mode = Literal["auto", "shadow", "promote"]
Source = Literal["auto", "rollups", "raw"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainOptions:
    days: int = 365
    devices: tuple[str, ...] = ()
    mode: Mode = "auto"
    source: Source = "auto"
    concurrency: int = 4
    chunk: int = 200


@dataclass(slots=True)
class TrainReport:
    """What one run stored, and the devices it skipped with the reason."""

    models: list[ModelVersion] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    raw_devices: int = 0
    load_s: float = 0.0
    fit_s: float = 0.0
    save_s: float = 0.0

    def summary(self) -> dict[str, object]:
        statuses = [m.status.value for m in self.models]
        return {
            "trained": len(self.models), "live": statuses.count("live"), "shadow": statuses.count("shadow"),
            "skipped": len(self.skipped), "from_raw_readings": self.raw_devices, "load_s": round(self.load_s, 2),
            "fit_s": round(self.fit_s, 2), "save_s": round(self.save_s, 2),
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class _History:
    device_id: str
    first_hour: int
    means: FloatArray
    raw: bool


async def train(store: Store, options: TrainOptions, *, now: datetime | None = None) -> TrainReport:
    """Fit and store a model version per device (see the module docstring)."""
    if options.days < 14:
        raise ConfigError(f"--days must be at least 14 (two weeks of history), got {options.days}")
    ends = await _device_ends(store, options.devices)
    live = {m.device_id for m in await store.models(detector=DETECTOR) if m.status is ModelStatus.LIVE}
    report, created = TrainReport(), now or utcnow()
    ids = sorted(ends)
    for at in range(0, len(ids), options.chunk):
        chunk = ids[at : at + options.chunk]
        started = time.perf_counter()
        histories = await _load_all(store, {d: ends[d] for d in chunk}, options)
        loaded = time.perf_counter()
        results = _fit(histories)
        fitted = time.perf_counter()
        for history, (model_bytes, metrics) in zip(histories, results, strict=True):
            if model_bytes is None:
                report.skipped[history.device_id] = f"{metrics['days_used']:g} usable days, 14 needed"
                continue
            version = _version(history, model_bytes, metrics, created)
            report.models.append(await _save(store, version, options.mode, history.device_id in live))
        report.raw_devices += sum(h.raw for h in histories)
        report.load_s += loaded - started
        report.fit_s += fitted - loaded
        report.save_s += time.perf_counter() - fitted
    return report


async def _device_ends(store: Store, wanted: Sequence[str]) -> dict[str, datetime]:
    """Each device's end of history: the hour after its newest reading.

    Not ``last_seen``: that is when the data *arrived*, and history replayed
    or back-filled long after it was measured would fall outside the window.
    """
    devices = {d.device_id: d.last_seen for d in await store.list_devices()}
    if unknown := sorted(set(wanted) - set(devices)):
        raise ConfigError(f"unknown device(s): {', '.join(unknown)}")
    ends = {}
    for device_id in wanted or sorted(devices):
        newest = await store.last_reading_at(device_id, near=devices[device_id]) or devices[device_id]
        ends[device_id] = datetime.fromtimestamp((math.floor(newest.timestamp() / HOUR_S) + 1) * HOUR_S, UTC)
    return ends


async def _load_all(store: Store, ends: dict[str, datetime], options: TrainOptions) -> list[_History]:
    gate = asyncio.Semaphore(options.concurrency)

    async def one(device_id: str, end: datetime) -> _History:
        async with gate:
            return await load_history(store, device_id, end - timedelta(days=options.days), end, options.source)

    return list(await asyncio.gather(*(one(d, e) for d, e in ends.items())))


async def load_history(store: Store, device_id: str, start: datetime, end: datetime, source: Source) -> _History:
    """Hourly mean power of ``[start, end)`` (whole hours) from rollups or raw readings."""
    first_hour = math.floor(start.timestamp() / HOUR_S)
    hours = math.ceil(end.timestamp() / HOUR_S) - first_hour
    if source != "raw":
        rows = [r for r in await store.rollups(device_id, start, end, Resolution.HOUR_1) if r.power_count]
        if source == "rollups" or len(rows) >= MIN_ROLLUP_HOURS:
            ts = np.fromiter((r.bucket.timestamp() for r in rows), np.float64, len(rows))
            mean = np.fromiter((r.power_sum_w / r.power_count for r in rows), np.float64, len(rows))
            return _History(device_id, first_hour, hourly_means(ts, mean, first_hour, hours), False)
    readings = await store.readings(device_id, start, end)
    ts = np.fromiter((r.ts.timestamp() for r in readings), np.float64, len(readings))
    power = np.fromiter((math.nan if r.power_w is None else r.power_w for r in readings), np.float64, len(readings))
    return _History(device_id, first_hour, hourly_means(ts, power, first_hour, hours), True)


def _fit(histories: list[_History]) -> list[tuple[bytes | None, dict[str, float]]]:
    """Fit all histories as one matrix (devices × hours) on a common hour grid."""
    if not histories:
        return []
    first = min(h.first_hour for h in histories)
    width = max(h.first_hour + len(h.means) for h in histories) - first
    matrix = np.full((len(histories), width), np.nan)
    for row, h in enumerate(histories):
        matrix[row, h.first_hour - first : h.first_hour - first + len(h.means)] = h.means
    results = fit_models(matrix, first)
    return [(None if r.model is None else r.model.to_bytes(), r.metrics) for r in results]


def _version(history: _History, params: bytes, metrics: dict[str, float], created: datetime) -> ModelVersion:
    known = np.flatnonzero(np.isfinite(history.means))
    start_h, end_h = history.first_hour + int(known[0]), history.first_hour + int(known[-1]) + 1
    return ModelVersion(
        detector=DETECTOR, device_id=history.device_id, version=0,
        status=ModelStatus.SHADOW,
        trained_from=datetime.fromtimestamp(start_h * HOUR_S, UTC),
        trained_to=datetime.fromtimestamp(end_h * HOUR_S, UTC), created_at=created, params=params,
        metrics={**metrics, "from_raw_readings": float(history.raw)},
    )  # fmt: skip


async def _save(store: Store, version: ModelVersion, mode: Mode, has_live: bool) -> ModelVersion:
    if mode == "shadow" or (has_live and mode in ("auto", "promote")):
        version = await store.save_model(version)
        if mode == "promote" and version.id is not None:
            version = await store.set_model_status(version.id, ModelStatus.LIVE)
        return version
    return await store.save_model(replace(version, status=ModelStatus.LIVE))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vatio train", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--db", required=True, help="database URL")
    parser.add_argument("--device", action="append", default=[], help="train this device (repeatable; default all)")
    parser.add_argument("--days", type=int, default=365, help="days of history up to each device's last reading")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--shadow", action="store_true", help="store every new version as shadow")
    mode.add_argument("--promote", action="store_true", help="make every new version live at once")
    parser.add_argument("--source", choices=["auto", "rollups", "raw"], default="auto")
    parser.add_argument("--concurrency", type=int, default=4, help="devices read from the store at once")
    return parser


async def _run(args: argparse.Namespace) -> TrainReport:
    store = open_store(args.db)
    try:
        await store.migrate()
        mode: Mode = "shadow" if args.shadow else "promote" if args.promote else "auto"
        options = TrainOptions(
            days=args.days, devices=tuple(args.device), mode=mode, source=args.source,
            concurrency=max(1, args.concurrency),
        )  # fmt: skip
        return await train(store, options)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    report = asyncio.run(_run(args))
    summary = {**report.summary(), "seconds": round(time.perf_counter() - started, 2)}
    print(json.dumps(summary))
    for device_id, reason in list(report.skipped.items())[:20]:
        print(f"skipped {device_id}: {reason}", file=sys.stderr)
    return 0

"""The ``vatio score`` input contract as meter traces, and the grid helpers the loaders share.

A CSV with a header and one row per device and interval:

* ``timestamp``: the interval's start, ISO 8601. With an offset (``Z``,
  ``+02:00``) it is exact; naive, it is wall-clock time in ``tz``, the repeated
  hour of a DST end resolved by row order. All rows must be of one kind.
* ``device_id``: ``[A-Za-z0-9_-]{1,64}``.
* ``power_w`` (mean power over the interval, W) and/or ``energy_kwh`` (energy
  of the interval starting at ``timestamp``, kWh); empty or ``nan`` = unknown.
  The counter integrates ``energy_kwh``, or ``power_w`` where that is unknown;
  power missing is derived from the energy.
* optional ``voltage_v`` and ``temperature_c``.

Each device's rows must lie on one regular grid (its step is the most common
spacing; missing intervals are fine) without duplicate timestamps. Anything
else raises :class:`~vatio.errors.ConfigError` naming the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from vatio.contracts import id_problem
from vatio.detect.base import FloatArray, IntArray
from vatio.errors import ConfigError
from vatio.sim.inject import MeterTrace

VALUE_COLUMNS: Final = ("power_w", "energy_kwh")
OPTIONAL_COLUMNS: Final = ("voltage_v", "temperature_c")
_AWARE = r"(?:[Zz]|[+-]\d{2}:?\d{2})$"
_UNKNOWN = frozenset({"", "nan", "NaN", "NAN"})


def check_zone(tz: str) -> ZoneInfo:
    """The zone named ``tz``, or :class:`ConfigError`.

    >>> check_zone("Mars/Olympus")
    Traceback (most recent call last):
    ...
    vatio.errors.ConfigError: unknown time zone 'Mars/Olympus'
    """
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}") from exc


def on_grid(epoch_s: IntArray, step_s: int, *columns: FloatArray) -> tuple[IntArray, list[FloatArray]]:
    """Spread sorted, unique rows onto the complete grid from the first to the last; NaN elsewhere.

    >>> ts, (power,) = on_grid(np.array([0, 1800, 5400]), 1800, np.array([1.0, 2.0, 4.0]))
    >>> ts.tolist(), power.tolist()
    ([0, 1800, 3600, 5400], [1.0, 2.0, nan, 4.0])
    """
    offsets = epoch_s - epoch_s[0]
    if np.any(offsets % step_s):
        raise ValueError(f"timestamps are not on a {step_s} s grid")
    slots = offsets // step_s
    n = int(slots[-1]) + 1
    grid = epoch_s[0] + np.arange(n, dtype=np.int64) * step_s
    spread = []
    for values in columns:
        full = np.full(n, np.nan)
        full[slots] = values
        spread.append(full)
    return grid, spread


def load_csv(path: Path, *, tz: str = "UTC") -> list[MeterTrace]:
    """Traces of every device in a ``vatio score`` input file, sorted by device id."""
    check_zone(tz)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [c for c in ("timestamp", "device_id") if c not in frame.columns]
    if missing or not any(c in frame.columns for c in VALUE_COLUMNS):
        raise ConfigError(
            f"{path}: needs columns timestamp, device_id and power_w and/or energy_kwh; "
            f"found {', '.join(map(str, frame.columns)) or 'none'}"
        )
    if frame.empty:
        raise ConfigError(f"{path}: no data rows")
    values = {c: _numbers(frame, c, path) for c in (*VALUE_COLUMNS, *OPTIONAL_COLUMNS) if c in frame}
    devices = frame["device_id"].str.strip().to_numpy(object)
    names: list[str] = sorted(set(devices.tolist()))
    for device in names:
        problem = id_problem(device)
        if problem is not None:
            line = int(np.flatnonzero(devices == device)[0]) + 2
            raise ConfigError(f"{path}: line {line}: device_id {device!r} {problem}")
    stamps = frame["timestamp"].str.strip()
    unparsable = pd.to_datetime(stamps, format="ISO8601", utc=True, errors="coerce").isna().to_numpy(bool)
    if unparsable.any():
        row = int(np.flatnonzero(unparsable)[0])
        raise ConfigError(f"{path}: line {row + 2}: timestamp {stamps.iloc[row]!r} is not ISO 8601")
    aware = stamps.str.contains(_AWARE, regex=True)
    if aware.any() and not aware.all():
        line = int(np.flatnonzero(~aware.to_numpy(bool) if aware.iloc[0] else aware.to_numpy(bool))[0]) + 2
        raise ConfigError(f"{path}: line {line}: mixes timestamps with and without a UTC offset")
    traces = []
    for device in names:
        rows = np.flatnonzero(devices == device)
        epoch = _epoch_seconds(stamps.iloc[rows], bool(aware.iloc[0]), tz, path, device)
        traces.append(_trace(path, device, rows, epoch, {c: v[rows] for c, v in values.items()}, tz))
    return traces


def _numbers(frame: Any, column: str, path: Path) -> FloatArray:
    text = frame[column].str.strip()
    numbers: FloatArray = pd.to_numeric(text.where(~text.isin(_UNKNOWN)), errors="coerce").to_numpy(np.float64)
    bad = (np.isnan(numbers) & ~text.isin(_UNKNOWN).to_numpy(bool)) | np.isinf(numbers)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{path}: line {row + 2}: {column} {text.iloc[row]!r} is not a finite number")
    return numbers


def _epoch_seconds(stamps: Any, aware: bool, tz: str, path: Path, device: str) -> IntArray:
    parsed = pd.to_datetime(stamps, format="ISO8601", utc=aware)
    if not aware:
        try:
            parsed = parsed.dt.tz_localize(tz, ambiguous="infer", nonexistent="raise")
        except ValueError as exc:
            raise ConfigError(
                f"{path}: device {device}: local times in {tz} that daylight saving makes "
                f"ambiguous or impossible ({exc}); give timestamps with a UTC offset"
            ) from exc
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return np.asarray(seconds, dtype=np.int64)


def _trace(
    path: Path, device: str, rows: IntArray, epoch: IntArray, values: dict[str, FloatArray], tz: str
) -> MeterTrace:
    order = np.argsort(epoch, kind="stable")
    epoch = epoch[order]
    spacing = np.diff(epoch)
    if np.any(spacing == 0):
        at = int(np.flatnonzero(spacing == 0)[0])
        lines = sorted(int(rows[order[at + k]]) + 2 for k in (0, 1))
        raise ConfigError(f"{path}: lines {lines[0]} and {lines[1]}: duplicate timestamp for device {device}")
    if len(epoch) < 2:
        raise ConfigError(f"{path}: device {device} has one row; its interval cannot be inferred")
    steps, counts = np.unique(spacing, return_counts=True)
    step = int(steps[np.argmax(counts)])
    off_grid = (epoch - epoch[0]) % step != 0
    if off_grid.any():
        line = int(rows[order[int(np.flatnonzero(off_grid)[0])]]) + 2
        raise ConfigError(f"{path}: line {line}: off device {device}'s regular {step} s grid")
    names = list(values)
    ts, spread = on_grid(epoch, step, *(values[name][order] for name in names))
    columns = dict(zip(names, spread, strict=True))
    power_w, energy_kwh = columns.get("power_w"), columns.get("energy_kwh")
    interval_wh = None if energy_kwh is None else energy_kwh * 1000.0
    if interval_wh is not None and power_w is not None:
        # A row with power but no energy still moves the counter.
        interval_wh = np.where(np.isfinite(interval_wh), interval_wh, power_w * step / 3600.0)
    return MeterTrace.from_intervals(
        device,
        ts,
        step,
        power_w=power_w,
        interval_wh=interval_wh,
        voltage_v=columns.get("voltage_v"),
        temperature_c=columns.get("temperature_c"),
        tz=tz,
    )

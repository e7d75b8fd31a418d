"""`vatio score IN.csv --out OUT.csv`: causal scoring of a file (the contract in ARCHITECTURE.md).

Input columns ``timestamp,device_id`` and ``power_w`` and/or ``energy_kwh``
(the energy of the interval starting at ``timestamp``; ``--interval-ending``
for exports stamped at the end). Output, one row per input row, in input
order: ``timestamp,device_id,score,anomaly,kind,explanation``. Each row is
scored with only the rows of its device that are not later than it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vatio.detect.base import DeviceSeries, SeriesDetector, Threshold
from vatio.detect.explain import explain
from vatio.detect.suite import VatioDetector
from vatio.errors import ConfigError

OUTPUT_COLUMNS = ["timestamp", "device_id", "score", "anomaly", "kind", "explanation"]
#: The suite's threshold as `vatio eval --config full` chose it on its selection split (4.876:
#: best event F1 within one false alarm per household-month). Statistical scores are decades
#: of rarity against each home's own tail, record scores excess watts over the home's own
#: record for that time of day; see docs/detection.md and docs/eval/report.md.
DEFAULT_THRESHOLD = 4.88


def read_input(path: Path, *, tz: str = "UTC") -> pd.DataFrame:
    """Read and validate the input; raises ConfigError naming the problem."""
    try:
        frame = pd.read_csv(path, dtype={"timestamp": str, "device_id": str}, keep_default_na=True)
    except FileNotFoundError as exc:
        raise ConfigError(f"no such file: {path}") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable CSV file: {exc}") from exc
    missing = [c for c in ("timestamp", "device_id") if c not in frame.columns]
    if missing:
        raise ConfigError(f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}")
    if "power_w" not in frame.columns and "energy_kwh" not in frame.columns:
        raise ConfigError("need a power_w or an energy_kwh column")
    if frame["device_id"].isna().any():
        raise ConfigError(f"row {_first(frame['device_id'].isna())}: device_id is empty")
    frame["_ts"] = _epoch_seconds(frame["timestamp"], tz)
    for column in ("power_w", "energy_kwh"):
        if column in frame.columns:
            raw = frame[column]
            values = pd.to_numeric(raw, errors="coerce")
            bad = (values.isna() & raw.notna()) | np.isinf(values)
            if bad.any():
                row = _first(bad)
                raise ConfigError(f"row {row}: {column} '{raw.iloc[row - 2]}' is not a finite number")
            frame[column] = values.astype(float)
    return frame


_OFFSET = r"(?:Z|[+-]\d\d:?\d\d)$"


def _epoch_seconds(text: pd.Series, tz: str) -> pd.Series:
    """Epoch seconds of ISO 8601 stamps: all with an offset (any mix of offsets,
    as across a DST change) or all naive (local wall-clock time in ``tz``)."""
    with_offset = text.str.contains(_OFFSET, regex=True, na=False)
    if with_offset.any() and not with_offset.all():
        row = _first(~with_offset)
        raise ConfigError(f"row {row}: timestamp {text.iloc[row - 2]!r} has no UTC offset while others do")
    aware = bool(with_offset.all())
    try:
        stamps = pd.to_datetime(text, errors="coerce", utc=aware, format="ISO8601")
    except ValueError as exc:
        raise ConfigError(f"timestamps could not be read: {exc}") from exc
    if stamps.isna().any():
        row = _first(stamps.isna())
        raise ConfigError(f"row {row}: timestamp {text.iloc[row - 2]!r} is not ISO 8601")
    if not aware:
        # Local wall-clock stamps: the repeated autumn hour is taken as the first
        # occurrence and the skipped spring hour moves forward; the clock detector
        # then sees the duplicates for what they are.
        try:
            stamps = stamps.dt.tz_localize(tz, ambiguous=np.ones(len(stamps), dtype=bool), nonexistent="shift_forward")
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"cannot place the timestamps in time zone {tz!r}: {exc}") from exc
    return stamps.dt.tz_convert("UTC").dt.as_unit("s").astype("int64")


def _first(mask: pd.Series) -> int:
    """1-based line number in the file of the first True (the header is line 1)."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2


#: Rows a device's resolution is inferred from; rows after them are scored causally.
STEP_ROWS = 100


def infer_step(ts: np.ndarray) -> int:
    """The series' regular resolution: the most common positive difference of its first
    ``STEP_ROWS`` rows, 1 s to 1 h (later rows never change how earlier ones are read)."""
    diffs = np.diff(np.unique(ts[:STEP_ROWS]))
    if len(diffs) == 0:
        return 3600
    values, counts = np.unique(diffs, return_counts=True)
    return int(min(max(values[np.argmax(counts)], 1), 3600))


def device_series(device_id: str, rows: pd.DataFrame, *, interval_ending: bool) -> DeviceSeries:
    ts = rows["_ts"].to_numpy(dtype=np.int64)
    step = infer_step(ts)
    if interval_ending:
        ts = ts - step
    power = rows["power_w"].to_numpy(dtype=float) if "power_w" in rows else np.full(len(ts), np.nan)
    energy = rows["energy_kwh"].to_numpy(dtype=float) * 1000.0 if "energy_kwh" in rows else None
    if energy is not None:
        # Where only the interval's energy is known, its mean power stands in.
        power = np.where(np.isnan(power), energy * 3600.0 / step, power)
    return DeviceSeries(device_id, ts, power, step, energy_wh=energy)


def score_frame(
    frame: pd.DataFrame,
    *,
    detector: SeriesDetector,
    threshold: Threshold,
    interval_ending: bool = False,
) -> pd.DataFrame:
    """Score every device; the result is aligned with ``frame``'s rows."""
    n = len(frame)
    score = np.zeros(n)
    anomaly = np.zeros(n, dtype=np.int8)
    kind = np.full(n, "", dtype=object)
    explanation = np.full(n, "", dtype=object)
    order = np.lexsort((frame["_ts"].to_numpy(), frame["device_id"].to_numpy()))
    ordered = frame.iloc[order]
    for device_id, rows in ordered.groupby("device_id", sort=False):
        positions = rows.index.to_numpy()
        series = device_series(str(device_id), rows, interval_ending=interval_ending)
        result = detector.score_series(series)
        flagged = threshold.decide(result.score)
        score[positions] = result.score
        anomaly[positions] = flagged
        for i in np.flatnonzero(flagged):
            kind[positions[i]] = result.kind[i]
            explanation[positions[i]] = explain(result, int(i))
    return pd.DataFrame(
        {
            "timestamp": frame["timestamp"],
            "device_id": frame["device_id"],
            "score": np.round(score, 4),
            "anomaly": anomaly,
            "kind": kind,
            "explanation": explanation,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vatio score", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--interval-ending", action="store_true", help="energy_kwh stamped at interval end")
    parser.add_argument("--tz", default="UTC", help="time zone of timestamps that carry no offset")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    frame = read_input(args.input, tz=args.tz)
    result = score_frame(
        frame,
        detector=VatioDetector(),
        threshold=Threshold(args.threshold),
        interval_ending=args.interval_ending,
    )
    result.to_csv(args.out, index=False)
    seconds = time.perf_counter() - started
    print(
        f"scored {len(result)} rows of {frame['device_id'].nunique()} devices in {seconds:.1f}s",
        file=sys.stderr,
    )
    return 0

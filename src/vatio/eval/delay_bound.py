"""`vatio eval bound`: how many added loads could *any* simple detector see within 2 h, at the budget?

An optimistic bound on the delay target of half-hourly data, measured on
homes without injected anomalies. A step of ``D`` watts (left on, or a
baseload increase) adds ``D`` to every slot from its onset. A detector that
sees it within 2 h must alert on a row at most 2 h after the onset (the
harness's delay: the alerted row's start minus the label's), so it can use
at most the 5 half-hour slots from the onset to that row.

Each *statistic* is one a detector could score: the minimum or the mean of
the last ``k`` slots (``k`` 1-5), minus a causal expectation of it (the same
slot of day: its median over the past 28 days, its record over the past 28
days, or yesterday's value). On the home's own clean recording this residual
``r`` is what the detector sees when nothing is wrong. Optimistic choices,
all in the detector's favour:

* the threshold is set **per home, in sample**: the lowest whose exceedances
  (runs closer than 2 h merged into one episode) number at most
  ``--budget`` per 30 days, the whole false-alarm budget spent on this one
  statistic (the suite must share it among every kind);
* a step is seen if ``r + D`` exceeds the threshold on **any** row from the
  one whose window first lies wholly after the onset to the row 2 h in.

The share of (onset, size) draws seen so, per home, is an upper bound for
detectors of that family. Onsets are drawn uniformly over the recording and
sizes uniformly over the injector's ranges (``vatio.sim.anomalies.SPECS``),
as the evaluation places them.

The target is a median delay over the labels found: it needs at least half
of the labels a detector finds (its recall) found within 2 h.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vatio.detect.base import FloatArray
from vatio.detect.hourly import past_weeks
from vatio.eval.report import DEFAULT_DATA
from vatio.model.anomaly import AnomalyKind
from vatio.sim.anomalies import SPECS
from vatio.sim.datasets import load
from vatio.sim.inject import MeterTrace

HALF_HOUR_S = 1800
SLOTS_PER_DAY = 48
#: Rows from the onset to the row 2 h in, at half-hourly data: onset + 0 .. onset + 4.
ROWS_WITHIN = 5
HISTORY_DAYS = 28
#: Exceedances at most this many rows apart are one episode, as the harness merges them
#: (``metrics.alert_episodes``: 2 h of no alert between two alerted half-hour rows).
MERGE_ROWS = 5
KINDS = (AnomalyKind.LEFT_ON, AnomalyKind.BASELOAD)

How = Literal["min", "mean"]
Expected = Literal["median28", "record28", "yesterday"]


@dataclass(frozen=True, slots=True)
class Statistic:
    window: int
    how: How
    expected: Expected

    @property
    def name(self) -> str:
        return f"{self.how} of {self.window} slot(s) - {self.expected}"


STATISTICS = tuple(
    Statistic(k, how, expected)
    for k in range(1, ROWS_WITHIN + 1)
    for how in ("min", "mean")
    for expected in ("median28", "record28", "yesterday")
)


def rolling(power: FloatArray, window: int, how: How) -> FloatArray:
    """The min or mean of the last ``window`` slots at every row (NaN before ``window`` rows).

    >>> rolling(np.array([3.0, 1.0, 2.0, 5.0]), 2, "min").tolist()
    [nan, 1.0, 1.0, 2.0]
    """
    out = np.full(len(power), np.nan)
    if len(power) < window:
        return out
    views = np.lib.stride_tricks.sliding_window_view(power, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows stay NaN
        out[window - 1 :] = np.nanmin(views, axis=1) if how == "min" else np.nanmean(views, axis=1)
    return out


def expectation(stat: FloatArray, expected: Expected) -> FloatArray:
    """A causal expectation of ``stat`` at every row, from the same slot of earlier days only.

    >>> days = np.tile(np.arange(48.0), 3)
    >>> expectation(days, "yesterday")[48:50].tolist(), float(expectation(days, "record28")[100])
    ([0.0, 1.0], 4.0)
    """
    if expected == "yesterday":
        yesterday: FloatArray = past_weeks(stat, 1, SLOTS_PER_DAY)[:, 0]
        return yesterday
    past = past_weeks(stat, HISTORY_DAYS, SLOTS_PER_DAY)  # a row per slot, a column per earlier day
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result: FloatArray = np.nanmedian(past, axis=1) if expected == "median28" else np.nanmax(past, axis=1)
    return result


def episodes(exceeds: np.ndarray) -> int:
    """Runs of True rows, rows at most :data:`MERGE_ROWS` apart merged.

    >>> episodes(np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool))
    2
    """
    rows = np.flatnonzero(exceeds)
    return 0 if rows.size == 0 else 1 + int((np.diff(rows) > MERGE_ROWS).sum())


def budget_threshold(residual: FloatArray, per_month: float) -> float:
    """The lowest threshold (of a fine grid of quantiles) with at most ``per_month`` episodes per 30 days."""
    known = ~np.isnan(residual)
    allowed = per_month * known.sum() / (30 * SLOTS_PER_DAY)
    values = residual[known]
    best = float(values.max())
    for threshold in np.quantile(values, 1.0 - np.geomspace(1e-5, 0.3, 120)):
        if threshold < best and episodes(np.where(known, residual > threshold, False)) <= allowed:
            best = float(threshold)
    return best


def seen_within(
    residual: FloatArray, threshold: float, window: int, sizes_w: FloatArray, onsets: np.ndarray
) -> np.ndarray:
    """Per draw, whether ``r + size`` exceeds ``threshold`` on a row whose window is all after the onset, 2 h in."""
    seen = np.zeros(len(onsets), dtype=bool)
    for row in range(window - 1, ROWS_WITHIN):
        seen |= np.nan_to_num(residual[onsets + row], nan=-np.inf) + sizes_w > threshold
    return seen


def home_bound(
    trace: MeterTrace, statistic: Statistic, per_month: float, rng: np.random.Generator, draws: int
) -> dict[str, float]:
    """Per kind, the share of draws ``statistic`` sees within 2 h in ``trace`` at ``per_month``."""
    stat = rolling(trace.power_w, statistic.window, statistic.how)
    residual = stat - expectation(stat, statistic.expected)
    residual[: HISTORY_DAYS * SLOTS_PER_DAY] = np.nan
    threshold = budget_threshold(residual, per_month)
    start = HISTORY_DAYS * SLOTS_PER_DAY
    onsets = rng.integers(start, len(residual) - ROWS_WITHIN, draws)
    shares = {}
    for kind in KINDS:
        spec = SPECS[kind]
        sizes = rng.uniform(spec.low, spec.high, draws)
        shares[kind.value] = float(seen_within(residual, threshold, statistic.window, sizes, onsets).mean())
    return shares


def bound(
    traces: Sequence[MeterTrace], *, per_month: float = 1.0, draws: int = 4000, seed: int = 0
) -> dict[str, dict[str, object]]:
    """Per kind, the best statistic's mean share over homes, with its per-home shares."""
    half_hourly = [t for t in traces if t.step_s == HALF_HOUR_S and len(t) > (HISTORY_DAYS + 7) * SLOTS_PER_DAY]
    if not half_hourly:
        raise ValueError("no half-hourly home with more than 35 days")
    per_statistic = {}
    for statistic in STATISTICS:
        rng = np.random.default_rng(seed)
        per_statistic[statistic.name] = [home_bound(t, statistic, per_month, rng, draws) for t in half_hourly]
    result: dict[str, dict[str, object]] = {}
    for kind in KINDS:
        means = {name: float(np.mean([h[kind.value] for h in homes])) for name, homes in per_statistic.items()}
        best = max(means, key=means.__getitem__)
        result[kind.value] = {
            "best_statistic": best,
            "mean_share_within_2h": round(means[best], 3),
            "per_home": [round(h[kind.value], 3) for h in per_statistic[best]],
            "homes": len(half_hourly),
        }
    return result


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="vatio eval bound", description=__doc__.splitlines()[0])
    parser.add_argument("--homes", choices=("sgsc", "sim"), default="sgsc", help="real SGSC homes or simulated ones")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real data directory")
    parser.add_argument("--seed", type=int, default=0, help="the simulated homes' seed (as vatio eval) and the draws'")
    parser.add_argument("--budget", type=float, default=1.0, help="false alarms per household-month")
    args = parser.parse_args(list(argv))
    if args.homes == "sgsc":
        path = args.data / "sgsc_households_halfhourly.csv.gz"
        if not path.exists():
            parser.exit(2, f"vatio eval bound: {path} does not exist (give --data)\n")
        traces = load(path, "sgsc")
    else:
        from vatio.eval.harness import preset, simulated_traces

        traces = [t for _, t in simulated_traces(preset("full", seed=args.seed, progress=False))]
    try:
        result = bound(traces, per_month=args.budget, seed=args.seed)
    except ValueError as exc:
        parser.exit(2, f"vatio eval bound: {exc}\n")
    print(json.dumps(result, indent=2))
    return 0

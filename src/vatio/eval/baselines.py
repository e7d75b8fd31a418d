"""Reference detectors the evaluation compares Vatio's own against.

Each is a :class:`~vatio.detect.base.SeriesDetector`: causal (row ``i`` is
scored from rows ``0..i`` only), deterministic given ``seed``, higher score =
more anomalous. A row a detector cannot judge yet (no history, no reading)
scores NaN, which no threshold alerts on.

- :class:`StaticThreshold` — the "usage above my usual maximum" rule a meter
  app ships with: power over a trailing high quantile.
- :class:`HourOfWeekMAD` — the classic seasonal robust baseline.
- :class:`RiverHalfSpaceTrees` — an online tree ensemble (River).
- :class:`PyODBaseline` — a batch outlier model (PyOD) refitted on the past.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from river import anomaly, preprocessing

from vatio.detect.base import DeviceSeries, FloatArray, IntArray, SeriesScores

WEEK_S = 7 * 86400
DAY_S = 86400
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its sigma


def _grid(series: DeviceSeries) -> tuple[IntArray, int]:
    """Each row's index on the regular ``step_s`` grid from the first row, and the grid length."""
    if len(series) == 0:
        return np.zeros(0, dtype=np.int64), 0
    index = (series.ts - series.ts[0]) // series.step_s
    return index.astype(np.int64), int(index[-1]) + 1


def _on_grid(values: FloatArray, index: IntArray, n_grid: int) -> FloatArray:
    grid = np.full(n_grid, np.nan)
    grid[index] = values
    return grid


def _since(ts: IntArray, deviating: npt.NDArray[np.bool_]) -> IntArray:
    """Epoch second each run of deviating rows started (0 outside runs)."""
    starts = deviating & ~np.r_[False, deviating[:-1]]
    run = np.cumsum(starts) - 1
    start_ts = ts[starts]
    return np.where(deviating, start_ts[np.maximum(run, 0)] if start_ts.size else 0, 0).astype(np.int64)


def _hour_of_day(ts: IntArray) -> FloatArray:
    return (ts % DAY_S) / 3600.0


class StaticThreshold:
    """Score = how far power is above a trailing quantile, relative to it.

    The level is recomputed at each UTC midnight from the ``window_days``
    before it, so a whole day is judged against the same bar.

    >>> ts = np.arange(0, 3 * 86400, 1800, dtype=np.int64)
    >>> power = np.full(len(ts), 200.0); power[-1] = 2000.0
    >>> s = StaticThreshold().score_series(DeviceSeries("m", ts, power, 1800))
    >>> bool(np.isnan(s.score[0])), round(float(s.score[-1]), 1)
    (True, 9.0)
    """

    name = "static_threshold"

    def __init__(self, *, quantile: float = 0.99, window_days: int = 28, min_level_w: float = 50.0) -> None:
        self.quantile = quantile
        self.window_days = window_days
        self.min_level_w = min_level_w

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        n = len(series)
        out = SeriesScores.empty(n, self.name)
        out.observed_w = series.power_w.astype(np.float64)
        out.score[:] = np.nan
        days = series.ts // DAY_S
        # Rows are sorted, so each UTC day is one slice, and so is its trailing window.
        day_starts = np.unique(days) * DAY_S
        window = np.searchsorted(series.ts, day_starts - self.window_days * DAY_S)
        first = np.searchsorted(series.ts, day_starts)
        last = np.append(first[1:], n)
        for lo, hi, day_lo, day_hi in zip(window, first, first, last, strict=True):
            past = series.power_w[lo:hi]
            if not np.isfinite(past).any():
                continue
            level = max(float(np.nanquantile(past, self.quantile)), self.min_level_w)
            out.high_w[day_lo:day_hi] = level
            out.low_w[day_lo:day_hi] = 0.0
            out.score[day_lo:day_hi] = (series.power_w[day_lo:day_hi] - level) / level
        out.since = _since(series.ts, np.nan_to_num(out.score, nan=-1.0) > 0)
        return out


class HourOfWeekMAD:
    """Robust z-score against the same hour of the week in the past ``weeks`` weeks.

    Expected = median of those readings; band = median ± ``k`` scaled MADs.
    The scale has a floor (``min_scale_w``, ``rel_scale`` × median) because a
    flat baseload hour has a MAD of zero and would make every watt infinite.

    >>> ts = np.arange(0, 3 * 7 * 86400, 3600, dtype=np.int64)
    >>> power = 100.0 + 50.0 * (ts % 86400 >= 18 * 3600); power[-1] += 1000.0
    >>> s = HourOfWeekMAD().score_series(DeviceSeries("m", ts, power, 3600))
    >>> float(s.expected_w[-1]), float(s.score[-1]) > 10
    (150.0, True)
    """

    name = "hour_of_week_mad"

    def __init__(self, *, k: float = 3.0, weeks: int = 6, min_scale_w: float = 20.0, rel_scale: float = 0.05) -> None:
        self.k = k
        self.weeks = weeks
        self.min_scale_w = min_scale_w
        self.rel_scale = rel_scale

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        n, step = len(series), series.step_s
        out = SeriesScores.empty(n, self.name)
        power = series.power_w.astype(np.float64)
        out.observed_w = power
        index, n_grid = _grid(series)
        grid = _on_grid(power, index, n_grid)
        per_hour = 3600 // step if step <= 3600 and 3600 % step == 0 else 1
        per_week = WEEK_S // step
        hour_start = index - (series.ts % 3600) // step if per_hour > 1 else index
        offsets = np.array(
            [-w * per_week + j for w in range(1, self.weeks + 1) for j in range(per_hour)], dtype=np.int64
        )
        past_index = hour_start[:, None] + offsets[None, :]
        past = np.where(past_index >= 0, grid[np.clip(past_index, 0, None)], np.nan)
        enough = np.isfinite(past).sum(axis=1) >= per_hour
        past[~enough] = 0.0  # placeholder rows; masked below, keeps nanmedian quiet
        median = np.nanmedian(past, axis=1)
        mad = np.nanmedian(np.abs(past - median[:, None]), axis=1)
        scale = np.maximum.reduce([MAD_TO_SIGMA * mad, np.full(n, self.min_scale_w), self.rel_scale * np.abs(median)])
        valid = enough & np.isfinite(power)
        out.score = np.where(valid, np.abs(power - median) / scale, np.nan)
        out.expected_w = np.where(enough, median, np.nan)
        out.low_w = np.where(enough, median - self.k * scale, np.nan)
        out.high_w = np.where(enough, median + self.k * scale, np.nan)
        out.since = _since(series.ts, np.nan_to_num(out.score) >= self.k)
        return out


class RiverHalfSpaceTrees:
    """River's Half-Space Trees over power, its 2-hour mean and the hour of day.

    Per row: score with the model as it was, then learn the row — the online
    protocol, hence causal. Features are min-max scaled online (HST assumes
    [0, 1]). The first ``window_size`` rows score NaN: the trees have no
    reference mass yet.

    >>> ts = np.arange(0, 10 * 86400, 1800, dtype=np.int64)
    >>> flat = DeviceSeries("m", ts, np.full(len(ts), 1.0), 1800)
    >>> s = RiverHalfSpaceTrees(window_size=50).score_series(flat)
    >>> bool(np.isnan(s.score[0])), bool(np.isfinite(s.score[-1]))
    (True, True)
    """

    name = "river_hst"

    def __init__(self, *, n_trees: int = 10, height: int = 8, window_size: int = 250, seed: int = 0) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        n = len(series)
        out = SeriesScores.empty(n, self.name)
        power = series.power_w.astype(np.float64)
        out.observed_w = power
        rows_2h = max(1, 7200 // series.step_s)
        recent_mean = pd.Series(power).rolling(rows_2h, min_periods=1).mean().to_numpy()
        angle = 2 * math.pi * _hour_of_day(series.ts) / 24.0
        features = np.column_stack([power, recent_mean, np.sin(angle), np.cos(angle)])
        model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
            n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed
        )
        scores = np.full(n, np.nan)
        learned = 0
        for i, row in enumerate(features.tolist()):
            if not math.isfinite(row[0]):
                continue
            x = {"power": row[0], "mean_2h": row[1], "hour_sin": row[2], "hour_cos": row[3]}
            if learned >= self.window_size:
                scores[i] = model.score_one(x)
            model.learn_one(x)
            learned += 1
        out.score = scores
        return out


class PyODBaseline:
    """A PyOD model (IForest or HBOS) over rolling-window features, refitted on the past.

    Only models whose score of a row depends on the training data and that
    row alone qualify: ECOD and COPOD rank new rows together with each other,
    so a later row would change an earlier row's score.

    First fit after ``warmup_days``; then every ``refit_days`` the model is
    refitted on the ``history_days`` before and scores the rows up to the next
    refit — never a row it was trained after. Features: power, its 3-hour
    mean and standard deviation, the change from the same time yesterday and
    the hour of day.

    >>> ts = np.arange(0, 20 * 86400, 3600, dtype=np.int64)
    >>> power = 100.0 + 50.0 * np.sin(2 * np.pi * ts / 86400)
    >>> s = PyODBaseline(seed=1).score_series(DeviceSeries("m", ts, power, 3600))
    >>> bool(np.isnan(s.score[0])), bool(np.isfinite(s.score[-1]))
    (True, True)
    """

    def __init__(
        self,
        *,
        model: str = "iforest",
        warmup_days: int = 14,
        refit_days: int = 7,
        history_days: int = 56,
        seed: int = 0,
    ) -> None:
        if model not in ("iforest", "hbos"):
            raise ValueError(f"unknown PyOD model {model!r}: iforest or hbos")
        self.model = model
        self.warmup_days = warmup_days
        self.refit_days = refit_days
        self.history_days = history_days
        self.seed = seed
        self.name = f"pyod_{model}"

    def _new_model(self) -> Any:
        if self.model == "hbos":
            from pyod.models.hbos import HBOS

            return HBOS()
        from pyod.models.iforest import IForest

        return IForest(n_estimators=100, random_state=self.seed)

    def features(self, series: DeviceSeries) -> FloatArray:
        """Causal per-row features (trailing windows only); NaN where undefined."""
        index, n_grid = _grid(series)
        grid = pd.Series(_on_grid(series.power_w.astype(np.float64), index, n_grid))
        rows_3h = max(2, 3 * 3600 // series.step_s)
        rows_day = max(1, DAY_S // series.step_s)
        rolling = grid.rolling(rows_3h, min_periods=2)
        angle = 2 * math.pi * _hour_of_day(series.ts) / 24.0
        return np.column_stack(
            [
                grid.to_numpy()[index],
                rolling.mean().to_numpy()[index],
                rolling.std().to_numpy()[index],
                (grid - grid.shift(rows_day)).to_numpy()[index],
                np.sin(angle),
                np.cos(angle),
            ]
        )

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        n = len(series)
        out = SeriesScores.empty(n, self.name)
        out.observed_w = series.power_w.astype(np.float64)
        out.score[:] = np.nan
        if n == 0:
            return out
        features = self.features(series)
        usable = np.isfinite(features).all(axis=1)
        ts = series.ts
        fit_at = int(ts[0]) + self.warmup_days * DAY_S
        while fit_at <= int(ts[-1]):
            next_fit = fit_at + self.refit_days * DAY_S
            train = usable & (ts >= fit_at - self.history_days * DAY_S) & (ts < fit_at)
            target = usable & (ts >= fit_at) & (ts < next_fit)
            if train.sum() >= 50 and target.any():
                detector = self._new_model()
                detector.fit(features[train])
                out.score[target] = detector.decision_function(features[target])
            fit_at = next_fit
        return out

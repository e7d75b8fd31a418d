"""Data-quality detectors on the rows themselves (edge tier, batch path).

Each returns a score per row (0 = fine; >= 1 = as anomalous as the detector's
threshold of evidence) from rows up to and including that row.
"""

from __future__ import annotations

import numpy as np

from vatio.detect.base import DeviceSeries, FloatArray


def gaps(
    series: DeviceSeries,
    *,
    min_missing_steps: int = 1,
    learn_days: int = 28,
    usual_count: int = 3,
    repeat_hours: float = 24.0,
) -> FloatArray:
    """The first row after a hole of ``min_missing_steps`` or more missing intervals, unless usual here.

    A meter that drops the same short run of readings again and again (a
    routine upload window) has taught us that hole: a hole no longer than the
    ``usual_count``-th longest of the past ``learn_days`` scores below 1. A
    flaky meter is one condition, not one alert per hole: within
    ``repeat_hours`` after a hole that alerted, a hole no longer than it
    scores below 1 too.

    >>> ts = np.array([0, 1, 2, 5, 6], dtype=np.int64) * 1800
    >>> gaps(DeviceSeries("d", ts, np.ones(5), 1800)).tolist()
    [0.0, 0.0, 0.0, 2.0, 0.0]
    """
    score = np.zeros(len(series))
    if len(series) < 2:
        return score
    missing = np.diff(series.ts) / series.step_s - 1
    score[1:] = np.where(missing >= min_missing_steps, missing / min_missing_steps, 0.0)
    holes = np.flatnonzero(missing >= min_missing_steps)
    alerted_ts, alerted_len = -np.inf, 0.0
    for k, at in enumerate(holes):
        recent = holes[:k][series.ts[holes[:k] + 1] >= series.ts[at + 1] - learn_days * 86400]
        if len(recent) >= usual_count:
            usual = np.sort(missing[recent])[-usual_count]
            if missing[at] <= usual:
                score[at + 1] = 0.5 * missing[at] / usual
        if series.ts[at + 1] - alerted_ts < repeat_hours * 3600 and missing[at] <= alerted_len:
            score[at + 1] = min(score[at + 1], 0.5 * missing[at] / alerted_len)
        if score[at + 1] >= 1.0:
            alerted_ts, alerted_len = float(series.ts[at + 1]), float(missing[at])
    nan = np.isnan(series.power_w) & (series.energy_wh is None or np.isnan(series.energy_wh))
    return np.where(nan, 1.0, score)


def clock_faults(series: DeviceSeries) -> FloatArray:
    """Rows out of order, duplicated, or off the series' time grid."""
    score = np.zeros(len(series))
    if len(series) < 2:
        return score
    step = np.diff(series.ts)
    score[1:] = np.where(step <= 0, 2.0, 0.0)
    phase = series.ts % series.step_s
    usual = np.bincount(phase[: min(len(phase), 200)] % max(series.step_s, 1)).argmax()
    return np.maximum(score, np.where(phase != usual, 1.5, 0.0))


def counter_faults(series: DeviceSeries, *, max_power_w: float = 50_000.0) -> FloatArray:
    """Interval energy that is negative or beyond what the home could draw: a reset."""
    if series.energy_wh is None:
        return np.zeros(len(series))
    ceiling = max_power_w * series.step_s / 3600.0
    energy = series.energy_wh
    bad = (energy < -1e-9) | (energy > ceiling)
    return np.where(bad & ~np.isnan(energy), 3.0, 0.0)


def stuck(series: DeviceSeries, *, min_hours: float = 4.0) -> FloatArray:
    """Runs of identical non-zero values long enough that a live meter could not produce them."""
    power = series.power_w
    n = len(power)
    score = np.zeros(n)
    if n < 2:
        return score
    same = np.zeros(n, dtype=bool)
    same[1:] = (np.abs(np.diff(power)) < 1e-6) & (power[1:] > 1.0)
    # Length of the current run of repeats, causally.
    idx = np.arange(n)
    last_change = np.maximum.accumulate(np.where(~same, idx, 0))
    run_s = (idx - last_change) * series.step_s
    return np.where(same, run_s / (min_hours * 3600.0), 0.0)


def spikes(
    series: DeviceSeries, *, warmup_s: float = 86_400.0, hold_s: float = 300.0, factor: float = 3.0
) -> FloatArray:
    """A short value far above everything seen before: ``factor`` x the running max of past values.

    The running max starts as the max of the first ``warmup_s`` of the series
    (no row scores before that), and is taken over rows judged normal only, so
    a spike does not raise the bar for the next one. An excursion still above
    the bar ``hold_s`` after its first row is a new load, not a spike (a new
    plug's water heater at its first full run, an EV charger): from then on it
    raises the bar. Before, the bar stayed wherever a quiet first 48 rows had
    put it, and a one-minute sub-meter raised a spike at every run.
    """
    power = np.nan_to_num(series.power_w, nan=0.0)
    ts = series.ts
    n = len(power)
    score = np.zeros(n)
    if n == 0:
        return score
    warm = int(np.searchsorted(ts, ts[0] + warmup_s))
    if warm >= n:
        return score
    # The max of the past excluding spikes needs a loop; it is a few comparisons a row.
    ceiling = float(np.max(power[:warm])) if warm else 0.0
    began = -1  # first row of the current excursion above the bar
    for i in range(warm, n):
        value = power[i]
        if ceiling > 0 and value > factor * ceiling:
            if began < 0:
                began = i
            if ts[i] - ts[began] < hold_s:
                score[i] = value / (factor * ceiling)
                continue
        else:
            began = -1
        if value > ceiling:
            ceiling = value
    return score

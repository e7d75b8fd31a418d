"""Seasonal and baseload detectors on completed hours (back-end tier, batch path).

Rows are aggregated into UTC hours; the detectors compare each completed hour
with the same hour-of-week in past weeks, so a row is judged with hours that
ended before its own hour began: strictly causal, at most one hour late.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from vatio.detect.base import DeviceSeries, FloatArray, IntArray

HOUR = 3600
WEEK_H = 168
MAD_SCALE = 1.4826


@dataclass(frozen=True, slots=True)
class HourlyView:
    """The series as hourly means; ``row_hour`` maps each row to its hour index."""

    first_hour: int
    mean_w: FloatArray
    row_hour: IntArray


def hourly(series: DeviceSeries) -> HourlyView:
    hour = series.ts // HOUR
    first = int(hour[0]) if len(hour) else 0
    idx = (hour - first).astype(np.int64)
    n = int(idx[-1]) + 1 if len(idx) else 0
    ok = ~np.isnan(series.power_w)
    sums = np.bincount(idx[ok], weights=series.power_w[ok], minlength=n)
    counts = np.bincount(idx[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return HourlyView(first_hour=first, mean_w=mean, row_hour=idx)


def rolling_mean(values: FloatArray, window: int, min_count: int) -> FloatArray:
    """Causal mean of the last ``window`` values (inclusive), NaN-aware."""
    ok = ~np.isnan(values)
    csum = np.concatenate(([0.0], np.cumsum(np.where(ok, values, 0.0))))
    ccount = np.concatenate(([0], np.cumsum(ok)))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    count = ccount[idx] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_count, (csum[idx] - csum[lo]) / np.maximum(count, 1), np.nan)


def rolling_low(values: FloatArray, window: int, q: float) -> FloatArray:
    """Causal ``q``-quantile of the last ``window`` values, NaN-aware."""
    n = len(values)
    if n == 0:
        return values.copy()
    padded = np.concatenate((np.full(window - 1, np.nan), values))
    view = np.lib.stride_tricks.sliding_window_view(padded, window)
    # np.nanquantile works row by row; sorting (NaN last) and interpolating between
    # the order statistics of each row's valid values is the same number, vectorised.
    ordered = np.sort(view, axis=1)
    valid = np.sum(~np.isnan(view), axis=1)
    enough = valid >= window // 2
    position = q * np.maximum(valid - 1, 0)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(valid - 1, 0))
    rows = np.arange(n)
    low, high = ordered[rows, below], ordered[rows, above]
    with np.errstate(invalid="ignore"):
        value = low + (position - below) * (high - low)
    return np.where(enough & (valid > 0), value, np.nan)


def past_weeks(values: FloatArray, weeks: int, period: int = WEEK_H) -> FloatArray:
    """Matrix of the same slot in each of the past ``weeks`` periods (NaN before the start)."""
    n = len(values)
    out = np.full((n, weeks), np.nan)
    for k in range(1, weeks + 1):
        lag = k * period
        if lag < n:
            out[lag:, k - 1] = values[: n - lag]
    return out


@dataclass(frozen=True, slots=True)
class Deviation:
    """A per-hour robust z-score with the numbers behind it."""

    z: FloatArray
    observed: FloatArray
    expected: FloatArray
    spread: FloatArray


def seasonal_deviation(
    level: FloatArray, *, weeks: int, min_weeks: int, floor_w: float, floor_frac: float, period: int
) -> Deviation:
    """Robust z of ``level`` against the same slot of past periods (median ± MAD).

    The median of several past weeks is what keeps an anomaly out of the
    baseline: one anomalous week moves a median of six very little.
    """
    history = past_weeks(level, weeks, period)
    valid = np.sum(~np.isnan(history), axis=1)
    # All-NaN rows (the first weeks) are expected: their result is NaN, silently.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(history, axis=1)
        mad = np.nanmedian(np.abs(history - expected[:, None]), axis=1) * MAD_SCALE
    spread = np.maximum(np.nan_to_num(mad, nan=0.0), np.maximum(floor_w, floor_frac * np.abs(expected)))
    z = (level - expected) / spread
    z = np.where((valid >= min_weeks) & ~np.isnan(z), z, 0.0)
    return Deviation(z=z, observed=level, expected=expected, spread=spread)


def causal_scale(score: FloatArray, *, window: int, q: float, every: int = 24, min_history: int = 168) -> FloatArray:
    """This home's own usual high score: the ``q``-quantile of the past ``window`` values.

    Recomputed every ``every`` values from values strictly before, forward
    filled; 1.0 until ``min_history`` values exist. Dividing by it (never by
    less than 1) makes a component's score mean "unusual for this home".
    """
    n = len(score)
    scale = np.ones(n)
    for start in range(min_history, n, every):
        past = score[max(0, start - window) : start]
        past = past[~np.isnan(past)]
        if len(past) >= min_history // 2:
            scale[start : start + every] = max(float(np.quantile(past, q)), 1.0)
    return scale


def tail_rarity(
    score: FloatArray,
    *,
    window: int,
    every: int,
    min_history: int,
    q_lo: float = 0.9,
    q_hi: float = 0.99,
    min_width: float = 0.25,
) -> FloatArray:
    """A non-negative score as decades of rarity against this home's own past tail.

    On ``log1p(score)`` the past ``window`` values (recomputed every ``every``
    values, strictly before; nothing until ``min_history`` values exist) give
    the ``q_lo`` and ``q_hi`` quantiles, mapped to ``-log10(1 - q)`` (1 and 2
    decades for 0.9 and 0.99); beyond them the tail is taken as exponential,
    so the mapping goes on linearly, never steeper than puts the past maximum
    of N values at ``log10(N)`` decades (nor than ``min_width`` log units per
    decade), so a heavy or mostly-zero tail is not extrapolated into alarms. A value of 3 then means
    "about one in a thousand for this home", whatever the component's scale,
    so one threshold means one false-alarm rate across components and homes.

    >>> rng = np.random.default_rng(0)
    >>> r = tail_rarity(rng.exponential(1.0, 5000), window=2000, every=100, min_history=500)
    >>> bool(abs(np.mean(r[1000:] >= 2.0) - 0.01) < 0.005)
    True
    """
    n = len(score)
    logged = np.log1p(np.maximum(np.nan_to_num(score, nan=0.0), 0.0))
    starts = np.arange(min_history, n, every)
    levels = [q_lo, q_hi, 1.0]
    stats = np.empty((len(starts), 3))
    full = starts >= window
    if full.any():
        # One quantile call over every full-window block at once.
        windows = np.lib.stride_tricks.sliding_window_view(logged, window)[starts[full] - window]
        stats[full] = np.quantile(windows, levels, axis=1).T
    for i in np.flatnonzero(~full):
        stats[i] = np.quantile(logged[: starts[i]], levels)
    d_lo, d_hi = -np.log10(1 - q_lo), -np.log10(1 - q_hi)
    sizes = np.minimum(starts, window)
    # The largest of N past values is about a 1-in-N event: never rarer.
    d_top = np.maximum(np.log10(np.maximum(sizes, 1)), d_hi + 0.5)
    a, b, top = stats[:, 0], stats[:, 1], stats[:, 2]
    per_decade = np.maximum.reduce([(b - a) / (d_hi - d_lo), (top - b) / (d_top - d_hi), np.full(len(a), min_width)])
    block = np.searchsorted(starts, np.arange(n), side="right") - 1
    known = block >= 0
    at = np.maximum(block, 0)
    rarity = d_lo + (logged - a[at]) / per_decade[at] if len(starts) else np.zeros(n)
    # A component at zero says "nothing seen", not "as rare as the home's 90th percentile".
    return np.where(known & (logged > 0), np.maximum(rarity, 0.0), 0.0)

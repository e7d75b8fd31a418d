"""Vatio's detector suite: seasonal, baseload and data-quality detectors fused.

Statistical components score in units of four robust standard deviations;
rule-based data-quality faults (gaps, clock faults, counter resets, stuck
meters) score ``CERTAIN`` and more once their rule holds. A single
:class:`~vatio.detect.base.Threshold` decides for the fused score, and the
component with the highest score names the ``kind``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vatio.detect import quality
from vatio.detect.base import DeviceSeries, FloatArray, SeriesScores
from vatio.detect.hourly import (
    HOUR,
    WEEK_H,
    Deviation,
    causal_scale,
    hourly,
    rolling_low,
    rolling_mean,
    seasonal_deviation,
)

Z_UNIT = 4.0
#: Score of a rule-based fault whose rule holds (a statistical score rarely gets near).
CERTAIN = 100.0


@dataclass(slots=True, kw_only=True)
class VatioDetector:
    """The default suite (causal; higher score = more anomalous).

    >>> import numpy as np
    >>> ts = np.arange(0, 5 * 7 * 86400, 1800, dtype=np.int64)
    >>> power = 300 + 200 * np.sin(2 * np.pi * ts / 86400)
    >>> power[-48:] += 800                       # an appliance left on for a day
    >>> series = DeviceSeries("d", ts, power.astype(float), 1800)
    >>> scores = VatioDetector().score_series(series)
    >>> bool(scores.score[-44] > 1.0), str(scores.kind[-44])   # three hours in
    (True, 'level_high')
    >>> str(scores.kind[-1])                                   # a day later, always on
    'baseload_increase'
    """

    name: str = "vatio"
    weeks: int = 6
    min_weeks: int = 2
    days: int = 14
    min_days: int = 5
    short_hours: int = 3
    floor_w: float = 40.0
    floor_frac: float = 0.2
    baseload_floor_w: float = 15.0
    calibrate_q: float | None = 0.99
    calibrate_hours: int = 28 * 24

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        n = len(series)
        out = SeriesScores.empty(n, "none")
        out.observed_w = series.power_w.copy()
        if n == 0:
            return out
        view = hourly(series)
        components = self._hourly_components(view.mean_w)
        # A row is judged with the hours completed before its own hour began.
        row_prev_hour = view.row_hour - 1
        usable = row_prev_hour >= 0
        prev = np.where(usable, row_prev_hour, 0)
        for kind, (score, dev) in components.items():
            row_score = np.where(usable, score[prev], 0.0)
            better = row_score > out.score
            out.score = np.where(better, row_score, out.score)
            out.kind = np.where(better, kind, out.kind)
            out.expected_w = np.where(better, dev.expected[prev], out.expected_w)
            out.low_w = np.where(better, dev.expected[prev] - Z_UNIT * dev.spread[prev], out.low_w)
            out.high_w = np.where(better, dev.expected[prev] + Z_UNIT * dev.spread[prev], out.high_w)
            out.observed_w = np.where(better, dev.observed[prev], out.observed_w)
        for kind, score in self._row_components(series).items():
            better = score > out.score
            out.score = np.where(better, score, out.score)
            out.kind = np.where(better, kind, out.kind)
            for band in (out.expected_w, out.low_w, out.high_w):
                band[better] = np.nan
            out.observed_w = np.where(better, series.power_w, out.observed_w)
        out.since = _since(series.ts, out.score)
        return out

    def _hourly_components(self, mean_w: FloatArray) -> dict[str, tuple[FloatArray, Deviation]]:
        short = seasonal_deviation(
            rolling_mean(mean_w, self.short_hours, 2),
            weeks=self.weeks,
            min_weeks=self.min_weeks,
            floor_w=self.floor_w,
            floor_frac=self.floor_frac,
            period=WEEK_H,
        )
        day = seasonal_deviation(
            rolling_mean(mean_w, 24, 12),
            weeks=self.days,
            min_weeks=self.min_days,
            floor_w=self.floor_w / 2,
            floor_frac=self.floor_frac / 2,
            period=24,
        )
        base = seasonal_deviation(
            rolling_low(mean_w, 24, 0.05),
            weeks=self.days,
            min_weeks=self.min_days,
            floor_w=self.baseload_floor_w,
            floor_frac=0.1,
            period=24,
        )
        raw = {
            "level_high": (np.maximum(short.z, 0.0) / Z_UNIT, short),
            "sustained_high": (np.maximum(day.z, 0.0) / Z_UNIT, day),
            "level_low": (np.maximum(-day.z, 0.0) / Z_UNIT, day),
            "baseload_increase": (np.maximum(base.z, 0.0) / Z_UNIT, base),
        }
        if not self.calibrate_q:
            return raw
        # A home whose evenings always look like "4 sigma" has a heavy tail of its
        # own: measure each component against that tail, not an absolute scale.
        return {
            kind: (score / causal_scale(score, window=self.calibrate_hours, q=self.calibrate_q), dev)
            for kind, (score, dev) in raw.items()
        }

    @staticmethod
    def _row_components(series: DeviceSeries) -> dict[str, FloatArray]:
        # Rule-based faults are near-certain once their rule holds, so they
        # rank above any statistical deviation; below their rule they stay 0.
        def certain(score: FloatArray) -> FloatArray:
            return np.where(score >= 1.0, CERTAIN * score, 0.0)

        return {
            "gap": certain(quality.gaps(series)),
            "clock_skew": certain(quality.clock_faults(series)),
            "counter_reset": certain(quality.counter_faults(series)),
            "stuck_meter": certain(quality.stuck(series)),
            "spike": 10.0 * quality.spikes(series),
        }


def _since(ts: np.ndarray, score: FloatArray, elevated: float = 0.5) -> np.ndarray:
    """Epoch second when the current run of elevated scores began (0 when not elevated)."""
    up = score >= elevated
    idx = np.arange(len(score))
    start = np.maximum.accumulate(np.where(up & ~np.concatenate(([False], up[:-1])), idx, 0))
    return np.where(up, ts[start], 0).astype(np.int64)


__all__ = ["HOUR", "VatioDetector"]

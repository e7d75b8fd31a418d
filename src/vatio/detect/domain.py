"""Energy-domain detectors on a slot-of-day grid (back-end tier, batch path).

The series is averaged into slots (half-hours, or the meter's own interval
when coarser) and each detector compares a window statistic of the latest
*completed* slot with the same slot of the day over the home's past days
(median ± MAD, the median keeping a few anomalous days out of the baseline):

========================  ====================================  =============================
kind                      statistic                             fires when
========================  ====================================  =============================
``left_on``               minimum over the last 2 h             something stayed on: it rose
``baseload_drift``        minimum over the last 6 h             the always-on floor rose
``night_use``             minimum over the last hour, in the    use in hours that are usually
                          home's quiet hours only               near the floor
``vacancy``               maximum over the last 12 h            it fell to ``occupied_ratio``
                                                                x the home's empty level
``tamper``                minimum over the last 24 h            it fell below ``floor_ratio``
                                                                x the empty level: a meter
                                                                under-reading scales it down
``peak_demand``           the row's power                       above a configured limit
========================  ====================================  =============================

The first three compare with the same slot of the day over the past
``days`` (median ± MAD); the empty level of the last two is the 5th
percentile of the home's slots over the past ``days`` (causal, per day).

A row is judged with the slots that ended at or before its own end: causal,
and at half-hourly data a row is its own slot, so nothing waits for an hour
to close. Scores are robust z-scores in units of :data:`Z_UNIT` (suite.py
calibrates them per home); the :class:`~vatio.detect.hourly.Deviation` of each
carries expected value, spread and observed value in watts for the explanation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vatio.detect.base import DeviceSeries, FloatArray, IntArray
from vatio.detect.hourly import Deviation, past_weeks, seasonal_deviation

Z_UNIT = 4.0
DAY_S = 86_400
#: Slot lengths that tile a day; the slot is the first at least as long as the meter's interval.
SLOT_CHOICES = (1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400)
#: Watts added before taking logs, so a home at 0 W is not infinitely far from one at 5 W.
LOG_OFFSET_W = 20.0
#: The same for ratios to the home's empty level, smaller: those levels are small.
RATIO_OFFSET_W = 5.0


@dataclass(frozen=True, slots=True)
class SlotView:
    """The series as slot means; ``row_slot`` the last slot complete at each row (-1: none yet)."""

    slot_s: int
    per_day: int
    mean_w: FloatArray
    row_slot: IntArray

    def slots(self, hours: float) -> int:
        """A duration in whole slots, at least one."""
        return max(1, round(hours * 3600 / self.slot_s))


def slotted(series: DeviceSeries, min_slot_s: int = 1800) -> SlotView:
    """Average rows into day-aligned slots of at least ``min_slot_s`` and the series' step.

    >>> ts = np.arange(0, 4 * 1800, 900, dtype=np.int64)
    >>> view = slotted(DeviceSeries("d", ts, np.arange(8.0), 900))
    >>> view.mean_w.tolist(), view.row_slot.tolist()
    ([0.5, 2.5, 4.5, 6.5], [-1, 0, 0, 1, 1, 2, 2, 3])
    """
    slot_s = next((s for s in SLOT_CHOICES if s >= max(series.step_s, min_slot_s)), DAY_S)
    first = int(series.ts[0] // slot_s) if len(series) else 0
    idx = (series.ts // slot_s - first).astype(np.int64)
    n = int(idx[-1]) + 1 if len(idx) else 0
    ok = ~np.isnan(series.power_w)
    sums = np.bincount(idx[ok], weights=series.power_w[ok], minlength=n)
    counts = np.bincount(idx[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    # The last slot that ended at or before the end of the row's own interval.
    done = ((series.ts + series.step_s) // slot_s - first - 1).astype(np.int64)
    return SlotView(slot_s=slot_s, per_day=DAY_S // slot_s, mean_w=mean, row_slot=done)


def rolling_extreme(values: FloatArray, window: int, reduce: Callable[..., FloatArray]) -> FloatArray:
    """Causal ``reduce`` (``np.nanmin``/``np.nanmax``) of the last ``window`` values; NaN under half full."""
    n = len(values)
    if n == 0 or window <= 1:
        return values.copy()
    padded = np.concatenate((np.full(window - 1, np.nan), values))
    view = np.lib.stride_tricks.sliding_window_view(padded, window)
    enough = np.sum(~np.isnan(view), axis=1) >= max(1, window // 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = reduce(view, axis=1)
    return np.where(enough, out, np.nan)


def causal_quantile(values: FloatArray, *, q: float, window: int, every: int) -> FloatArray:
    """The ``q``-quantile of the ``window`` values before each block of ``every`` (NaN with under a day's worth)."""
    n = len(values)
    out = np.full(n, np.nan)
    for start in range(every, n, every):
        past = values[max(0, start - window) : start]
        past = past[~np.isnan(past)]
        if len(past) >= every // 2:
            out[start : start + every] = np.quantile(past, q)
    return out


@dataclass(slots=True, kw_only=True)
class DomainDetectors:
    """The energy-domain components over one series; ``components`` gives each kind's z/Z_UNIT per slot.

    >>> ts = np.arange(0, 21 * 86400, 1800, dtype=np.int64)
    >>> power = 150 + 400 * (((ts % 86400) // 3600) % 24 >= 17)      # evenings busy
    >>> power = power + np.random.default_rng(0).normal(0, 10, len(ts))
    >>> power[-8:] += 900                                            # left on 4 h ago
    >>> series = DeviceSeries("d", ts, power.astype(float), 1800)
    >>> view, parts = DomainDetectors().components(series)
    >>> score, deviation = parts["left_on"]
    >>> bool(score[-1] > 3), round(float(deviation.observed[-1] - deviation.expected[-1]), -2)
    (True, 900.0)
    """

    days: int = 28
    min_days: int = 7
    step_hours: float = 2.0
    floor_hours: float = 6.0
    activity_hours: float = 12.0
    floor_w: float = 15.0
    floor_frac: float = 0.05
    log_floor: float = 0.08
    quiet_factor: float = 1.5
    night_hours: float = 1.0
    occupied_ratio: float = 1.4
    floor_ratio: float = 0.85
    peak_limit_w: float | None = None

    def components(self, series: DeviceSeries) -> tuple[SlotView, dict[str, tuple[FloatArray, Deviation]]]:
        view = slotted(series)
        mean = view.mean_w
        step_min = rolling_extreme(mean, view.slots(self.step_hours), np.nanmin)
        floor_min = rolling_extreme(mean, view.slots(self.floor_hours), np.nanmin)
        activity = rolling_extreme(mean, view.slots(self.activity_hours), np.nanmax)
        day_min = rolling_extreme(mean, view.slots(24.0), np.nanmin)
        # What this home draws with nobody in: its low percentile over the past weeks.
        empty_w = causal_quantile(mean, q=0.05, window=self.days * view.per_day, every=view.per_day)
        left_on = self._linear(step_min, view.per_day)
        floor = self._linear(floor_min, view.per_day)
        # Night use lasts an hour or more: its minimum over the hour rises, a kettle's does not.
        level = self._linear(rolling_extreme(mean, view.slots(self.night_hours), np.nanmin), view.per_day)
        return view, {
            "left_on": (np.maximum(left_on.z, 0.0) / Z_UNIT, left_on),
            "baseload_drift": (np.maximum(floor.z, 0.0) / Z_UNIT, floor),
            "night_use": (self._quiet(level, mean, view.per_day), level),
            "vacancy": self._relative(activity, empty_w, self.occupied_ratio, view.per_day),
            "tamper": self._relative(day_min, empty_w, self.floor_ratio, view.per_day),
        }

    def peak(self, series: DeviceSeries) -> FloatArray:
        """Rows above the configured demand limit, as a multiple of it (0 when no limit is set)."""
        if self.peak_limit_w is None:
            return np.zeros(len(series))
        excess = np.nan_to_num(series.power_w, nan=0.0) / self.peak_limit_w
        return np.where(excess > 1.0, excess, 0.0)

    def _linear(self, level: FloatArray, per_day: int) -> Deviation:
        return seasonal_deviation(
            level,
            weeks=self.days,
            min_weeks=self.min_days,
            floor_w=self.floor_w,
            floor_frac=self.floor_frac,
            period=per_day,
        )

    def _quiet(self, level: Deviation, mean: FloatArray, per_day: int) -> FloatArray:
        # Night use matters where the home is usually near its floor; in its busy
        # hours the same watts are ordinary life and belong to other components.
        daily_min = rolling_extreme(mean, per_day, np.nanmin)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            home_floor = np.nanmedian(past_weeks(daily_min, 7, per_day), axis=1)
        quiet = level.expected <= self.quiet_factor * home_floor + 2 * self.floor_w
        return np.where(quiet, np.maximum(level.z, 0.0) / Z_UNIT, 0.0)

    def _relative(
        self, level_w: FloatArray, empty_w: FloatArray, ratio: float, per_day: int
    ) -> tuple[FloatArray, Deviation]:
        """How far ``level_w`` fell below ``ratio`` x the home's empty level, in tenths of a log unit.

        The explanation's band is the level's own usual range at this time of day.
        """
        logged = np.log(np.maximum(level_w, 0.0) + RATIO_OFFSET_W)
        below = np.log(ratio * np.maximum(empty_w, 0.0) + RATIO_OFFSET_W) - logged
        _, in_watts = self._log_low(level_w, per_day)
        return np.where(np.isnan(below), 0.0, np.maximum(below, 0.0) / self.log_floor / 2), in_watts

    def _log_low(self, level_w: FloatArray, per_day: int) -> tuple[FloatArray, Deviation]:
        """Low-side deviation of ``log(level + offset)``: a fall by a factor, whatever the home's size."""
        logged = np.log(np.maximum(level_w, 0.0) + LOG_OFFSET_W)
        dev = seasonal_deviation(
            logged, weeks=self.days, min_weeks=self.min_days, floor_w=self.log_floor, floor_frac=0.0, period=per_day
        )
        in_watts = Deviation(
            z=dev.z,
            observed=level_w,
            expected=np.exp(dev.expected) - LOG_OFFSET_W,
            spread=(np.exp(dev.expected + dev.spread) - np.exp(dev.expected - dev.spread)) / 2,
        )
        return np.maximum(-dev.z, 0.0) / Z_UNIT, in_watts


__all__ = ["DomainDetectors", "SlotView", "causal_quantile", "rolling_extreme", "slotted"]

"""Record components: the home's low level stayed above anything it drew at this time of day.

An appliance left on, use in the night, or an always-on load added to a
home that has little on at that hour lifts the *low* level of the slot
(the minimum of the last ``window_hours`` of slot means) above its
**record**: the highest that level has been at the same slot of the day
over the past ``days``. One slot above the record happens now and then (a
late night, a cold evening); a level above it for ``persist_hours`` is rare.
The score is the smallest excess over the record within that time, in units
of ``unit_w + unit_frac x record``. A record is the home's own extreme, so
the score means the same in a small and a large home without a history of
its own tail, and it can fire within two hours, where daily statistics need
a day. The suite runs three: ``above_record`` (the slot mean held for 2 h),
``step_record`` (the 2 h minimum held for 1 h) and ``floor_record`` (the
minimum of the last 24 h).

On the evaluation's selection split (docs/detection.md) this beat a
one-sided CUSUM of residuals standardised by the slot's median and MAD: the
simulated homes' own sustained runs (heating in a cold snap, long cooking)
make such residuals far too heavy-tailed, while "above the 28-day record
by a few hundred watts for two hours" stays rare.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from vatio.detect.base import FloatArray
from vatio.detect.domain import SlotView, rolling_extreme
from vatio.detect.hourly import Deviation, past_weeks

#: The explanation band is ``expected ± BAND_UNIT x spread``; the suite draws bands that way.
BAND_UNIT = 4.0


def slot_range(
    level: FloatArray, *, days: int, min_days: int, per_day: int, around: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Lowest and highest ``level`` at the same slot (± ``around`` slots) over the past ``days``.

    NaN where fewer than ``min_days`` past values of the slot itself are known.

    >>> low, high = slot_range(np.array([1.0, 5.0, 2.0, 4.0, 3.0, 9.0]), days=2, min_days=1, per_day=2)
    >>> low.tolist()[2:], high.tolist()[2:]
    ([1.0, 5.0, 1.0, 4.0], [1.0, 5.0, 2.0, 5.0])
    """
    n = len(level)
    history = past_weeks(level, days, per_day)
    enough = np.sum(~np.isnan(history), axis=1) >= min_days
    # Neighbouring slots of past days are past values too (lag > 0 while around < per_day).
    for offset in [o for o in range(-around, around + 1) if o]:
        shifted = np.full((n, days), np.nan)
        for k in range(1, days + 1):
            lag = k * per_day - offset
            if 0 < lag < n:
                shifted[lag:, k - 1] = level[: n - lag]
        history = np.concatenate((history, shifted), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanmin(history, axis=1), np.nanmax(history, axis=1)
    return np.where(enough, low, np.nan), np.where(enough, high, np.nan)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDetector:
    """Scores per slot how far the low level stayed above its record for this time of day.

    >>> from vatio.detect.base import DeviceSeries
    >>> from vatio.detect.domain import slotted
    >>> ts = np.arange(0, 35 * 86400, 1800, dtype=np.int64)
    >>> rng = np.random.default_rng(0)
    >>> power = 150 + 400 * (((ts % 86400) // 3600) >= 17) + rng.normal(0, 10, len(ts))
    >>> power[-5:] += 600                                    # something on, 2.5 h ago
    >>> score, deviation = RecordDetector().component(slotted(DeviceSeries("d", ts, power, 1800)))
    >>> bool(score[-6] == 0), bool(score[-1] > 3), bool(deviation.observed[-1] > deviation.expected[-1])
    (True, True, True)
    """

    days: int = 28
    min_days: int = 7
    window_hours: float = 1.0
    persist_hours: float = 2.0
    around: int = 0
    unit_w: float = 80.0
    unit_frac: float = 0.0
    #: No score where the record is below this: the level it measures is hidden there.
    min_record_w: float = -np.inf

    def component(self, view: SlotView) -> tuple[FloatArray, Deviation]:
        """Score per slot (``>= 0``) and the deviation: observed low level, band = the past range."""
        level = rolling_extreme(view.mean_w, view.slots(self.window_hours), np.nanmin)
        low, high = slot_range(level, days=self.days, min_days=self.min_days, per_day=view.per_day, around=self.around)
        excess = np.nan_to_num(np.where(high >= self.min_record_w, level - high, np.nan), nan=-np.inf)
        persistent = rolling_extreme(excess, view.slots(self.persist_hours), np.min)
        score = np.nan_to_num(np.maximum(persistent, 0.0), nan=0.0) / (
            self.unit_w + self.unit_frac * np.nan_to_num(np.maximum(high, 0.0))
        )
        deviation = Deviation(z=score, observed=level, expected=(low + high) / 2, spread=(high - low) / (2 * BAND_UNIT))
        return score, deviation


__all__ = ["RecordDetector", "slot_range"]

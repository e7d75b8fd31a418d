"""Vatio's detector suite: record, seasonal, energy-domain and data-quality detectors fused.

Record components (:mod:`vatio.detect.record`) score how far the home's low
level stayed above anything it drew at that time of day in 28 days, in
watts over the home's own extreme. Statistical components (the
hour-of-week and daily deviations here, the energy-domain ones of
:mod:`vatio.detect.domain`) each produce a robust z-score that
:func:`~vatio.detect.hourly.tail_rarity` turns into *decades of rarity
against the home's own past tail* (3 = about one in a thousand for this
home). Rule-based data-quality faults (gaps, clock faults, counter resets,
stuck meters, a demand limit) score ``CERTAIN`` and more once their rule
holds. A single :class:`~vatio.detect.base.Threshold` decides for the fused
score (the maximum), and the component with the highest score names the
``kind``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vatio.detect import quality
from vatio.detect.base import DeviceSeries, FloatArray, IntArray, SeriesScores
from vatio.detect.domain import DomainDetectors
from vatio.detect.hourly import (
    HOUR,
    WEEK_H,
    Deviation,
    hourly,
    rolling_low,
    rolling_mean,
    seasonal_deviation,
    tail_rarity,
)
from vatio.detect.record import RecordDetector

Z_UNIT = 4.0
#: Score of a rule-based fault whose rule holds (a statistical score rarely gets near).
CERTAIN = 100.0
#: Statistical components on by default: the set with the best event F1 on the evaluation's
#: selection split, seeds 0-2 (docs/detection.md). The two record components found what the
#: hourly ``level_high``/``sustained_high``/``baseload_increase`` found, sooner and with fewer
#: false alarms, so those, ``left_on``, ``baseload_drift`` and ``night_use`` are available
#: (``kinds=None`` for all) but off.
DEFAULT_KINDS = ("level_low", "vacancy", "tamper", "above_record", "step_record", "floor_record")
#: The components on completed UTC hours; the rest work on the slot grid of :mod:`vatio.detect.domain`.
HOURLY_KINDS = ("level_high", "sustained_high", "level_low", "baseload_increase")

#: Something on for two hours above anything the home drew at that time of day in 28 days.
ABOVE_RECORD = RecordDetector(window_hours=0.5, persist_hours=2.0, unit_w=100.0, unit_frac=0.2)
#: The lowest power of the last 2 h above its 56-day record (± one slot) for an hour: a daytime
#: step that ``above_record`` misses because single slots of the day have been high before.
#: On the selection split (seeds 0-2) it cut the left-on median delay from 11.0/10.5/17.8 h to
#: 6.0/2.0/13.2 h for 0.008 of mean event F1 (docs/detection.md).
STEP_RECORD = RecordDetector(days=56, window_hours=2.0, persist_hours=1.0, around=1, unit_w=100.0, unit_frac=0.2)
#: The lowest power of the last 24 h above its 28-day record: the always-on floor rose. A record
#: under 20 W means the floor is hidden (rooftop solar covers it at noon, or the meter read
#: zero): a cloudy day lifts such a "floor" from 0 W to the home's real one, which is no fault.
FLOOR_RECORD = RecordDetector(window_hours=24.0, persist_hours=0.0, unit_w=10.0, unit_frac=0.1, min_record_w=20.0)


@dataclass(slots=True, kw_only=True)
class VatioDetector:
    """The default suite (causal; higher score = more anomalous).

    >>> import numpy as np
    >>> ts = np.arange(0, 5 * 7 * 86400, 1800, dtype=np.int64)
    >>> power = 300 + 200 * np.sin(2 * np.pi * ts / 86400)
    >>> power[-48:] += 800                       # an appliance left on for a day
    >>> series = DeviceSeries("d", ts, power.astype(float), 1800)
    >>> scores = VatioDetector().score_series(series)
    >>> bool(scores.score[-45] > 3.0), str(scores.kind[-45])   # an hour and a half in
    (True, 'above_record')
    >>> str(scores.kind[-1])                                   # a day later, the floor rose
    'floor_record'
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
    kinds: tuple[str, ...] | None = DEFAULT_KINDS
    domain: DomainDetectors = field(default_factory=DomainDetectors)
    record: RecordDetector = field(default_factory=lambda: ABOVE_RECORD)
    step_record: RecordDetector = field(default_factory=lambda: STEP_RECORD)
    floor_record: RecordDetector = field(default_factory=lambda: FLOOR_RECORD)

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        n = len(series)
        out = SeriesScores.empty(n, "none")
        out.observed_w = series.power_w.copy()
        if n == 0:
            return out
        view = hourly(series)
        # A row is judged with the hours completed before its own hour began.
        _merge(out, self._hourly_components(view.mean_w), view.row_hour - 1)
        slots, parts = self.domain.components(series)
        _merge(out, self._calibrated(parts, slots.per_day), slots.row_slot)
        # Excess over a record in watts needs no calibration against the home's tail:
        # a record is already the home's own extreme.
        records = {"above_record": self.record, "step_record": self.step_record, "floor_record": self.floor_record}
        _merge(
            out,
            {kind: rec.component(slots) for kind, rec in records.items() if self.kinds is None or kind in self.kinds},
            slots.row_slot,
        )
        rules = self._row_components(series)
        rules["peak_demand"] = CERTAIN * self.domain.peak(series)
        for kind, score in rules.items():
            better = score > out.score
            out.score = np.where(better, score, out.score)
            out.kind = np.where(better, kind, out.kind)
            for band in (out.expected_w, out.low_w, out.high_w):
                band[better] = np.nan
            out.observed_w = np.where(better, series.power_w, out.observed_w)
        out.since = _since(series.ts, out.score, out.kind)
        # A record component scores only once its low level (the minimum over its window)
        # held above the record for the whole persistence window: the anomaly began
        # that much earlier than the score rose.
        for kind, rec in (("above_record", self.record), ("step_record", self.step_record)):
            held = (out.kind == kind) & (out.since > 0)
            out.since[held] -= (slots.slots(rec.window_hours) + slots.slots(rec.persist_hours) - 2) * slots.slot_s
        return out

    def _calibrated(
        self, parts: dict[str, tuple[FloatArray, Deviation]], per_day: int
    ) -> dict[str, tuple[FloatArray, Deviation]]:
        wanted = {kind: part for kind, part in parts.items() if self.kinds is None or kind in self.kinds}
        if not self.calibrate_q:
            return wanted
        window, q_hi = self.calibrate_hours // 24 * per_day, self.calibrate_q
        return {
            kind: (tail_rarity(score, window=window, every=per_day, min_history=7 * per_day, q_hi=q_hi), dev)
            for kind, (score, dev) in wanted.items()
        }

    def _hourly_components(self, mean_w: FloatArray) -> dict[str, tuple[FloatArray, Deviation]]:
        wanted = [kind for kind in HOURLY_KINDS if self.kinds is None or kind in self.kinds]
        raw = {}
        if "level_high" in wanted:
            short = self._seasonal(rolling_mean(mean_w, self.short_hours, 2), WEEK_H, self.weeks, self.min_weeks, 1.0)
            raw["level_high"] = (np.maximum(short.z, 0.0) / Z_UNIT, short)
        if "sustained_high" in wanted or "level_low" in wanted:
            day = self._seasonal(rolling_mean(mean_w, 24, 12), 24, self.days, self.min_days, 0.5)
            raw["sustained_high"] = (np.maximum(day.z, 0.0) / Z_UNIT, day)
            raw["level_low"] = (np.maximum(-day.z, 0.0) / Z_UNIT, day)
        if "baseload_increase" in wanted:
            base = seasonal_deviation(
                rolling_low(mean_w, 24, 0.05),
                weeks=self.days,
                min_weeks=self.min_days,
                floor_w=self.baseload_floor_w,
                floor_frac=0.1,
                period=24,
            )
            raw["baseload_increase"] = (np.maximum(base.z, 0.0) / Z_UNIT, base)
        raw = {kind: part for kind, part in raw.items() if kind in wanted}
        if not self.calibrate_q:
            return raw
        # A home whose evenings always look like "4 sigma" has a heavy tail of its
        # own: measure each component against that tail, not an absolute scale.
        return self._calibrated(raw, 24)

    def _seasonal(self, level: FloatArray, period: int, weeks: int, min_weeks: int, floor_scale: float) -> Deviation:
        return seasonal_deviation(
            level,
            weeks=weeks,
            min_weeks=min_weeks,
            floor_w=self.floor_w * floor_scale,
            floor_frac=self.floor_frac * floor_scale,
            period=period,
        )

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


def _merge(out: SeriesScores, components: dict[str, tuple[FloatArray, Deviation]], index: IntArray) -> None:
    """Fold per-slot components into the rows: row ``i`` takes slot ``index[i]`` (none when < 0)."""
    usable = index >= 0
    at = np.where(usable, index, 0)
    for kind, (score, dev) in components.items():
        row_score = np.where(usable, score[at], 0.0)
        better = row_score > out.score
        out.score = np.where(better, row_score, out.score)
        out.kind = np.where(better, kind, out.kind)
        out.expected_w = np.where(better, dev.expected[at], out.expected_w)
        out.low_w = np.where(better, dev.expected[at] - Z_UNIT * dev.spread[at], out.low_w)
        out.high_w = np.where(better, dev.expected[at] + Z_UNIT * dev.spread[at], out.high_w)
        out.observed_w = np.where(better, dev.observed[at], out.observed_w)


def _since(ts: np.ndarray, score: FloatArray, kind: np.ndarray, elevated: float = 1.0) -> np.ndarray:
    """Epoch second when the current run of elevated scores *of the same kind* began (0 when not elevated).

    A run ends where the score drops below ``elevated`` or the leading
    component changes: on the calibrated scale ordinary rows often score a
    little, and runs chained through other components' noise used to date an
    episode weeks before it began.

    >>> ts = np.arange(6) * 1800
    >>> score = np.array([0.0, 1.5, 1.2, 6.0, 7.0, 0.2])
    >>> kind = np.array(["none", "level_low", "level_low", "above_record", "above_record", "none"])
    >>> (_since(ts, score, kind) // 1800).tolist()
    [0, 1, 1, 3, 3, 0]
    """
    if len(score) == 0:
        return np.zeros(0, dtype=np.int64)
    up = score >= elevated
    idx = np.arange(len(score))
    new_run = up & ~np.concatenate(([False], up[:-1]))
    new_run |= up & np.concatenate(([True], kind[1:] != kind[:-1]))
    start = np.maximum.accumulate(np.where(new_run, idx, 0))
    return np.where(up, ts[start], 0).astype(np.int64)


__all__ = ["HOUR", "VatioDetector"]

"""Heating or cooling runaway relative to outdoor temperature (back-end tier, batch path).

A home's daily consumption follows the weather through its heating and
cooling; the classic model is a *change-point regression* on degree-days
(ASHRAE Guideline 14's 5-parameter model, PRISM):

    mean power of a day = base + heat_w_per_k * HDD(t_heat) + cool_w_per_k * CDD(t_cool)

where ``HDD(t) = mean(max(t - T, 0))`` and ``CDD(t) = mean(max(T - t, 0))``
over the day's outdoor temperatures ``T``. The balance points ``t_heat``,
``t_cool`` are chosen from a grid (with "no heating" and "no cooling" among
the options) by least squares with non-negative slopes, refitted every day on
the completed days of the past ``history_days``; one robust pass drops days
more than ``outlier_z`` spreads off the first fit, so a past runaway does not
teach the model.

Each slot compares the mean power of the last 24 h with what the model
expects from the last 24 h of temperature; the excess in robust spreads
(``hvac_temperature``) is turned into decades of rarity against the home's
own past (:func:`~vatio.detect.hourly.tail_rarity`). A cold snap that the
heating answers is *explained*, and stays quiet; a heater stuck on during a
mild spell is not. Without a temperature feed every score is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vatio.detect.base import DeviceSeries, FloatArray, IntArray, SeriesScores
from vatio.detect.domain import slotted
from vatio.detect.hourly import rolling_mean, tail_rarity
from vatio.detect.suite import _since

MAD_TO_SIGMA = 1.4826
#: Candidate balance points (°C); NaN means "no heating" / "no cooling" term.
HEAT_POINTS = (np.nan, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0)
COOL_POINTS = (np.nan, 18.0, 20.0, 22.0, 24.0, 26.0, 28.0)


@dataclass(frozen=True, slots=True)
class DegreeDayFit:
    """Per-slot expected 24 h mean power and its robust spread (NaN before the first fit)."""

    expected: FloatArray
    sigma: FloatArray


def _slot_temperature(series: DeviceSeries, slot_s: int) -> FloatArray:
    assert series.temperature_c is not None
    first = int(series.ts[0] // slot_s)
    idx = (series.ts // slot_s - first).astype(np.int64)
    ok = ~np.isnan(series.temperature_c)
    n = int(idx[-1]) + 1
    sums = np.bincount(idx[ok], weights=series.temperature_c[ok], minlength=n)
    counts = np.bincount(idx[ok], minlength=n)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _fit(design: FloatArray, target: FloatArray) -> tuple[int, FloatArray]:
    """Best candidate (least squares, non-negative slopes) of ``design`` (candidates, days, 3)."""
    gram = np.einsum("cdi,cdj->cij", design, design) + 1e-6 * len(target) * np.eye(3)
    coef = np.linalg.solve(gram, np.einsum("cdi,d->ci", design, target)[..., None])[..., 0]
    sse = np.sum((target[None, :] - np.einsum("cdi,ci->cd", design, coef)) ** 2, axis=1)
    sse = np.where((coef[:, 1] >= 0) & (coef[:, 2] >= 0), sse, np.inf)
    best = int(np.argmin(sse))
    return best, coef[best]


@dataclass(slots=True, kw_only=True)
class TemperatureDetector:
    """Flags consumption far above what the outdoor temperature explains (degree-day regression).

    >>> day = 86400
    >>> ts = np.arange(0, 60 * day, 1800, dtype=np.int64)
    >>> temp = 8 + 6 * np.sin(2 * np.pi * ts / (9 * day)) + 3 * np.sin(2 * np.pi * ts / day)
    >>> noise = np.random.default_rng(0).normal(0, 40, len(ts))
    >>> power = 250 + 90 * np.maximum(16 - temp, 0) + noise    # heating below 16 °C
    >>> power[-48:] += 1500.0                                   # the heat pump stuck on: a day
    >>> s = TemperatureDetector().score_series(DeviceSeries("h", ts, power, 1800, temperature_c=temp))
    >>> bool(s.score[-1] > 3), str(s.kind[-1]), bool(s.score[-60:-48].max() < 2)
    (True, 'hvac_temperature', True)
    """

    name: str = "hvac_temperature"
    history_days: int = 56
    min_days: int = 14
    outlier_z: float = 3.5
    band_z: float = 3.0
    floor_w: float = 20.0
    floor_frac: float = 0.05
    calibrate_days: int = 28

    def fit(self, power: FloatArray, hdd: FloatArray, cdd: FloatArray, first_slot: int, per_day: int) -> DegreeDayFit:
        """Refit at each UTC day start on the completed days before it; the model serves that day's slots.

        ``power`` is the 24 h mean power per slot, ``hdd``/``cdd`` (candidates, slots) the 24 h mean
        degree-days for each candidate balance point.
        """
        n = len(power)
        expected, sigma = np.full(n, np.nan), np.full(n, np.nan)
        slot = first_slot + np.arange(n)
        day_end = np.flatnonzero((slot + 1) % per_day == 0)
        day_end = day_end[~np.isnan(power[day_end])]
        pairs = [(h, c) for h in range(len(HEAT_POINTS)) for c in range(len(COOL_POINTS))]
        heat_of, cool_of = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        for start in np.flatnonzero(slot % per_day == 0):
            days = day_end[(day_end < start) & (day_end >= start - self.history_days * per_day)]
            if len(days) < self.min_days:
                continue
            design = np.stack([np.ones((len(pairs), len(days))), hdd[heat_of][:, days], cdd[cool_of][:, days]], -1)
            target = power[days]
            best, coef = _fit(design, target)
            residual = target - design[best] @ coef
            spread = MAD_TO_SIGMA * float(np.median(np.abs(residual - np.median(residual))))
            keep = np.abs(residual) <= self.outlier_z * max(spread, self.floor_w)
            if keep.sum() >= self.min_days and not keep.all():
                best, coef = _fit(design[:, keep], target[keep])
                residual = target[keep] - design[best][keep] @ coef
                spread = MAD_TO_SIGMA * float(np.median(np.abs(residual - np.median(residual))))
            span = slice(start, start + per_day)
            expected[span] = coef[0] + coef[1] * hdd[heat_of[best], span] + coef[2] * cdd[cool_of[best], span]
            sigma[span] = np.maximum(spread, np.maximum(self.floor_w, self.floor_frac * np.abs(coef[0])))
        return DegreeDayFit(expected, sigma)

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        n = len(series)
        out = SeriesScores.empty(n, "none")
        out.observed_w = series.power_w.copy()
        temp = series.temperature_c
        if n == 0 or temp is None or np.isnan(temp).all():
            return out
        view = slotted(series)
        per_day, first_slot = view.per_day, int(series.ts[0] // view.slot_s)
        slot_temp = _slot_temperature(series, view.slot_s)
        half = max(1, per_day // 2)

        def daily(values: FloatArray) -> FloatArray:
            return rolling_mean(values, per_day, half)

        with np.errstate(invalid="ignore"):
            hdd = np.array([daily(np.maximum(p - slot_temp, 0.0)) for p in HEAT_POINTS])
            cdd = np.array([daily(np.maximum(slot_temp - p, 0.0)) for p in COOL_POINTS])
        # "No heating"/"no cooling": a zero column (the ridge in _fit keeps it solvable).
        hdd[np.isnan(HEAT_POINTS)], cdd[np.isnan(COOL_POINTS)] = 0.0, 0.0
        power = daily(view.mean_w)
        model = self.fit(power, np.nan_to_num(hdd), np.nan_to_num(cdd), first_slot, per_day)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.nan_to_num((power - model.expected) / model.sigma, nan=0.0)
        rarity = tail_rarity(
            np.maximum(z, 0.0), window=self.calibrate_days * per_day, every=per_day, min_history=7 * per_day
        )
        rarity = np.where(np.isnan(model.expected), 0.0, rarity)
        self._into(out, series, view.row_slot, rarity, power, model)
        return out

    def _into(
        self,
        out: SeriesScores,
        series: DeviceSeries,
        at: IntArray,
        rarity: FloatArray,
        power: FloatArray,
        model: DegreeDayFit,
    ) -> None:
        usable = at >= 0
        i = np.where(usable, at, 0)
        out.score = np.where(usable, rarity[i], 0.0)
        out.kind = np.where(out.score > 0, self.name, "none").astype(object)
        out.expected_w = np.where(usable, model.expected[i], np.nan)
        out.low_w = out.expected_w - self.band_z * np.where(usable, model.sigma[i], np.nan)
        out.high_w = out.expected_w + self.band_z * np.where(usable, model.sigma[i], np.nan)
        out.observed_w = np.where(usable, power[i], np.nan)
        out.since = _since(series.ts, out.score, out.kind)


__all__ = ["DegreeDayFit", "TemperatureDetector"]

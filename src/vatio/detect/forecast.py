"""Forecast-residual detector: double-seasonal Holt-Winters, one step ahead (back-end tier, batch path).

The series is averaged into day-aligned slots (:func:`~vatio.detect.domain.slotted`:
half-hours, or the meter's interval when coarser). An additive model with no
trend — a level, a slot-of-day term and a slot-of-week term (Taylor's double
seasonal Holt-Winters, 2003) — is initialised on the first ``init_days`` and
then run causally: each slot is forecast from the state before it, scored,
and only then learned. The update is *Huberised* (Gelper, Fried and Croux,
2010): a residual beyond ``protect_z`` spreads is clipped before it enters
the level, the seasonal terms and the spread, so an anomaly is not learned
into the baseline (a lasting change still is, slowly).

The spread is a per-slot-of-day mean absolute residual (evenings are noisier
than nights). Three statistics of the standardised residual ``z`` are scored:

=============================  ======================================  ===========================
kind                           statistic                               finds
=============================  ======================================  ===========================
``forecast_high``              ``z`` of the slot                       a sudden excess
``forecast_sustained_high``    mean ``z`` of the last ``sustain_h``    a lasting excess (left on,
                                                                       runaway heating, baseload)
``forecast_low``               minus the mean ``z`` of the last        a lasting shortfall (vacancy,
                               ``sustain_h``                           meter under-reading)
=============================  ======================================  ===========================

Each is turned into decades of rarity against the home's own past
(:func:`~vatio.detect.hourly.tail_rarity`) and the largest wins, so the
score means the same as the suite's components. Pure numpy; the recursion
itself is a plain Python loop over slots (about 1 µs of work per slot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vatio.detect.base import DeviceSeries, FloatArray, SeriesScores
from vatio.detect.domain import slotted
from vatio.detect.hourly import rolling_mean, tail_rarity
from vatio.detect.suite import _since

#: Mean absolute deviation to sigma for a normal distribution.
MAD_TO_SIGMA = 1.2533


@dataclass(frozen=True, slots=True)
class Forecast:
    """Per-slot one-step-ahead forecast, spread (sigma) and observation; NaN before the model exists."""

    expected: FloatArray
    sigma: FloatArray
    observed: FloatArray

    @property
    def z(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num((self.observed - self.expected) / self.sigma, nan=0.0)


@dataclass(slots=True, kw_only=True)
class ForecastResidualDetector:
    """Double-seasonal Holt-Winters one step ahead; score = calibrated standardised residual.

    >>> ts = np.arange(0, 35 * 86400, 1800, dtype=np.int64)
    >>> noise = np.random.default_rng(0).normal(0, 15, len(ts))
    >>> power = 300 + 200 * np.sin(2 * np.pi * ts / 86400) + noise
    >>> power[-24:] += 900.0                          # something left on for the last 12 h
    >>> out = ForecastResidualDetector().score_series(DeviceSeries("d", ts, power, 1800))
    >>> bool(out.score[-5] > 3.0), str(out.kind[-5]), bool(out.score[-30] < 2.0)
    (True, 'forecast_sustained_high', True)
    """

    name: str = "forecast"
    init_days: int = 14
    alpha: float = 0.01  # level
    gamma_day: float = 0.10  # slot-of-day term
    gamma_week: float = 0.05  # slot-of-week term
    phi: float = 0.05  # spread
    protect_z: float = 3.0
    band_z: float = 3.0
    sustain_h: float = 6.0
    floor_w: float = 20.0
    floor_frac: float = 0.05
    calibrate_days: int = 28

    def forecast(self, mean_w: FloatArray, first_slot: int, per_day: int) -> Forecast:
        """Run the model over slot means (``first_slot`` the absolute index of the first); causal."""
        n = len(mean_w)
        expected, sigma = np.full(n, np.nan), np.full(n, np.nan)
        init = self.init_days * per_day
        if n <= init or np.isnan(mean_w[:init]).mean() > 0.5:
            return Forecast(expected, sigma, mean_w)
        level, day, week, spread = self._initial(mean_w[:init], first_slot, per_day)
        clip, k = self.protect_z * MAD_TO_SIGMA, 1.0 - self.alpha
        values = mean_w.tolist()
        out_f, out_s = expected.tolist(), sigma.tolist()
        for t in range(init, n):
            p_day = (first_slot + t) % per_day
            p_week = (first_slot + t) % (7 * per_day)
            f = level + day[p_day] + week[p_week]
            s = max(spread[p_day], self.floor_w, self.floor_frac * abs(f))
            out_f[t], out_s[t] = f, s * MAD_TO_SIGMA
            y = values[t]
            if y != y:  # a missing slot teaches nothing
                continue
            e = min(max(y - f, -clip * s), clip * s)
            level += self.alpha * e
            day[p_day] += self.gamma_day * k * e
            week[p_week] += self.gamma_week * k * e
            # Bounded, so a run of clipped residuals cannot inflate the spread and hide itself.
            spread[p_day] += self.phi * (min(abs(e), 2.0 * s) - spread[p_day])
        return Forecast(np.asarray(out_f), np.asarray(out_s), mean_w)

    def _initial(
        self, head: FloatArray, first_slot: int, per_day: int
    ) -> tuple[float, list[float], list[float], list[float]]:
        """Level, slot-of-day and slot-of-week terms and spread from the initial window (NaN-aware means)."""
        pos = (first_slot + np.arange(len(head))) % (7 * per_day)
        ok = ~np.isnan(head)
        level = float(np.mean(head[ok]))

        def by(position: np.ndarray, size: int, values: FloatArray) -> FloatArray:
            sums = np.bincount(position[ok], weights=values[ok], minlength=size)
            counts = np.bincount(position[ok], minlength=size)
            return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)

        day = by(pos % per_day, per_day, head - level)
        # Two weeks give two samples per slot of the week: shrink that term by half.
        week = 0.5 * by(pos, 7 * per_day, head - level - day[pos % per_day])
        residual = head - level - day[pos % per_day] - week[pos]
        spread = by(pos % per_day, per_day, np.abs(residual))
        return level, day.tolist(), week.tolist(), spread.tolist()

    def score_series(self, series: DeviceSeries) -> SeriesScores:
        n = len(series)
        out = SeriesScores.empty(n, "none")
        out.observed_w = series.power_w.copy()
        if n == 0:
            return out
        view = slotted(series)
        first_slot = int(series.ts[0] // view.slot_s)
        fc = self.forecast(view.mean_w, first_slot, view.per_day)
        z = fc.z
        sustained = np.nan_to_num(rolling_mean(z, view.slots(self.sustain_h), 1), nan=0.0)
        components = {
            "forecast_high": np.maximum(z, 0.0),
            "forecast_sustained_high": np.maximum(sustained, 0.0),
            "forecast_low": np.maximum(-sustained, 0.0),
        }
        init = self.init_days * view.per_day
        best, kind = np.zeros(len(z)), np.full(len(z), "none", dtype=object)
        for name, raw in components.items():
            rarity = np.zeros(len(z))
            # Calibrate against scored slots only: the initial window's zeros are not "usual".
            rarity[init:] = tail_rarity(
                raw[init:],
                window=self.calibrate_days * view.per_day,
                every=view.per_day,
                min_history=7 * view.per_day,
            )
            better = rarity > best
            best, kind = np.where(better, rarity, best), np.where(better, name, kind)
        at = view.row_slot
        usable = at >= 0
        i = np.where(usable, at, 0)
        out.score = np.where(usable, best[i], 0.0)
        out.kind = np.where(usable & (out.score > 0), kind[i], "none")
        out.expected_w = np.where(usable, fc.expected[i], np.nan)
        out.low_w = out.expected_w - self.band_z * np.where(usable, fc.sigma[i], np.nan)
        out.high_w = out.expected_w + self.band_z * np.where(usable, fc.sigma[i], np.nan)
        out.observed_w = np.where(usable, fc.observed[i], np.nan)
        out.since = _since(series.ts, out.score, out.kind)
        return out


__all__ = ["Forecast", "ForecastResidualDetector"]

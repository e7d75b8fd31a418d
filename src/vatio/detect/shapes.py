"""A learned model over daily load shapes: Isolation Forest on the last 24 h (back-end tier, batch path).

Every completed hour, the last 24 hourly means form a *daily profile*,
arranged by UTC hour of day, with four summary features: daily energy,
peak-to-mean ratio, the share of energy in the home's quiet hours (its
``quiet_hours`` lowest hours of the day in the training window — a night
share that needs no time zone) and the baseload (lowest hour). An
Isolation Forest (scikit-learn, the optional ``eval`` extra) is trained on
the profiles that ended in the past ``history_days`` and refitted every
``refit_days``; it scores only profiles that end after it was fitted, so
the detector is causal. Its raw score is standardised against the scores
of its own training profiles and turned into decades of rarity against
the home's past (:func:`~vatio.detect.hourly.tail_rarity`).

The explanation names the feature that is furthest from the training
profiles (robust z): e.g. ``quiet-hours share 41 % vs usual 12 ± 4 %``
(:attr:`ShapeScores.driver`); the watt fields carry the last 24 h mean
power against its usual band.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vatio.detect.base import DeviceSeries, FloatArray, IntArray, SeriesScores
from vatio.detect.hourly import HOUR, tail_rarity
from vatio.detect.suite import _since

DAY_H = 24
#: Hours per block of the profile the forest sees: 24 single hours are mostly noise
#: to a forest that picks a feature at random per split, and dilute a real change.
BLOCK_H = 3
MAD_TO_SIGMA = 1.4826
SUMMARY = ("daily energy", "peak-to-mean", "quiet-hours share", "baseload")
FEATURES = tuple(f"power {h:02d}-{h + BLOCK_H:02d} h UTC" for h in range(0, DAY_H, BLOCK_H)) + SUMMARY
_UNITS = {"daily energy": (1.0, "kWh"), "peak-to-mean": (1.0, ""), "quiet-hours share": (100.0, " %")}


def _isolation_forest(**kwargs: Any) -> Any:
    try:
        from sklearn.ensemble import IsolationForest
    except ImportError as exc:  # an optional extra, like the evaluation's baselines
        raise ImportError("the daily-shape detector needs scikit-learn: pip install 'vatio[eval]'") from exc
    return IsolationForest(**kwargs)


@dataclass(slots=True)
class ShapeScores(SeriesScores):
    """:class:`SeriesScores` plus, per row, the sentence naming the feature that drove the score."""

    driver: npt.NDArray[np.object_] = field(default_factory=lambda: np.zeros(0, dtype=object))


def profiles(mean_w: FloatArray, first_hour: int) -> FloatArray:
    """(hours, 24): row ``e`` holds hours ``e-23..e`` placed at their UTC hour of day (NaN before the start)."""
    n = len(mean_w)
    padded = np.concatenate((np.full(DAY_H - 1, np.nan), mean_w))
    window = np.lib.stride_tricks.sliding_window_view(padded, DAY_H)
    end = np.arange(n)[:, None]
    position = (first_hour + end - (DAY_H - 1) + np.arange(DAY_H)[None, :]) % DAY_H
    out = np.empty((n, DAY_H))
    out[np.broadcast_to(end, position.shape), position] = window
    return out


def features(profile: FloatArray, quiet: IntArray) -> FloatArray:
    """Block means of the profiles plus the summary features (:data:`FEATURES`); ``quiet`` the quiet hours."""
    blocks = profile.reshape(len(profile), DAY_H // BLOCK_H, BLOCK_H).mean(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = profile.mean(axis=1)
        total = profile.sum(axis=1)
        summary = np.column_stack(
            [
                mean * DAY_H / 1000.0,
                profile.max(axis=1) / np.maximum(mean, 1.0),
                profile[:, quiet].sum(axis=1) / np.maximum(total, 1.0),
                profile.min(axis=1),
            ]
        )
    return np.hstack([blocks, summary])


@dataclass(slots=True, kw_only=True)
class ShapeDetector:
    """Isolation Forest over the last 24 h profile, refitted on the past; causal.

    >>> day = 86400
    >>> ts = np.arange(0, 40 * day, 3600, dtype=np.int64)
    >>> hour = (ts % day) / 3600
    >>> noise = np.random.default_rng(0).normal(0, 20, len(ts))
    >>> power = 150 + 600 * np.exp(-((hour - 19) ** 2) / 3) + noise
    >>> power[-24:] = np.roll(power[-24:], 12)              # the evening moved to the early morning
    >>> s = ShapeDetector().score_series(DeviceSeries("d", ts, power, 3600))
    >>> bool(s.score[-1] > 3), bool(s.score[-30] < 2)
    (True, True)
    """

    name: str = "shapes"
    warmup_days: int = 14
    refit_days: int = 14
    history_days: int = 42
    quiet_hours: int = 6
    n_estimators: int = 50
    seed: int = 0
    calibrate_days: int = 28

    def score_series(self, series: DeviceSeries) -> ShapeScores:
        n = len(series)
        base = SeriesScores.empty(n, "none")
        out = ShapeScores(**{name: getattr(base, name) for name in SeriesScores.__slots__})
        out.driver = np.full(n, "", dtype=object)
        out.observed_w = series.power_w.copy()
        if n == 0:
            return out
        first_hour = int(series.ts[0] // HOUR)
        hour_idx = (series.ts // HOUR - first_hour).astype(np.int64)
        n_hours = int(hour_idx[-1]) + 1
        ok = ~np.isnan(series.power_w)
        sums = np.bincount(hour_idx[ok], weights=series.power_w[ok], minlength=n_hours)
        counts = np.bincount(hour_idx[ok], minlength=n_hours)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_w = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        per_hour = self._score_hours(profiles(mean_w, first_hour))
        rarity = np.zeros(n_hours)
        # Calibrate against scored hours only: the warm-up's zeros are not "usual".
        warm = self.warmup_days * DAY_H
        rarity[warm:] = tail_rarity(
            per_hour.raw[warm:], window=self.calibrate_days * DAY_H, every=DAY_H, min_history=7 * DAY_H
        )
        # The last hour that ended at or before the end of the row's own interval.
        at = ((series.ts + series.step_s) // HOUR - first_hour - 1).astype(np.int64)
        usable = at >= 0
        i = np.where(usable, at, 0)
        out.score = np.where(usable, rarity[i], 0.0)
        out.kind = np.where(out.score > 0, "daily_shape", "none").astype(object)
        out.driver = np.where(out.score > 0, per_hour.driver[i], "").astype(object)
        for name in ("expected_w", "low_w", "high_w", "observed_w"):
            setattr(out, name, np.where(usable, getattr(per_hour, name)[i], np.nan))
        out.since = _since(series.ts, out.score, out.kind)
        return out

    def _score_hours(self, profile: FloatArray) -> _HourScores:
        n = len(profile)
        result = _HourScores.empty(n)
        complete = np.asarray(np.isfinite(profile).all(axis=1), dtype=bool)
        fit_at = self.warmup_days * DAY_H
        while fit_at < n:
            next_fit = fit_at + self.refit_days * DAY_H
            train = np.flatnonzero(complete[max(0, fit_at - self.history_days * DAY_H) : fit_at])
            train += max(0, fit_at - self.history_days * DAY_H)
            if len(train) >= 7 * DAY_H:
                self._fit_block(profile, train, slice(fit_at, min(next_fit, n)), result)
            fit_at = next_fit
        return result

    def _fit_block(self, profile: FloatArray, train: IntArray, block: slice, result: _HourScores) -> None:
        usual = np.median(profile[train], axis=0)
        quiet = np.argsort(usual)[: self.quiet_hours]
        x_train = features(profile[train], quiet)
        # Missing hours of a scored profile are read as the usual value for that hour.
        target = np.where(np.isnan(profile[block]), usual, profile[block])
        x = features(target, quiet)
        model = _isolation_forest(n_estimators=self.n_estimators, random_state=self.seed)
        model.fit(x_train)
        train_score = -model.score_samples(x_train)
        centre = float(np.median(train_score))
        spread = max(MAD_TO_SIGMA * float(np.median(np.abs(train_score - centre))), 1e-3)
        isolation = np.maximum((-model.score_samples(x) - centre) / spread, 0.0)
        f_mid = np.median(x_train, axis=0)
        f_mad = np.maximum(MAD_TO_SIGMA * np.median(np.abs(x_train - f_mid), axis=0), 1e-6 + 0.1 * np.abs(f_mid))
        z = (x - f_mid) / f_mad
        top = np.argmax(np.abs(z), axis=1)
        # A forest's score is bounded (a path is at least one split long): it ranks "unusual"
        # but saturates on "how far". The driving feature's robust z supplies the magnitude.
        result.raw[block] = isolation * np.log1p(np.abs(z[np.arange(len(z)), top]))
        result.driver[block] = [_describe(int(k), x[r, k], f_mid[k], f_mad[k]) for r, k in enumerate(top)]
        day_mean = profile[train].mean(axis=1)
        mid, mad = float(np.median(day_mean)), MAD_TO_SIGMA * float(np.median(np.abs(day_mean - np.median(day_mean))))
        result.expected_w[block], result.low_w[block], result.high_w[block] = mid, mid - 3 * mad, mid + 3 * mad
        result.observed_w[block] = target.mean(axis=1)


def _describe(k: int, value: float, usual: float, spread: float) -> str:
    name = FEATURES[k]
    scale, unit = _UNITS.get(name, (1.0, " W"))
    digits = 2 if name in ("daily energy", "peak-to-mean") else 0
    shown = f"{value * scale:.{digits}f}{unit}"
    return f"{name} {shown} vs usual {usual * scale:.{digits}f} ± {spread * scale:.{digits}f}{unit}"


@dataclass(slots=True)
class _HourScores:
    raw: FloatArray
    driver: npt.NDArray[np.object_]
    expected_w: FloatArray
    low_w: FloatArray
    high_w: FloatArray
    observed_w: FloatArray

    @classmethod
    def empty(cls, n: int) -> _HourScores:
        nan = np.full(n, np.nan)
        return cls(np.zeros(n), np.full(n, "", dtype=object), nan, nan.copy(), nan.copy(), nan.copy())


__all__ = ["FEATURES", "ShapeDetector", "ShapeScores", "features", "profiles"]

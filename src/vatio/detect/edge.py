"""The edge tier: cheap per-reading detectors on power, O(1) time and state per reading.

Statistical detectors here — :class:`RobustZ`, :class:`EwmaChart`,
:class:`Cusum`, :class:`RateOfChange` — learn a baseline from readings judged
normal only, stay silent (score 0) until ``warmup`` readings are learned, and
score 1.0 at their own decision rule. The rule-based ones, :class:`Limits`
and :class:`DataQuality`, live in :mod:`vatio.detect.edge_quality`;
:func:`edge_detectors` gives the whole tier, :class:`~vatio.detect.stream.EdgeSuite`
fuses it. All follow :class:`~vatio.detect.stream.StreamDetector`.

Defaults suit a home or a plug reporting every 10 s (counts of readings are
given for that rate) and were set on simulated homes (:mod:`vatio.sim`) for
about one alarm a day per detector on normal days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from vatio.detect.base import FloatArray
from vatio.detect.edge_quality import DataQuality, EdgeDetector, Limits
from vatio.detect.edge_stats import (
    BoolArray,
    Remedian,
    _BaselinePath,
    block_max,
    clamp_step,
    clamped_walk,
    ew_path,
    ew_std,
    ew_std_path,
    ew_step,
    ew_var_path,
    ew_var_step,
    force_step,
    forced,
    gate,
    previous,
    ready,
    typical_max,
    typical_max_small,
)
from vatio.detect.stream import NAN, EdgeSuite, Obs, ObsBatch, ScanDetector, Span, Verdict


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


@dataclass(kw_only=True, eq=False)
class RobustZ(EdgeDetector):
    """Robust z-score of power against a remedian of the last ``blocks`` × ``block`` normal readings.

    Location: median of block medians; scale: 1.4826 × the typical within-block
    MAD combined with the spread of block medians, at least ``min_scale_w``.
    Score ``|z| / z_limit``; household power is heavy-tailed (a kettle is some 30 of
    these σ above a quiet evening), hence the high default. Warm-up: ``warmup``
    learned readings (≥ ``block``; the default fills the ring: 8 h at 10 s). After
    ``relearn_after`` consecutive anomalous readings it learns them anyway.

    >>> det = RobustZ(block=4, blocks=4, warmup=8, z_limit=6.0)
    >>> for i in range(40):
    ...     det.learn_one(Obs(10.0 * i, power_w=100.0 + i % 3))
    >>> v = det.score_one(Obs(400.0, power_w=900.0))
    >>> v.kind, v.expected, v.high, round(v.score, 1)
    ('robust_z', 100.75, 280.75, 4.4)
    """

    name: str = "robust_z"
    block: int = 60
    blocks: int = 48
    z_limit: float = 60.0
    min_scale_w: float = 30.0
    warmup: int = 2880
    relearn_after: int | None = 360
    kinds: ClassVar[tuple[str, ...]] = ("robust_z",)
    _state = ("learned", "streak")
    _ring: Remedian = field(init=False, repr=False)
    _learned: int = field(default=0, init=False, repr=False)
    _streak: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.block >= 1 and self.blocks >= 1, "RobustZ needs block >= 1 and blocks >= 1")
        _check(self.warmup >= self.block, "RobustZ needs warmup >= block (a first block to score against)")
        _check(self.z_limit > 0 and self.min_scale_w > 0, "RobustZ needs z_limit > 0 and min_scale_w > 0")
        self._ring = Remedian(self.block, self.blocks)

    def score_one(self, x: Obs) -> Verdict:
        p, loc = x.power_w, self._ring.loc
        band = self.z_limit * max(self._ring.scale, self.min_scale_w)
        ok = math.isfinite(p) and self._learned >= self.warmup
        score = abs(p - loc) / band if ok else 0.0
        return Verdict(score, "robust_z" if score > 0 else "none", loc, loc - band, loc + band, p)

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        learn, self._streak = force_step(self._streak, self.relearn_after, anomalous)
        if learn and math.isfinite(x.power_w):
            self._ring.push(x.power_w)
            self._learned = min(self._learned + 1, self.warmup)

    def scan(self, batch: ObsBatch, learn: BoolArray) -> Span:
        p = batch.power_w
        ok = np.isfinite(p)
        eff, streak = forced(learn, self._streak, self.relearn_after)
        use = ok & eff
        loc, scale, commit_ring = self._ring.path(p, use)
        band = self.z_limit * np.maximum(scale, self.min_scale_w)
        score = gate(np.abs(p - loc) / band, ok, self._learned, use, self.warmup)
        learned0 = self._learned

        def commit(k: int) -> None:
            commit_ring(k)
            self._learned = min(learned0 + int(np.count_nonzero(use[:k])), self.warmup)
            self._streak = int(streak[k])

        return Span(score, np.zeros(len(p), np.intp), loc, loc - band, loc + band, p, commit)


@dataclass(kw_only=True, eq=False)
class _Baseline(EdgeDetector):
    """Exponentially weighted mean (``alpha``) and variance (``var_alpha``) of power, from normal readings.

    The variance learns 50 times slower than the mean (a day at 10 s), so a step
    in the level does not widen the band before the chart sees it. After
    ``relearn_after`` consecutive anomalous readings the detector learns them
    anyway, so a lasting new level becomes normal instead of alarming forever;
    ``None`` never does.
    """

    alpha: float = 0.005
    var_alpha: float = 0.0001
    min_std_w: float = 5.0
    warmup: int = 120
    relearn_after: int | None = 360
    _mean: float = field(default=NAN, init=False, repr=False)
    _var: float = field(default=NAN, init=False, repr=False)
    _weight: float = field(default=NAN, init=False, repr=False)
    _learned: int = field(default=0, init=False, repr=False)
    _streak: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check(0 < self.alpha < 1 and 0 < self.var_alpha < 1, f"{name} needs 0 < alpha, var_alpha < 1")
        _check(self.min_std_w > 0 and self.warmup >= 2, f"{name} needs min_std_w > 0 and warmup >= 2")
        _check(self.relearn_after is None or self.relearn_after >= 1, f"{name} needs relearn_after >= 1 or None")

    def _learn_baseline(self, p: float, anomalous: bool) -> None:
        learn, self._streak = force_step(self._streak, self.relearn_after, anomalous)
        if learn and math.isfinite(p):
            self._mean, self._var, self._weight = ew_var_step(
                self._mean, self._var, self._weight, p, self.alpha, self.var_alpha
            )
            self._learned = min(self._learned + 1, self.warmup)

    def _baseline_path(self, p: FloatArray, ok: BoolArray, learn: BoolArray) -> _BaselinePath:
        eff, streak = forced(learn, self._streak, self.relearn_after)
        use = ok & eff
        start = (self._mean, self._var, self._weight)
        mean, var, weight = ew_var_path(p, use, self.alpha, self.var_alpha, start)
        sd = ew_std_path(var[:-1], weight[:-1], self.min_std_w)
        return _BaselinePath(mean, var, weight, sd, use, streak, self._learned)

    def _commit_baseline(self, path: _BaselinePath, k: int) -> None:
        self._mean, self._var, self._weight = float(path.mean[k]), float(path.var[k]), float(path.weight[k])
        self._learned = min(path.learned0 + int(np.count_nonzero(path.use[:k])), self.warmup)
        self._streak = int(path.streak[k])

    def _std(self) -> float:
        return ew_std(self._var, self._weight, self.min_std_w)


@dataclass(kw_only=True, eq=False)
class EwmaChart(_Baseline):
    """EWMA control chart: a fast EWMA of power (``lam``) against a slow baseline (``alpha``).

    Limits: baseline mean ± ``limit`` × σ, σ the baseline's standard deviation
    (at least ``min_std_w``); score = distance / half-width. Not the textbook
    σ·√(λ / (2 − λ)): that assumes independent readings, and household power is
    strongly autocorrelated (an oven on for an hour), so it alarms on every
    appliance cycle. ``observed`` is the chart's EWMA, which moves with every
    reading; the baseline with normal readings only. Warm-up: ``warmup`` learned readings.

    >>> det = EwmaChart(warmup=50)
    >>> for i in range(2000):
    ...     det.learn_one(Obs(10.0 * i, power_w=500.0 + 20.0 * (i % 2)))
    >>> [round(det.score_one(Obs(20000.0, power_w=w)).score, 2) for w in (510.0, 3000.0)]
    [0.0, 2.03]
    """

    name: str = "ewma"
    lam: float = 0.05
    limit: float = 6.0
    kinds: ClassVar[tuple[str, ...]] = ("ewma",)
    _state = ("chart", "mean", "var", "weight", "learned", "streak")
    _chart: float = field(default=NAN, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(0 < self.lam < 1 and self.limit > 0, "EwmaChart needs 0 < lam < 1 and limit > 0")

    def score_one(self, x: Obs) -> Verdict:
        p, mean = x.power_w, self._mean
        chart = ew_step(self._chart, p, self.lam) if math.isfinite(p) else self._chart
        half = self.limit * self._std()
        ok = math.isfinite(p) and self._learned >= self.warmup
        score = abs(chart - mean) / half if ok else 0.0
        return Verdict(score, "ewma" if score > 0 else "none", mean, mean - half, mean + half, chart)

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        if math.isfinite(x.power_w):
            self._chart = ew_step(self._chart, x.power_w, self.lam)
        self._learn_baseline(x.power_w, anomalous)

    def scan(self, batch: ObsBatch, learn: BoolArray) -> Span:
        p = batch.power_w
        ok = np.isfinite(p)
        chart = ew_path(p, ok, self.lam, self._chart)
        path = self._baseline_path(p, ok, learn)
        mean, half = path.mean[:-1], self.limit * path.sd
        score = gate(np.abs(chart[1:] - mean) / half, ok, self._learned, path.use, self.warmup)

        def commit(k: int) -> None:
            self._chart = float(chart[k])
            self._commit_baseline(path, k)

        return Span(score, np.zeros(len(p), np.intp), mean, mean - half, mean + half, chart[1:], commit)


@dataclass(kw_only=True, eq=False)
class Cusum(_Baseline):
    """Two-sided CUSUM of standardised power: a sustained level shift of more than ``k`` σ.

    ``z = (power − mean) / σ`` against the slow baseline, clipped to ±``clip``
    so one huge reading cannot alarm alone; ``S⁺ ← max(0, S⁺ + z − k)``,
    ``S⁻ ← max(0, S⁻ − z − k)``, both held below ``cap`` × ``h`` so an alarm
    ends soon after the shift; score ``max(S⁺, S⁻) / h``. The defaults need
    half an hour of a 3 σ shift. Explanation: baseline mean, the slack band
    mean ± ``k`` σ, the reading. The sums start after warm-up.

    >>> det = Cusum(warmup=50, h=4.0)
    >>> for i in range(2000):
    ...     det.learn_one(Obs(10.0 * i, power_w=500.0 + 20.0 * (i % 2)))
    >>> scores = []
    >>> for i in range(2000, 2005):
    ...     v = det.score_one(Obs(10.0 * i, power_w=560.0))
    ...     det.learn_one(Obs(10.0 * i, power_w=560.0), anomalous=v.score >= 1)
    ...     scores.append(round(v.score, 2))
    >>> scores, v.kind, round(v.expected), round(v.high)  # held at cap × h: the alarm can end soon
    ([0.5, 1.0, 1.5, 1.5, 1.5], 'level_shift', 510, 521)
    """

    name: str = "cusum"
    k: float = 1.0
    h: float = 360.0
    clip: float = 3.0
    cap: float = 1.5
    kinds: ClassVar[tuple[str, ...]] = ("level_shift",)
    _state = ("hi", "lo", "mean", "var", "weight", "learned", "streak")
    _hi: float = field(default=0.0, init=False, repr=False)
    _lo: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.k >= 0 and self.h > 0 and self.clip > 0, "Cusum needs k >= 0, h > 0 and clip > 0")
        _check(self.cap >= 1, "Cusum needs cap >= 1")

    def _sums(self, p: float) -> tuple[float, float]:
        if not (math.isfinite(p) and self._learned >= self.warmup):
            return self._hi, self._lo
        z = min(max((p - self._mean) / self._std(), -self.clip), self.clip)
        ceiling = self.cap * self.h
        return clamp_step(self._hi, z - self.k, ceiling), clamp_step(self._lo, -z - self.k, ceiling)

    def score_one(self, x: Obs) -> Verdict:
        hi, lo = self._sums(x.power_w)
        ok = math.isfinite(x.power_w) and self._learned >= self.warmup
        score = max(hi, lo) / self.h if ok else 0.0
        mean, slack = self._mean, self.k * self._std()
        return Verdict(score, "level_shift" if score > 0 else "none", mean, mean - slack, mean + slack, x.power_w)

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        self._hi, self._lo = self._sums(x.power_w)
        self._learn_baseline(x.power_w, anomalous)

    def scan(self, batch: ObsBatch, learn: BoolArray) -> Span:
        p = batch.power_w
        ok = np.isfinite(p)
        path = self._baseline_path(p, ok, learn)
        mean = path.mean[:-1]
        z = np.clip((p - mean) / path.sd, -self.clip, self.clip)
        on = ready(ok, self._learned, path.use, self.warmup)
        hi = clamped_walk(np.where(on, z - self.k, 0.0), self._hi, self.cap * self.h)
        lo = clamped_walk(np.where(on, -z - self.k, 0.0), self._lo, self.cap * self.h)
        score = np.where(on, np.maximum(hi, lo) / self.h, 0.0)

        def commit(k: int) -> None:
            self._hi, self._lo = float(hi[k - 1]), float(lo[k - 1])
            self._commit_baseline(path, k)

        slack = self.k * path.sd
        return Span(score, np.zeros(len(p), np.intp), mean, mean - slack, mean + slack, p, commit)


@dataclass(kw_only=True, eq=False)
class RateOfChange(EdgeDetector):
    """Spikes: power changing faster (W/s, either way) than ``factor`` × the typical largest
    rate in a block of ``block`` normal readings (median over the last ``blocks``
    blocks), and at least ``min_rate_w_per_s``. Score ``|rate| / limit``;
    explanation: 0 expected, ±limit, the rate. Warm-up: ``warmup`` learned rates.

    >>> det = RateOfChange(block=5, blocks=4, warmup=10, min_rate_w_per_s=20.0)
    >>> for i in range(60):
    ...     det.learn_one(Obs(10.0 * i, power_w=300.0 + 50.0 * (i % 2)))
    >>> v = det.score_one(Obs(600.0, power_w=9300.0))
    >>> v.kind, v.high, v.observed
    ('spike', 50.0, 895.0)
    """

    name: str = "rate_of_change"
    block: int = 60
    blocks: int = 24
    factor: float = 10.0
    min_rate_w_per_s: float = 800.0
    warmup: int = 120
    kinds: ClassVar[tuple[str, ...]] = ("spike",)
    _state = ("learned", "last_ts", "last_p")
    _ring: Remedian = field(init=False, repr=False)
    _learned: int = field(default=0, init=False, repr=False)
    _last_ts: float = field(default=NAN, init=False, repr=False)
    _last_p: float = field(default=NAN, init=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.block >= 1 and self.blocks >= 1, "RateOfChange needs block >= 1 and blocks >= 1")
        _check(self.warmup >= self.block, "RateOfChange needs warmup >= block")
        _check(self.factor > 0 and self.min_rate_w_per_s > 0, "RateOfChange needs positive factor and floor")
        self._ring = Remedian(self.block, self.blocks, block_max, typical_max, typical_max_small)

    def _rate(self, x: Obs) -> float:
        dt = x.ts - self._last_ts
        return (x.power_w - self._last_p) / dt if dt > 0 and math.isfinite(x.power_w) else NAN

    def score_one(self, x: Obs) -> Verdict:
        rate = self._rate(x)
        limit = max(self.factor * self._ring.loc, self.min_rate_w_per_s)
        ok = rate == rate and self._learned >= self.warmup
        score = abs(rate) / limit if ok else 0.0
        return Verdict(score, "spike" if score > 0 else "none", 0.0, -limit, limit, rate)

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        rate = self._rate(x)
        if not anomalous and rate == rate:
            self._ring.push(abs(rate))
            self._learned = min(self._learned + 1, self.warmup)
        if math.isfinite(x.power_w):
            self._last_ts, self._last_p = x.ts, x.power_w

    def scan(self, batch: ObsBatch, learn: BoolArray) -> Span:
        ts, p = batch.ts, batch.power_w
        ok = np.isfinite(p)
        prev_ts, prev_p = previous(ts, ok, self._last_ts), previous(p, ok, self._last_p)
        dt = ts - prev_ts[:-1]
        defined = ok & (dt > 0) & ~np.isnan(prev_p[:-1])
        rate = np.where(defined, (p - prev_p[:-1]) / np.where(dt > 0, dt, 1.0), NAN)
        magnitude = np.abs(rate)
        use = defined & learn
        loc, _, commit_ring = self._ring.path(magnitude, use)
        limit = np.maximum(self.factor * loc, self.min_rate_w_per_s)
        score = gate(magnitude / limit, defined, self._learned, use, self.warmup)
        learned0 = self._learned

        def commit(k: int) -> None:
            commit_ring(k)
            self._learned = min(learned0 + int(np.count_nonzero(use[:k])), self.warmup)
            self._last_ts, self._last_p = float(prev_ts[k]), float(prev_p[k])

        return Span(score, np.zeros(len(p), np.intp), np.zeros(len(p)), -limit, limit, rate, commit)


def edge_detectors() -> tuple[ScanDetector, ...]:
    """The whole edge tier with residential defaults, in order of precedence on equal scores."""
    return (Limits(), DataQuality(), RobustZ(), EwmaChart(), Cusum(), RateOfChange())


__all__ = [
    "Cusum",
    "DataQuality",
    "EdgeSuite",
    "EwmaChart",
    "Limits",
    "RateOfChange",
    "RobustZ",
    "edge_detectors",
]

"""Edge detectors without statistics — fixed limits, data quality — and the plumbing all edge detectors share.

:class:`Limits` checks readings against configured bounds (over-power, voltage
sag/swell, frequency); :class:`DataQuality` checks the stream itself. Structural
faults score :data:`FAULT`; graded checks score 1.0 at their limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np
import numpy.typing as npt

from vatio.detect.base import FloatArray, Threshold
from vatio.detect.edge_stats import (
    BoolArray,
    counts,
    ew_path,
    ew_step,
    force_step,
    forced,
    previous,
)
from vatio.detect.stream import (
    NAN,
    PROTECT,
    BatchVerdicts,
    Obs,
    ObsBatch,
    ScanDetector,
    Span,
    State,
    Verdict,
    run_protected,
)


def to_json(value: float) -> float | None:
    """A number for a JSON state: NaN (not known yet) becomes ``None``."""
    return None if value != value else value


def from_json(value: object) -> float:
    """The inverse of :func:`to_json`."""
    if value is None:
        return NAN
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number or null in detector state, got {value!r}")
    return float(value)


class EdgeDetector:
    """Plumbing the edge detectors share: ``score_batch`` through
    :func:`~vatio.detect.stream.run_protected`, and a state dict of the attributes
    ``_<name>`` for each name in ``_state`` (ints stay ints) plus the ``_ring``'s, if any.

    >>> from vatio.detect.edge import Cusum
    >>> sorted(Cusum().state_dict())
    ['hi', 'learned', 'lo', 'mean', 'streak', 'var', 'weight']
    """

    _state: ClassVar[tuple[str, ...]] = ()

    def score_batch(self, batch: ObsBatch, threshold: Threshold | None = PROTECT) -> BatchVerdicts:
        return run_protected([cast(ScanDetector, self)], batch, threshold)

    def state_dict(self) -> State:
        state: State = {name: to_json(getattr(self, "_" + name)) for name in self._state}
        ring = getattr(self, "_ring", None)
        return state if ring is None else {**state, **ring.state_dict()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        for name in self._state:
            is_count = isinstance(getattr(self, "_" + name), int)
            setattr(self, "_" + name, int(state[name]) if is_count else from_json(state[name]))
        ring = getattr(self, "_ring", None)
        if ring is not None:
            ring.load_state(state)


#: Score of a structural fault (a counter going backwards, a repeated sequence number).
FAULT = 2.0


def _best(*verdicts: Verdict) -> Verdict:
    best = max(verdicts, key=lambda v: v.score)  # the first of the highest
    return best if best.score > 0.0 else best._replace(kind="none")


def _band_score(value: float, low: float, high: float) -> float:
    """0 inside ``[low, high]``; outside, 1 plus the excess in half-widths of the band."""
    outside = max(low - value, value - high)
    return 1.0 + outside / ((high - low) / 2.0) if outside > 0 else 0.0


def _band_scores(values: FloatArray, low: float, high: float) -> FloatArray:
    outside = np.maximum(low - values, values - high)
    return np.where(outside > 0, 1.0 + outside / ((high - low) / 2.0), 0.0)


def _timing_kind(dt: FloatArray, limit: FloatArray, seq: FloatArray, last_seq: FloatArray) -> npt.NDArray[np.intp]:
    """0 (clock_skew) where time went back, or jumped past the limit with no reading lost; else 1 (gap)."""
    odd = (dt < 0) | (dt > limit)
    return np.where((dt < 0) | (odd & (seq == last_seq + 1.0)), 0, 1) if odd.any() else np.ones(len(dt), np.intp)


def _take_better(
    span: Span, candidate: FloatArray, kind: int | npt.NDArray[np.intp], numbers: tuple[float | FloatArray, ...]
) -> None:
    """Where ``candidate`` beats the span's score, the candidate and its numbers replace it."""
    better = candidate > span.score
    if not better.any():
        return
    span.score = np.where(better, candidate, span.score)
    span.kind = np.where(better, kind, span.kind)
    fields = ("expected", "low", "high", "observed")
    for name, value in zip(fields, numbers, strict=True):
        setattr(span, name, np.where(better, value, getattr(span, name)))


@dataclass(kw_only=True, eq=False)
class Limits(EdgeDetector):
    """Fixed limits: over-power, voltage sag/swell (EN 50160: 230 V ± 10 %), mains frequency.

    Over-power scores ``power / max_power_w`` above the limit (default: a
    63 A main fuse at 230 V); voltage and frequency score 1 at the band's
    edge plus the excess in half-widths of the band. Needs no warm-up.

    >>> Limits().score_one(Obs(0.0, power_w=1200.0, voltage_v=198.0))
    Verdict(score=1.391304347826087, kind='voltage_sag', expected=230.0, low=207.0, high=253.0, observed=198.0)
    """

    name: str = "limits"
    max_power_w: float = 14_490.0
    voltage_low_v: float = 207.0
    voltage_high_v: float = 253.0
    frequency_low_hz: float = 49.5
    frequency_high_hz: float = 50.5
    warmup: int = 0
    kinds: ClassVar[tuple[str, ...]] = ("over_power", "voltage_sag", "voltage_swell", "frequency")

    def __post_init__(self) -> None:
        if not (self.max_power_w > 0 and self.voltage_low_v < self.voltage_high_v):
            raise ValueError("Limits needs max_power_w > 0 and voltage_low_v < voltage_high_v")
        if not self.frequency_low_hz < self.frequency_high_hz:
            raise ValueError("Limits needs frequency_low_hz < frequency_high_hz")

    def score_one(self, x: Obs) -> Verdict:
        p, v, f = x.power_w, x.voltage_v, x.frequency_hz
        over = p / self.max_power_w if math.isfinite(p) and p > self.max_power_w else 0.0
        vlo, vhi, flo, fhi = self.voltage_low_v, self.voltage_high_v, self.frequency_low_hz, self.frequency_high_hz
        return _best(
            Verdict(over, "over_power", NAN, NAN, self.max_power_w, p),
            Verdict(
                _band_score(v, vlo, vhi), "voltage_sag" if v < vlo else "voltage_swell", (vlo + vhi) / 2, vlo, vhi, v
            ),
            Verdict(_band_score(f, flo, fhi), "frequency", (flo + fhi) / 2, flo, fhi, f),
        )

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        return None

    def scan(self, batch: ObsBatch, learn: BoolArray) -> Span:
        p, v, f = batch.power_w, batch.voltage_v, batch.frequency_hz
        m = len(batch)
        nan = np.full(m, NAN)
        span = Span(np.zeros(m), np.zeros(m, np.intp), nan, nan, np.full(m, self.max_power_w), p)
        over = (p > self.max_power_w) & np.isfinite(p)
        if over.any():
            span.score = np.where(over, p / self.max_power_w, 0.0)
        vlo, vhi, flo, fhi = self.voltage_low_v, self.voltage_high_v, self.frequency_low_hz, self.frequency_high_hz
        if ((v < vlo) | (v > vhi)).any():
            _take_better(span, _band_scores(v, vlo, vhi), np.where(v < vlo, 1, 2), ((vlo + vhi) / 2, vlo, vhi, v))
        if ((f < flo) | (f > fhi)).any():
            _take_better(span, _band_scores(f, flo, fhi), 3, ((flo + fhi) / 2, flo, fhi, f))
        return span


@dataclass(kw_only=True, eq=False)
class DataQuality(EdgeDetector):
    """Is the stream itself sound? Checks, in order of precedence on equal scores:

    - ``clock_skew``: ``ts`` behind the previous reading (score: seconds behind /
      ``skew_tolerance_s``), or a jump of more than ``gap_factor`` usual intervals with
      consecutive ``seq`` — the device lost no reading, its clock jumped;
    - ``gap``: more than ``gap_factor`` usual intervals since the previous reading
      (score: interval / (``gap_factor`` × usual));
    - ``implausible``: power above ``max_power_w``, below ``-max_export_w``, or infinite (FAULT);
    - ``counter_reset`` / ``counter_jump``: ``energy_wh`` more than ``counter_tolerance_wh``
      below the previous value, or above it by more than ``max_power_w`` could add in the
      time since (FAULT);
    - ``duplicate_seq`` / ``seq_out_of_order``: ``seq`` equal to / below the previous one
      (FAULT); a device reboot looks like the latter, once;
    - ``stuck``: the same non-zero power for longer than ``stuck_s`` from a device whose
      readings usually change (a ``min_change_rate`` share of them) — score: run / ``stuck_s``.

    Learned: the usual interval and how often power changes; after
    ``relearn_after`` consecutive anomalous readings they are learned anyway (a
    device now reporting every minute instead of every 10 s). Warm-up: nothing
    scores before ``warmup`` readings are learned. Numbers: intervals and runs in
    seconds, counters in Wh, ``seq`` as numbers. :meth:`offline` judges silence.

    >>> dq = DataQuality(warmup=3)
    >>> for i in range(5):
    ...     dq.learn_one(Obs(10.0 * i, i, 200.0 + i, 1000.0 + i))
    >>> dq.score_one(Obs(50.0, 4, 205.0, 1005.0))
    Verdict(score=2.0, kind='duplicate_seq', expected=5.0, low=5.0, high=nan, observed=4.0)
    >>> dq.score_one(Obs(50.0, 5, 205.0, 1.0)).kind
    'counter_reset'
    >>> dq.offline(now=400.0)
    Verdict(score=6.0, kind='offline', expected=10.0, low=0.0, high=60.0, observed=360.0)
    """

    name: str = "quality"
    max_power_w: float = 50_000.0
    max_export_w: float = 30_000.0
    counter_tolerance_wh: float = 1.0
    skew_tolerance_s: float = 1.0
    gap_factor: float = 6.0
    interval_alpha: float = 0.05
    stuck_s: float = 1800.0
    stuck_min_w: float = 1.0
    min_change_rate: float = 0.5
    change_alpha: float = 0.01
    warmup: int = 30
    relearn_after: int | None = 360
    kinds: ClassVar[tuple[str, ...]] = (
        "clock_skew",
        "gap",
        "implausible",
        "counter_reset",
        "counter_jump",
        "duplicate_seq",
        "seq_out_of_order",
        "stuck",
    )
    _s: dict[str, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.interval_alpha < 1 and 0 < self.change_alpha < 1):
            raise ValueError("DataQuality alphas must be in (0, 1)")
        if min(self.gap_factor, self.stuck_s, self.skew_tolerance_s, self.max_power_w) <= 0:
            raise ValueError("DataQuality limits must be positive")
        keys = ("last_ts", "last_seq", "last_e", "last_e_ts", "last_p", "run_start", "interval", "change")
        self._s = dict.fromkeys(keys, NAN)
        self._s["learned"] = self._s["streak"] = 0

    def offline(self, now: float) -> Verdict:
        """Silence since the last reading, judged against the usual interval (kind ``offline``)."""
        s = self._s
        silence, limit = now - s["last_ts"], self.gap_factor * s["interval"]
        score = silence / limit if s["learned"] >= self.warmup and silence > 0 and limit > 0 else 0.0
        return Verdict(score, "offline" if score > 0 else "none", s["interval"], 0.0, limit, silence)

    def score_one(self, x: Obs) -> Verdict:
        s = self._s
        p, e, seq = x.power_w, x.energy_wh, NAN if x.seq is None or x.seq < 0 else float(x.seq)
        ready = 1.0 if s["learned"] >= self.warmup else 0.0
        dt, limit, last_seq = x.ts - s["last_ts"], self.gap_factor * s["interval"], s["last_seq"]
        late = -dt / self.skew_tolerance_s if dt < 0 else dt / limit if dt > 0 else 0.0
        implausible = p > self.max_power_w or p < -self.max_export_w  # infinities included
        low_e, dt_e = s["last_e"] - self.counter_tolerance_wh, x.ts - s["last_e_ts"]
        high_e = s["last_e"] + (self.max_power_w * dt_e / 3600.0 + self.counter_tolerance_wh) if dt_e > 0 else NAN
        run = x.ts - s["run_start"] if p == s["last_p"] and abs(p) > self.stuck_min_w else 0.0
        stuck = run / self.stuck_s if s["change"] >= self.min_change_rate else 0.0
        return _best(
            Verdict(
                late * ready if late == late else 0.0,
                "clock_skew" if dt < 0 or (seq == last_seq + 1.0 and dt > limit) else "gap",
                s["interval"],
                -self.skew_tolerance_s,
                limit,
                dt,
            ),
            Verdict(FAULT * ready if implausible else 0.0, "implausible", NAN, -self.max_export_w, self.max_power_w, p),
            Verdict(
                (FAULT if e < low_e or e > high_e else 0.0) * ready,
                "counter_reset" if e < low_e else "counter_jump",
                s["last_e"],
                low_e,
                high_e,
                e,
            ),
            Verdict(
                FAULT * ready if seq <= last_seq else 0.0,
                "duplicate_seq" if seq == last_seq else "seq_out_of_order",
                last_seq + 1.0,
                last_seq + 1.0,
                NAN,
                seq,
            ),
            Verdict(stuck * ready, "stuck", NAN, 0.0, self.stuck_s, run),
        )

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        s = self._s
        p, e = x.power_w, x.energy_wh
        learn, s["streak"] = force_step(int(s["streak"]), self.relearn_after, anomalous)
        if learn:
            s["learned"] = min(s["learned"] + 1, self.warmup)
            dt = x.ts - s["last_ts"]
            if dt > 0:
                s["interval"] = ew_step(s["interval"], dt, self.interval_alpha)
            if p == p and s["last_p"] == s["last_p"]:
                s["change"] = ew_step(s["change"], float(p != s["last_p"]), self.change_alpha)
        s["last_ts"] = x.ts
        if x.seq is not None and x.seq >= 0:  # as in ObsBatch, a negative seq means none
            s["last_seq"] = float(x.seq)
        if e == e:
            s["last_e"], s["last_e_ts"] = e, x.ts
        if p == p:
            if not (p == s["last_p"] and abs(p) > self.stuck_min_w):
                s["run_start"] = x.ts
            s["last_p"] = p

    def scan(self, batch: ObsBatch, learn: BoolArray) -> Span:
        s, m = self._s, len(batch)
        ts, p, e = batch.ts, batch.power_w, batch.energy_wh
        learned0, (eff, streak) = int(s["learned"]), forced(learn, int(s["streak"]), self.relearn_after)
        ready: float | FloatArray = 1.0
        if learned0 < self.warmup:
            ready = (learned0 + counts(eff)[:-1] >= self.warmup).astype(np.float64)
        prev_ts = np.concatenate(((s["last_ts"],), ts))
        dt = ts - prev_ts[:-1]
        interval = ew_path(dt, eff & (dt > 0), self.interval_alpha, s["interval"])
        limit = self.gap_factor * interval[:-1]
        has_seq = batch.seq >= 0
        seq = batch.seq.astype(np.float64) if has_seq.all() else np.where(has_seq, batch.seq, NAN)
        prev_seq = previous(seq, has_seq, s["last_seq"])
        last_seq = prev_seq[:-1]
        # limit is NaN (no interval learned yet) or positive, so no division warns.
        late = np.where(dt < 0, -dt / self.skew_tolerance_s, np.where(dt > 0, dt / limit, 0.0))
        span = Span(
            np.where(late == late, late * ready, 0.0),
            _timing_kind(dt, limit, seq, last_seq),
            interval[:-1],
            np.full(m, -self.skew_tolerance_s),
            limit,
            dt,
        )
        implausible = (p > self.max_power_w) | (p < -self.max_export_w)  # infinities included
        if implausible.any():
            numbers = (NAN, -self.max_export_w, self.max_power_w, p)
            _take_better(span, np.where(implausible, FAULT * ready, 0.0), 2, numbers)
        has_e = ~np.isnan(e)
        prev_e, prev_e_ts = previous(e, has_e, s["last_e"]), previous(ts, has_e, s["last_e_ts"])
        low_e, dt_e = prev_e[:-1] - self.counter_tolerance_wh, ts - prev_e_ts[:-1]
        tol = self.counter_tolerance_wh
        high_e = np.where(dt_e > 0, prev_e[:-1] + (self.max_power_w * dt_e / 3600.0 + tol), NAN)
        reset = e < low_e
        if (reset | (e > high_e)).any():
            score = np.where(reset | (e > high_e), FAULT, 0.0) * ready
            _take_better(span, score, np.where(reset, 3, 4), (prev_e[:-1], low_e, high_e, e))
        if (seq <= last_seq).any():
            next_seq = last_seq + 1.0
            score = np.where(seq <= last_seq, FAULT * ready, 0.0)
            _take_better(span, score, np.where(seq == last_seq, 5, 6), (next_seq, next_seq, NAN, seq))
        has_p = ~np.isnan(p)
        prev_p = previous(p, has_p, s["last_p"])
        same = (p == prev_p[:-1]) & (np.abs(p) > self.stuck_min_w)
        run_start = previous(ts, has_p & ~same, s["run_start"])

        def change_path(change0: float = s["change"]) -> FloatArray:
            comparable = eff & has_p & ~np.isnan(prev_p[:-1])
            changed = (p != prev_p[:-1]).astype(np.float64)
            return ew_path(changed, comparable, self.change_alpha, change0)

        change = None
        run = np.where(same, ts - run_start[:-1], 0.0)
        if (run / self.stuck_s * ready > span.score).any():  # else no stuck score can win: skip the rate
            change = change_path()
            score = np.where(change[:-1] >= self.min_change_rate, run / self.stuck_s, 0.0) * ready
            _take_better(span, score, 7, (NAN, 0.0, self.stuck_s, run))

        def commit(k: int) -> None:
            s["learned"] = min(learned0 + int(np.count_nonzero(eff[:k])), self.warmup)
            s["streak"] = int(streak[k])
            s["last_ts"], s["last_seq"] = float(prev_ts[k]), float(prev_seq[k])
            s["last_e"], s["last_e_ts"] = float(prev_e[k]), float(prev_e_ts[k])
            s["last_p"], s["run_start"] = float(prev_p[k]), float(run_start[k])
            s["interval"] = float(interval[k])
            s["change"] = float((change if change is not None else change_path())[k])

        span.commit = commit
        return span

    def state_dict(self) -> State:
        return {k: to_json(v) for k, v in self._s.items()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._s = {k: from_json(state[k]) for k in self._s}
        self._s["learned"], self._s["streak"] = int(self._s["learned"]), int(self._s["streak"])

"""The streaming back-end tier: a fitted :class:`SeasonalModel` applied reading by reading.

:class:`SeasonalDetector` follows :class:`~vatio.detect.stream.StreamDetector`.
Its state per device is O(1): the current hour's accumulator (sum and count
of power), a ring of the last 24 hourly means, the forecast level and 168
small seasonal corrections, and the verdict of the last completed hour.

Judging happens when an hour completes, i.e. at the first reading of a later
hour; that reading and every further reading until the next completed hour
carry the completed hour's verdict (at most one hour late, like the batch
suite). Two components, the higher wins:

* ``level_high`` — the hour's mean above ``expected + z_limit × spread`` of
  its hour-of-week slot, ``expected = level + season[slot]``;
* ``baseload_increase`` — the always-on power of the last 24 hours (their
  second-lowest hourly mean, once 20 of them are known) above the fitted
  baseload by more than ``z_limit`` robust spreads.

A completed hour judged normal adapts the forecast, Holt-Winters style with
the error clipped to ``clip`` spreads: ``level += alpha·e`` and
``season[slot] += gamma·e``; an hour judged anomalous (``learn_one`` of the
reading that completed it, with ``anomalous=True``) adapts nothing. Without a
model the detector is warming up: it never scores above 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from vatio.detect.base import Threshold
from vatio.detect.seasonal_model import DAY_H, HOUR_S, WEEK_H, SeasonalModel, slot_of
from vatio.detect.stream import NAN, PROTECT, BatchVerdicts, Obs, ObsBatch, State, Verdict

NONE = Verdict(0.0, "none", NAN, NAN, NAN, NAN)
NO_HOUR = -1
MIN_RING_HOURS = 20


@dataclass(kw_only=True, eq=False)
class SeasonalDetector:
    """Hour-of-week, baseload and forecast-level checks of one device's fitted model.

    >>> from vatio.detect.seasonal_model import SeasonalModel
    >>> model = SeasonalModel(np.zeros(168), np.full(168, 30.0), 300.0, 250.0, 10.0)
    >>> det = SeasonalDetector(model=model)
    >>> for i in range(720):                      # two hours at 10 s, the second one at 1 kW
    ...     det.learn_one(Obs(3600.0 * 1000 + 10.0 * i, power_w=300.0 if i < 360 else 1000.0))
    >>> v = det.score_one(Obs(3600.0 * 1002, power_w=300.0))
    >>> v.kind, v.expected, v.high, v.observed, round(v.score, 2)
    ('level_high', 300.0, 480.0, 1000.0, 3.89)
    """

    name: str = "seasonal"
    model: SeasonalModel | None = None
    z_limit: float = 4.0
    floor_w: float = 20.0
    floor_frac: float = 0.15
    alpha: float = 0.01
    gamma: float = 0.05
    clip: float = 3.0
    kinds: ClassVar[tuple[str, ...]] = ("level_high", "baseload_increase")
    _hour: int = field(default=NO_HOUR, init=False, repr=False)
    _sum: float = field(default=0.0, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)
    _level: float = field(default=NAN, init=False, repr=False)
    _season_adj: np.ndarray = field(init=False, repr=False)
    _ring: np.ndarray = field(init=False, repr=False)
    _ring_hour: np.ndarray = field(init=False, repr=False)
    _last: Verdict = field(default=NONE, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.z_limit > 0 and self.floor_w > 0 and self.floor_frac >= 0 and self.clip > 0):
            raise ValueError("SeasonalDetector needs z_limit, floor_w and clip > 0, floor_frac >= 0")
        if not (0 <= self.alpha < 1 and 0 <= self.gamma < 1):
            raise ValueError("SeasonalDetector needs 0 <= alpha, gamma < 1")
        self._season_adj = np.zeros(WEEK_H)
        self._ring = np.full(DAY_H, NAN)
        self._ring_hour = np.full(DAY_H, NO_HOUR, dtype=np.int64)
        if self.model is not None:
            self._level = self.model.level_w

    @property
    def warmup(self) -> int:
        """The first reading cannot complete an hour; without a model, nothing ever scores."""
        return 1 if self.model is not None else 2**62

    # -- per reading ---------------------------------------------------------------------
    def score_one(self, x: Obs) -> Verdict:
        hour = _hour_of(x.ts)
        if self.model is None or hour is None:
            return NONE
        if hour > self._hour and self._count > 0:
            return self._judge(self._hour, self._sum / self._count)[0]
        return self._last

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        hour = _hour_of(x.ts)
        if hour is None:
            return
        if hour > self._hour:
            if self._count > 0 and self.model is not None:
                self._complete(self._hour, self._sum / self._count, anomalous)
            self._hour, self._sum, self._count = hour, 0.0, 0
        if hour == self._hour and math.isfinite(x.power_w):
            self._sum += x.power_w
            self._count += 1

    # -- the completed hour --------------------------------------------------------------
    def _judge(self, hour: int, mean_w: float) -> tuple[Verdict, float, float]:
        """The verdict on a completed hour, its clipped forecast error and spread (no state change)."""
        assert self.model is not None
        slot = slot_of(hour)
        expected = float(self._level + self.model.season_w[slot] + self._season_adj[slot])
        spread = max(float(self.model.spread_w[slot]), self.floor_w, self.floor_frac * abs(expected))
        band = self.z_limit * spread
        level = Verdict(max(mean_w - expected, 0.0) / band, "level_high", expected, expected - band, expected + band,
                        mean_w)  # fmt: skip
        low = self._daily_low(hour, mean_w)
        verdict = level
        if low == low:
            base = self.model.baseload_w
            base_band = self.z_limit * max(self.model.baseload_spread_w, 0.5 * self.floor_w, 0.1 * abs(base))
            score = max(low - base, 0.0) / base_band
            if score > level.score:
                verdict = Verdict(score, "baseload_increase", base, base - base_band, base + base_band, low)
        if verdict.score <= 0.0:
            verdict = verdict._replace(score=0.0, kind="none")
        error = min(max(mean_w - expected, -self.clip * spread), self.clip * spread)
        return verdict, error, spread

    def _daily_low(self, hour: int, mean_w: float) -> float:
        """Second-lowest hourly mean of the 24 hours ending with ``hour`` (NaN if fewer than 20 known)."""
        recent = self._ring[(self._ring_hour > hour - DAY_H) & (self._ring_hour != hour)]
        if len(recent) + 1 < MIN_RING_HOURS:
            return NAN
        values = np.sort(np.append(recent, mean_w))
        return float(values[1])

    def _complete(self, hour: int, mean_w: float, anomalous: bool | None, limit: float = math.inf) -> None:
        """Judge a completed hour and fold it in; ``anomalous=None`` decides by ``score >= limit``."""
        verdict, error, _ = self._judge(hour, mean_w)
        if not (verdict.score >= limit if anomalous is None else anomalous):
            slot = slot_of(hour)
            self._level += self.alpha * error
            self._season_adj[slot] += self.gamma * error
        self._ring[hour % DAY_H], self._ring_hour[hour % DAY_H] = mean_w, hour
        self._last = verdict

    # -- batch path ----------------------------------------------------------------------
    def score_batch(self, batch: ObsBatch, threshold: Threshold | None = PROTECT) -> BatchVerdicts:
        """Exactly the protected per-reading loop (see :mod:`vatio.detect.stream`), vectorised
        over readings; only completed hours (a few per batch) go through Python one by one."""
        n = len(batch)
        if n == 0:
            return _repeat([NONE], np.zeros(1, dtype=np.int64))
        finite_ts = np.isfinite(batch.ts)
        hours = np.floor(np.where(finite_ts, batch.ts, -1.0) / HOUR_S).astype(np.int64)
        current = np.maximum.accumulate(np.maximum(hours, self._hour))
        starts = np.flatnonzero(current > np.concatenate(([self._hour], current[:-1])))  # readings opening an hour
        adds = (hours == current) & finite_ts & np.isfinite(batch.power_w)
        bounds = np.concatenate(([0], starts, [n]))
        lengths = np.diff(bounds)
        # reduceat gives element i, not 0, for an empty segment: only the first can be empty.
        seg_sum = np.where(lengths > 0, np.add.reduceat(np.where(adds, batch.power_w, 0.0), bounds[:-1]), 0.0)
        seg_count = np.where(lengths > 0, np.add.reduceat(adds.astype(np.int64), bounds[:-1]), 0)
        limit = math.inf if threshold is None else threshold.value
        hour, total, count = self._hour, self._sum + float(seg_sum[0]), self._count + int(seg_count[0])
        verdicts = [self._last if self.model is not None else NONE]
        for k, start in enumerate(starts.tolist(), 1):
            if count > 0 and self.model is not None:
                self._complete(hour, total / count, None, limit)
            verdicts.append(self._last if self.model is not None else NONE)
            hour, total, count = int(current[start]), float(seg_sum[k]), int(seg_count[k])
        self._hour, self._sum, self._count = hour, total, count
        out = _repeat(verdicts, lengths)
        if not finite_ts.all():
            for name in ("expected", "low", "high", "observed"):
                getattr(out, name)[~finite_ts] = NAN
            out.score[~finite_ts], out.kind[~finite_ts] = 0.0, "none"
        return out

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> State:
        return {
            "hour": self._hour, "sum": self._sum, "count": self._count, "level": _nan_list(np.array([self._level]))[0],
            "season_adj": [round(float(v), 6) for v in self._season_adj], "ring": _nan_list(self._ring),
            "ring_hour": [int(h) for h in self._ring_hour], "last_kind": self._last.kind,
            "last": _nan_list(np.array(self._last[:1] + self._last[2:])),
        }  # fmt: skip

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._hour, self._sum, self._count = int(state["hour"]), float(state["sum"]), int(state["count"])
        self._level = NAN if state["level"] is None else float(state["level"])
        self._season_adj = np.array(state["season_adj"], dtype=np.float64)
        self._ring = np.array([NAN if v is None else v for v in state["ring"]], dtype=np.float64)
        self._ring_hour = np.array(state["ring_hour"], dtype=np.int64)
        score, *numbers = (NAN if v is None else float(v) for v in state["last"])
        self._last = Verdict(score, str(state["last_kind"]), *numbers)


def _hour_of(ts: float) -> int | None:
    return int(ts // HOUR_S) if math.isfinite(ts) else None


def _nan_list(values: np.ndarray) -> list[float | None]:
    return [None if v != v else float(v) for v in values.tolist()]


def _repeat(verdicts: list[Verdict], lengths: np.ndarray) -> BatchVerdicts:
    columns = list(zip(*verdicts, strict=True))
    numbers = [np.repeat(np.array(c, dtype=np.float64), lengths) for i, c in enumerate(columns) if i != 1]
    kind = np.repeat(np.array(columns[1], dtype=object), lengths)
    return BatchVerdicts(numbers[0], kind, *numbers[1:])

"""The detector protocols: scoring apart from deciding, causal, per device.

A detector *scores* (higher = more anomalous); a :class:`Threshold` *decides*.
:class:`SeriesDetector` is the vectorised batch path over one device's regular
series, used by ``vatio score`` and ``vatio eval``: it must be causal — the
score of row ``i`` depends on rows ``0..i`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(slots=True)
class DeviceSeries:
    """One device's regular series.

    ``ts`` are epoch seconds of interval starts, strictly increasing, on a grid
    of ``step_s`` (gaps allowed: missing intervals are absent rows or NaN);
    ``power_w`` is the mean power over each interval (NaN when unknown);
    ``energy_wh`` the energy of each interval as the source reported it
    (from counter differences it can be negative or huge after a counter
    reset), or ``None``. ``temperature_c`` is an optional outdoor temperature
    aligned with ``ts``.
    """

    device_id: str
    ts: IntArray
    power_w: FloatArray
    step_s: int
    energy_wh: FloatArray | None = None
    temperature_c: FloatArray | None = None

    def __post_init__(self) -> None:
        if len(self.ts) != len(self.power_w):
            raise ValueError("ts and power_w differ in length")
        if self.step_s <= 0:
            raise ValueError("step_s must be positive")

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(slots=True)
class SeriesScores:
    """Per-row output of a detector over a :class:`DeviceSeries`.

    ``kind`` names the detector or anomaly type responsible for each row's
    score; ``expected_w``/``low_w``/``high_w`` are the expected value and band,
    ``since`` the epoch second the current deviation started (0 if none) —
    the numbers every explanation is made of.
    """

    score: FloatArray
    kind: npt.NDArray[np.object_]
    expected_w: FloatArray
    low_w: FloatArray
    high_w: FloatArray
    since: IntArray
    observed_w: FloatArray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def empty(cls, n: int, kind: str) -> SeriesScores:
        nan = np.full(n, np.nan)
        return cls(
            score=np.zeros(n),
            kind=np.full(n, kind, dtype=object),
            expected_w=nan.copy(),
            low_w=nan.copy(),
            high_w=nan.copy(),
            since=np.zeros(n, dtype=np.int64),
            observed_w=nan.copy(),
        )


class SeriesDetector(Protocol):
    """Scores a whole device series causally; higher score = more anomalous."""

    name: str

    def score_series(self, series: DeviceSeries) -> SeriesScores: ...


@dataclass(frozen=True, slots=True)
class Threshold:
    """Turns scores into decisions: anomalous when ``score >= value``.

    >>> Threshold(3.0).decide(np.array([1.0, 3.0, 7.5])).tolist()
    [False, True, True]
    """

    value: float

    def decide(self, score: FloatArray) -> npt.NDArray[np.bool_]:
        return np.asarray(score >= self.value)

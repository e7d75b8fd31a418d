"""The per-reading detector protocol of the edge tier, and its exact batch engine.

A :class:`StreamDetector` keeps O(1) state per device: ``score_one`` judges a
reading without changing anything (higher = more anomalous, 1.0 = anomalous by
the detector's own rule), ``learn_one`` folds it in. A reading judged anomalous
is learned with ``anomalous=True``: bookkeeping (last timestamp, sequence
number, counter) moves on, baselines do not.

``score_batch(batch, threshold)`` does, over one device's readings in time
order, exactly what this loop does (River's ``protect_anomaly_detector``)::

    for x in batch:
        v = det.score_one(x)
        det.learn_one(x, anomalous=bool(threshold.decide(v.score)))

— it scores *and* learns. Whether reading ``i`` is learned depends on its
score, which depends on what was learned before it, so the threshold is part
of the result; ``threshold=None`` learns every reading. (After a long run of
anomalous readings a detector may learn them anyway, in both paths alike:
``relearn_after``, :func:`vatio.detect.edge_stats.forced`.)

The engine (:func:`run_protected`) vectorises that feedback loop by guessing
and checking. It guesses which readings of a window will be judged anomalous
(at first: none), evaluates the window in one vectorised pass under that
guess (each detector's ``scan``) and compares the decisions with the guess.
Up to the first reading where they differ the guess was right, so the scores
are what the loop gives (each depends on earlier readings only): that prefix
is committed, this pass's decisions become the next guess, and the next pass
starts at the first wrong guess. Results equal the loop's up to rounding
(~1e-13 relative, see :mod:`vatio.detect.edge_stats`); a score within that of
the threshold could in principle be decided differently, a measure-zero event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from vatio.detect.base import FloatArray, IntArray, Threshold
from vatio.model.reading import Reading

NAN = math.nan
#: ``ObsBatch.seq`` value of a reading without a sequence number.
SEQ_MISSING = -1
#: The default decision that keeps anomalies out of baselines.
PROTECT = Threshold(1.0)
State = dict[str, Any]
_FIELDS = ("score", "kind", "expected", "low", "high", "observed")
_ONE_BY_ONE = 16  # readings through the per-reading path where an anomaly starts


class Obs(NamedTuple):
    """One reading as the edge tier sees it: epoch seconds and floats, NaN = not measured.

    >>> Obs(ts=1_790_000_000.0, seq=7, power_w=412.0).voltage_v
    nan
    """

    ts: float
    seq: int | None = None
    power_w: float = NAN
    energy_wh: float = NAN
    voltage_v: float = NAN
    frequency_hz: float = NAN

    @classmethod
    def from_reading(cls, r: Reading) -> Obs:
        values = (r.power_w, r.energy_wh, r.voltage_v, r.frequency_hz)
        return cls(r.ts.timestamp(), r.seq, *(NAN if v is None else float(v) for v in values))


@dataclass(frozen=True, slots=True)
class ObsBatch:
    """One device's readings in time order, as arrays (``seq`` < 0 = missing).

    >>> b = ObsBatch.from_obs([Obs(0.0, 1, 100.0), Obs(10.0, None, 120.0)])
    >>> len(b), b.seq.tolist(), b[1]
    (2, [1, -1], Obs(ts=10.0, seq=None, power_w=120.0, energy_wh=nan, voltage_v=nan, frequency_hz=nan))
    """

    ts: FloatArray
    seq: IntArray
    power_w: FloatArray
    energy_wh: FloatArray
    voltage_v: FloatArray
    frequency_hz: FloatArray

    def __post_init__(self) -> None:
        if any(len(a) != len(self.ts) for a in self._channels()):
            raise ValueError("ObsBatch arrays differ in length")

    def _channels(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        return self.power_w, self.energy_wh, self.voltage_v, self.frequency_hz

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, i: int) -> Obs:
        seq = int(self.seq[i])
        return Obs(float(self.ts[i]), None if seq < 0 else seq, *(float(a[i]) for a in self._channels()))

    def __iter__(self) -> Iterator[Obs]:
        return (self[i] for i in range(len(self)))

    def part(self, start: int, stop: int) -> ObsBatch:
        """Readings ``start:stop`` (views, no copy)."""
        return ObsBatch(self.ts[start:stop], self.seq[start:stop], *(a[start:stop] for a in self._channels()))

    @classmethod
    def from_arrays(
        cls, ts: npt.ArrayLike, *, seq: npt.ArrayLike | None = None, **channels: npt.ArrayLike | None
    ) -> ObsBatch:
        """A batch from the channels there are (``power_w=``, ``energy_wh=``, ``voltage_v=``,
        ``frequency_hz=``); absent ones become NaN, an absent ``seq`` missing."""
        t = np.asarray(ts, dtype=np.float64)
        if unknown := set(channels) - set(Obs._fields[2:]):
            raise TypeError(f"unknown channels: {sorted(unknown)}")
        s = np.full(len(t), SEQ_MISSING, dtype=np.int64) if seq is None else np.asarray(seq, dtype=np.int64)
        values = [channels.get(name) for name in Obs._fields[2:]]
        return cls(t, s, *(np.full(len(t), NAN) if v is None else np.asarray(v, dtype=np.float64) for v in values))

    @classmethod
    def from_obs(cls, obs: Sequence[Obs]) -> ObsBatch:
        columns: list[Sequence[Any]] = [list(c) for c in zip(*obs, strict=True)] if obs else [[]] * 6
        seq = [SEQ_MISSING if q is None else q for q in columns[1]]
        return cls.from_arrays(columns[0], seq=seq, **dict(zip(Obs._fields[2:], columns[2:], strict=True)))

    @classmethod
    def from_readings(cls, readings: Sequence[Reading]) -> ObsBatch:
        return cls.from_obs([Obs.from_reading(r) for r in readings])


class Verdict(NamedTuple):
    """A score and the numbers behind it, in the unit of the checked quantity.

    ``kind`` names what was checked (``"none"`` when the score is 0);
    ``observed`` is outside ``[low, high]`` exactly when ``score >= 1``.

    >>> Verdict(2.1, "voltage_sag", 230.0, 207.0, 253.0, 182.7).observed < 207.0
    True
    """

    score: float
    kind: str
    expected: float
    low: float
    high: float
    observed: float


@dataclass(slots=True)
class BatchVerdicts:
    """:class:`Verdict` fields as arrays, one row per reading.

    >>> v = BatchVerdicts(np.array([0.0]), np.array(["none"], dtype=object), *np.full((4, 1), np.nan))
    >>> v[0].kind, len(v)
    ('none', 1)
    """

    score: FloatArray
    kind: npt.NDArray[np.object_]
    expected: FloatArray
    low: FloatArray
    high: FloatArray
    observed: FloatArray

    def __len__(self) -> int:
        return len(self.score)

    def __getitem__(self, i: int) -> Verdict:
        score, kind, *numbers = (getattr(self, f)[i] for f in _FIELDS)
        return Verdict(float(score), str(kind), *(float(v) for v in numbers))


class StreamDetector(Protocol):
    """Per-reading detector with O(1) per-device state. Higher score = more anomalous."""

    @property
    def name(self) -> str: ...

    @property
    def warmup(self) -> int:
        """Readings learned before the detector may score above 0."""

    def score_one(self, x: Obs) -> Verdict:
        """Judge ``x`` against the state; must not change the state."""

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        """Fold ``x`` into the state; with ``anomalous`` only bookkeeping, no baseline."""

    def score_batch(self, batch: ObsBatch, threshold: Threshold | None = PROTECT) -> BatchVerdicts:
        """Score and learn a batch exactly as the protected per-reading loop (module docstring)."""

    def state_dict(self) -> State:
        """The state as a small JSON-able dict."""

    def load_state(self, state: Mapping[str, Any]) -> None: ...


@dataclass(slots=True)
class Span:
    """What a detector's ``scan`` says about a stretch of readings under one guess: ``kind``
    holds indices into the detector's ``kinds``, ``commit(k)`` moves its state past the first ``k``.

    >>> Span(np.array([0.0, 2.5]), np.array([0, 1]), *np.zeros((4, 2))).verdicts(("a", "b")).kind.tolist()
    ['none', 'b']
    """

    score: FloatArray
    kind: npt.NDArray[np.intp]
    expected: FloatArray
    low: FloatArray
    high: FloatArray
    observed: FloatArray
    commit: Callable[[int], None] = lambda k: None

    @classmethod
    def empty(cls, n: int) -> Span:
        """Uninitialised arrays for ``n`` readings, to be filled."""
        return cls(np.empty(n), np.empty(n, dtype=np.intp), np.empty(n), np.empty(n), np.empty(n), np.empty(n))

    def verdicts(self, kinds: tuple[str, ...]) -> BatchVerdicts:
        names = np.array([*kinds, "none"], dtype=object)
        codes = np.where(self.score > 0.0, self.kind, len(kinds))
        return BatchVerdicts(self.score, names[codes], self.expected, self.low, self.high, self.observed)


class ScanDetector(StreamDetector, Protocol):
    """A stream detector with a vectorised path that :func:`run_protected` can drive."""

    kinds: ClassVar[tuple[str, ...]]

    def scan(self, batch: ObsBatch, learn: npt.NDArray[np.bool_]) -> Span:
        """Judge ``batch`` from the current state supposing reading ``i`` is learned as
        normal when ``learn[i]`` and as anomalous otherwise; must not change the state."""


def run_protected(
    detectors: Sequence[ScanDetector], batch: ObsBatch, threshold: Threshold | None, *, window: int = 4096
) -> BatchVerdicts:
    """Score and learn ``batch`` with every detector, protected by the fused score: the verdict
    of the first detector with the highest score (in ``detectors`` order), as in :class:`EdgeSuite`."""
    run = _Protected(detectors, batch, math.inf if threshold is None else threshold.value, window)
    run.run()
    return run.out.verdicts(run.names)


class _Protected:
    """The guess-and-check loop of :func:`run_protected` (see the module docstring).

    Where an anomaly starts, readings go one at a time through the per-reading
    path until one is normal again: a spike costs a few of those rather than two
    more vectorised passes. An anomaly that outlasts that, or its guess, is
    guessed to go on for a stretch that doubles each time it falls short.
    """

    def __init__(self, detectors: Sequence[ScanDetector], batch: ObsBatch, limit: float, window: int) -> None:
        self.detectors, self.batch, self.limit, self.window = detectors, batch, limit, window
        self.out = Span.empty(len(batch))
        self.guess = np.ones(len(batch), dtype=np.bool_)  # True: learned as normal
        self.names = tuple(kind for d in detectors for kind in d.kinds)  # kind codes: offset + index
        self.offsets = [sum(len(d.kinds) for d in detectors[:i]) for i in range(len(detectors))]
        self.codes = {(i, k): self.offsets[i] + j for i, d in enumerate(detectors) for j, k in enumerate(d.kinds)}
        self.pos, self.extend, self.in_anomaly = 0, _ONE_BY_ONE, False

    def run(self) -> None:
        n, stalled, span = len(self.batch), -1, self.window
        while self.pos < n:
            start = self.pos
            normal = self.vectorised(min(n, self.pos + span))
            span = self.window
            if normal is None:
                continue
            if normal:
                # Guessed anomalous, found normal: the next pass, with the guess fixed, moves on.
                if start == self.pos == stalled:
                    raise RuntimeError("a detector's scan is not causal: its first reading depends on the guess")
                stalled, self.extend = self.pos, _ONE_BY_ONE
                continue
            if not self.in_anomaly and self.one_by_one():
                continue
            # An anomaly outlasting its guess probably goes on: guess it longer, doubling.
            self.guess[self.pos : self.pos + self.extend] = False
            span, self.extend = 2 * self.extend, 2 * self.extend

    def vectorised(self, stop: int) -> bool | None:
        """One pass; commits the readings guessed right. Returns the decision of the first
        wrongly guessed reading, or None when all were right."""
        pos, learn = self.pos, self.guess[self.pos : stop]
        spans = [d.scan(self.batch.part(pos, stop), learn) for d in self.detectors]
        fused = spans[0].score
        for s in spans[1:]:
            fused = np.maximum(fused, s.score)
        normal = fused < self.limit
        wrong = np.flatnonzero(normal != learn)
        k = int(wrong[0]) if wrong.size else stop - pos
        if k:
            self.fuse(spans, k)
            for s in spans:
                s.commit(k)
            self.pos, self.in_anomaly = pos + k, not learn[k - 1]
        if not wrong.size:
            return None
        self.guess[self.pos : stop] = normal[k:]
        return bool(normal[k])

    def fuse(self, spans: list[Span], k: int) -> None:
        """Write the first ``k`` readings' winning verdicts (the first highest score) at ``self.pos``."""
        at, winners = slice(self.pos, self.pos + k), []
        best = spans[0].score[:k]
        for s in spans[1:]:
            winners.append(s.score[:k] > best)
            best = np.maximum(best, s.score[:k])
        self.out.score[at] = best
        for name in _FIELDS[1:]:
            shift = name == "kind"
            fused = spans[0].kind[:k] if shift else getattr(spans[0], name)[:k]
            for s, won, off in zip(spans[1:], winners, self.offsets[1:], strict=True):
                fused = np.where(won, getattr(s, name)[:k] + off if shift else getattr(s, name)[:k], fused)
            getattr(self.out, name)[at] = fused

    def one_by_one(self) -> bool:
        """Readings through the per-reading path until one is normal; False if none in a while."""
        out, stop = self.out, min(len(self.batch), self.pos + _ONE_BY_ONE)
        while self.pos < stop:
            x, i = self.batch[self.pos], self.pos
            verdicts = [d.score_one(x) for d in self.detectors]
            best = max(range(len(verdicts)), key=lambda j: verdicts[j].score)  # the first of the highest
            v = verdicts[best]
            anomalous = v.score >= self.limit
            out.kind[i] = self.codes.get((best, v.kind), self.offsets[best])
            for name in ("score", *_FIELDS[2:]):
                getattr(out, name)[i] = getattr(v, name)
            for d in self.detectors:
                d.learn_one(x, anomalous=anomalous)
            self.pos, self.in_anomaly = i + 1, anomalous
            if not anomalous:
                return True
        return self.pos == len(self.batch)


def _edge_detectors() -> tuple[ScanDetector, ...]:
    from vatio.detect.edge import edge_detectors  # the suite knows the protocol, not the reverse

    return edge_detectors()


@dataclass(kw_only=True, eq=False)
class EdgeSuite:
    """The edge detectors fused: the highest score wins and names the kind.

    A reading one detector finds anomalous is learned by none of them
    (``learn_one`` passes ``anomalous`` to all), so an over-power reading
    does not teach the z-score what "normal" is.

    >>> suite = EdgeSuite()  # Limits, DataQuality, RobustZ, EwmaChart, Cusum, RateOfChange
    >>> for i in range(200):
    ...     suite.learn_one(Obs(10.0 * i, i, 300.0 + i % 7, 1000.0 + i * 0.83, 231.0, 50.0))
    >>> v = suite.score_one(Obs(2000.0, 200, 305.0, 1166.0, 191.0, 50.0))
    >>> v.kind, v.low, v.observed
    ('voltage_sag', 207.0, 191.0)
    """

    name: str = "edge"
    detectors: tuple[ScanDetector, ...] = field(default_factory=_edge_detectors)

    def __post_init__(self) -> None:
        if not self.detectors or len({d.name for d in self.detectors}) != len(self.detectors):
            raise ValueError("EdgeSuite needs one or more detectors with distinct names")

    @property
    def warmup(self) -> int:
        return min(d.warmup for d in self.detectors)

    def detector(self, name: str) -> ScanDetector:
        return next(d for d in self.detectors if d.name == name)

    def score_one(self, x: Obs) -> Verdict:
        return max((d.score_one(x) for d in self.detectors), key=lambda v: v.score)  # the first of the highest

    def learn_one(self, x: Obs, *, anomalous: bool = False) -> None:
        for d in self.detectors:
            d.learn_one(x, anomalous=anomalous)

    def score_batch(self, batch: ObsBatch, threshold: Threshold | None = PROTECT) -> BatchVerdicts:
        return run_protected(self.detectors, batch, threshold)

    def state_dict(self) -> State:
        return {d.name: d.state_dict() for d in self.detectors}

    def load_state(self, state: Mapping[str, Any]) -> None:
        for d in self.detectors:
            d.load_state(state[d.name])

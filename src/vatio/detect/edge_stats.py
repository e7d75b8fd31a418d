"""The numeric machinery of the edge detectors, each piece in a per-reading and an array form.

An edge detector must give the same numbers reading by reading as over a
whole array, so every kernel comes twice: a scalar *step* for ``learn_one``
and a *path* for ``scan`` that returns the state before each reading and
after the last (length ``n + 1``), so a batch can be committed after any
prefix. Learning is gated by a boolean mask: a reading outside the mask
leaves the statistic as it was, which is how anomalies stay out of
baselines and how missing values are skipped.

The array forms use only numpy. They agree with the steps to rounding
(about 1e-13 relative), not bit for bit: an exponential filter is evaluated
in closed form over blocks, a reflected walk through cumulative sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from vatio.detect.base import FloatArray
from vatio.detect.stream import State

BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]
Summary = Callable[[FloatArray], tuple[FloatArray, FloatArray]]  # (blocks, block) -> middle, spread
Aggregate = Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]]  # windows -> location, scale
MAD_TO_SD = 1.4826
NAN = math.nan


def ew_step(mean: float, x: float, alpha: float) -> float:
    """One exponentially weighted mean update; the first value seeds the mean."""
    return x if math.isnan(mean) else alpha * x + (1.0 - alpha) * mean


def ew_var_step(
    mean: float, var: float, weight: float, x: float, alpha: float, var_alpha: float
) -> tuple[float, float, float]:
    """Exponentially weighted mean (``alpha``) and mean squared innovation (``var_alpha``).

    The innovation is the distance from the mean *before* the reading; ``weight``
    (``1 - (1 - var_alpha)**n``) makes ``var / weight`` unbiased from the second
    reading on. The first value seeds the mean.
    """
    if math.isnan(mean):
        return x, 0.0, 0.0
    delta = x - mean
    return (
        alpha * x + (1.0 - alpha) * mean,
        var_alpha * (delta * delta) + (1.0 - var_alpha) * var,
        var_alpha + (1.0 - var_alpha) * weight,
    )


def ew_std(var: float, weight: float, floor: float) -> float:
    """The standard deviation an :func:`ew_var_step` state implies, at least ``floor`` (NaN: none yet)."""
    return max(math.sqrt(var / weight), floor) if weight > 0 else NAN


def clamp_step(s: float, d: float, cap: float) -> float:
    """One step of a walk held in ``[0, cap]`` (a CUSUM with a ceiling)."""
    return min(cap, max(0.0, s + d))


@lru_cache(maxsize=64)
def _powers(decay: float) -> tuple[FloatArray, FloatArray]:
    # Blocks short enough that decay**-i stays far from overflow.
    block = int(min(4096.0, max(1.0, 300.0 / -math.log(decay))))
    i = np.arange(block, dtype=np.float64)
    return decay**i, decay**-i


def ew_filter(x: FloatArray, alpha: float, y0: float) -> FloatArray:
    """``y[i] = alpha * x[i] + (1 - alpha) * y[i - 1]`` with ``y[-1] = y0``, in closed form per block."""
    decay = 1.0 - alpha
    up, down = _powers(decay)
    block = len(up)
    out = np.empty(len(x))
    carry = y0
    for start in range(0, len(x), block):
        part = x[start : start + block]
        n = len(part)
        out[start : start + n] = up[:n] * (decay * carry + np.cumsum(alpha * part * down[:n]))
        carry = float(out[start + n - 1])
    return out


def counts(mask: BoolArray) -> IndexArray:
    """How many ``mask`` readings come before each reading, and in all (length ``n + 1``)."""
    out = np.zeros(len(mask) + 1, dtype=np.intp)
    np.cumsum(mask, out=out[1:])
    return out


def ew_path(x: FloatArray, learn: BoolArray, alpha: float, mean0: float) -> FloatArray:
    """:func:`ew_step` over ``x[learn]``: the mean before each reading and after the last."""
    every = bool(learn.all())
    xs = x if every else x[learn]
    if len(xs) == 0:
        return np.full(len(x) + 1, mean0)
    means = np.empty(len(xs) + 1)
    means[0] = mean0
    if math.isnan(mean0):
        means[1] = xs[0]
        means[2:] = ew_filter(xs[1:], alpha, float(xs[0]))
    else:
        means[1:] = ew_filter(xs, alpha, mean0)
    return means if every else means[counts(learn)]


def ew_var_path(
    x: FloatArray, learn: BoolArray, alpha: float, var_alpha: float, start: tuple[float, float, float]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`ew_var_step` over ``x[learn]`` from ``start`` (mean, var, weight): each before
    every reading and after the last."""
    every = bool(learn.all())
    xs = x if every else x[learn]
    if len(xs) == 0:
        return tuple(np.full(len(x) + 1, v) for v in start)  # type: ignore[return-value]
    paths = np.empty((3, len(xs) + 1))
    paths[:, 0] = start
    first = 0
    if math.isnan(start[0]):
        paths[:, 1] = xs[0], 0.0, 0.0
        first = 1
    if len(xs) > first:
        means, variances, weights = paths
        means[first + 1 :] = ew_filter(xs[first:], alpha, float(means[first]))
        delta = xs[first:] - means[first:-1]
        variances[first + 1 :] = ew_filter(delta * delta, var_alpha, float(variances[first]))
        up, j = _powers(1.0 - var_alpha)[0], len(xs) - first  # weight after j more: 1 - (1 - w) * decay**j
        decays = up[1 : j + 1] if j < len(up) else (1.0 - var_alpha) ** np.arange(1, j + 1)
        weights[first + 1 :] = 1.0 - (1.0 - weights[first]) * decays
    if not every:
        paths = paths[:, counts(learn)]
    return paths[0], paths[1], paths[2]


def ew_std_path(var: FloatArray, weight: FloatArray, floor: float) -> FloatArray:
    """:func:`ew_std` of each element."""
    ratio = np.divide(var, weight, out=np.full(len(var), NAN), where=weight > 0)
    return np.where(weight > 0, np.maximum(np.sqrt(ratio), floor), NAN)


def _reflected(d: FloatArray, start: float) -> FloatArray:
    """Lindley's walk ``w[i] = max(0, w[i-1] + d[i])`` from ``w[-1] = start``, without a loop."""
    total = np.cumsum(d)
    return total - np.minimum(np.minimum.accumulate(total), -start)


def clamped_walk(d: FloatArray, s0: float, cap: float) -> FloatArray:
    """:func:`clamp_step` over ``d`` from ``s0``: the walk after each step.

    The walk is held at 0 or at ``cap``, one at a time; a phase lasts until the
    other bound is reached (a full traversal of ``[0, cap]``). After a switch a
    phase looks ahead a window doubling while no switch comes.
    """
    n = len(d)
    out = np.empty(n)
    pos, s, at_floor, ahead = 0, s0, True, n
    while pos < n:
        part = d[pos : pos + ahead]
        if at_floor:
            walk = _reflected(part, s)
            broken = np.flatnonzero(walk > cap)
        else:
            walk = cap - _reflected(-part, cap - s)
            broken = np.flatnonzero(walk < 0.0)
        if broken.size == 0:
            out[pos : pos + len(part)] = walk
            pos, s, ahead = pos + len(part), float(walk[-1]), 2 * ahead
            continue
        end = int(broken[0])
        out[pos : pos + end] = walk[:end]
        s = cap if at_floor else 0.0
        out[pos + end] = s
        pos, at_floor, ahead = pos + end + 1, not at_floor, 128
    return out


def prev_index(valid: BoolArray) -> IndexArray:
    """Index of the last ``valid`` reading before each reading and after all (-1: none)."""
    idx = np.where(valid, np.arange(len(valid)), -1)
    out = np.empty(len(valid) + 1, dtype=np.intp)
    out[0] = -1
    np.maximum.accumulate(idx, out=out[1:])
    return out


def previous(values: npt.NDArray[np.generic], valid: BoolArray, initial: float) -> FloatArray:
    """The last ``valid`` value before each reading and after all; ``initial`` before the first."""
    if valid.all():
        out = np.empty(len(values) + 1)
        out[0], out[1:] = initial, values
        return out
    j = prev_index(valid)
    return np.where(j >= 0, values[j], initial)


def median_rows(a: FloatArray) -> FloatArray:
    """Median of each row by sorting (faster than ``np.median`` for short rows); the middle
    pair is averaged as ``(a + b) / 2`` here and in :func:`_median`, so both give the same bits."""
    ordered = np.sort(a, axis=1)
    half = a.shape[1] // 2
    if a.shape[1] % 2:
        return ordered[:, half]
    return (ordered[:, half - 1] + ordered[:, half]) / 2


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def median_mad(blocks: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per block: median and median absolute deviation about it."""
    mid = median_rows(blocks)
    return mid, median_rows(np.abs(blocks - mid[:, None]))


def robust_location(mids: FloatArray, spreads: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Median of block medians; scale from the typical within-block MAD and the spread between
    blocks (``sqrt(a*a + b*b)``, not ``hypot``: correctly rounded, so vectorised or not, same bits)."""
    loc = median_rows(mids)
    between = median_rows(np.abs(mids - loc[:, None]))
    within = median_rows(spreads)
    return loc, MAD_TO_SD * np.sqrt(within * within + between * between)


def robust_location_small(mids: list[float], spreads: list[float]) -> tuple[float, float]:
    """:func:`robust_location` of one ring that is still filling, in plain Python (fast for a few)."""
    loc = _median(mids)
    between = _median([abs(m - loc) for m in mids])
    within = _median(spreads)
    return loc, MAD_TO_SD * math.sqrt(within * within + between * between)


def block_max(blocks: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per block: the largest value (spread unused)."""
    return np.max(blocks, axis=1), np.zeros(len(blocks))


def typical_max(mids: FloatArray, spreads: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Median of block maxima: the largest value a block typically holds."""
    return median_rows(mids), np.zeros(len(mids))


def typical_max_small(mids: list[float], spreads: list[float]) -> tuple[float, float]:
    """:func:`typical_max` of one ring that is still filling."""
    return _median(mids), 0.0


@dataclass(eq=False)
class Remedian:
    """A robust running location in O(1) memory: statistics of the last ``size`` blocks.

    Learned values fill a block of ``block``; a full block is summarised
    (e.g. median and MAD) and kept in a ring of the last ``size`` summaries,
    and the location/scale are aggregated over the ring (after Rousseeuw and
    Bassett's remedian). Memory: ``block - 1`` values and ``2 * size`` numbers.
    While the ring fills, ``aggregate_small`` does the same in plain Python
    (cheaper for a few numbers); both paths use the same function per case.

    >>> r = Remedian(block=3, size=4)
    >>> for v in [1.0, 2.0, 9.0, 2.0, 3.0, 2.0, 100.0]:
    ...     r.push(v)
    >>> r.loc, r.partial
    (2.0, [100.0])
    """

    block: int
    size: int
    summary: Summary = median_mad
    aggregate: Aggregate = robust_location
    aggregate_small: Callable[[list[float], list[float]], tuple[float, float]] = robust_location_small
    partial: list[float] = field(default_factory=list)
    mids: list[float] = field(default_factory=list)
    spreads: list[float] = field(default_factory=list)
    loc: float = math.nan
    scale: float = math.nan

    def push(self, value: float) -> None:
        self.partial.append(value)
        if len(self.partial) < self.block:
            return
        mid, spread = self.summary(np.array([self.partial]))
        self.partial = []
        self.mids = [*self.mids, float(mid[0])][-self.size :]
        self.spreads = [*self.spreads, float(spread[0])][-self.size :]
        self._locate()

    def _locate(self) -> None:
        if len(self.mids) < self.size:
            self.loc, self.scale = self.aggregate_small(self.mids, self.spreads) if self.mids else (NAN, NAN)
            return
        loc, scale = self.aggregate(np.array([self.mids]), np.array([self.spreads]))
        self.loc, self.scale = float(loc[0]), float(scale[0])

    def path(self, values: FloatArray, learn: BoolArray) -> tuple[FloatArray, FloatArray, Callable[[int], None]]:
        """Location and scale before each reading as :meth:`push` over ``values[learn]`` would give them,
        and a function that commits the state after the first ``k`` readings."""
        p0, r0 = len(self.partial), len(self.mids)
        pending = np.concatenate((np.asarray(self.partial, dtype=np.float64), values[learn]))
        used = p0 + counts(learn)
        done = used // self.block
        nb = len(pending) // self.block
        mids, spreads = self.summary(pending[: nb * self.block].reshape(nb, self.block))
        ring_mids = np.concatenate((np.asarray(self.mids, dtype=np.float64), mids))
        ring_spreads = np.concatenate((np.asarray(self.spreads, dtype=np.float64), spreads))
        locs, scales = np.empty(nb + 1), np.empty(nb + 1)
        locs[0], scales[0] = self.loc, self.scale
        full_from = min(nb, max(0, self.size - r0 - 1))
        if full_from:  # the ring is still filling: once in a device's life
            mids_list, spreads_list = ring_mids[: r0 + full_from].tolist(), ring_spreads[: r0 + full_from].tolist()
            for j in range(full_from):
                locs[j + 1], scales[j + 1] = self.aggregate_small(mids_list[: r0 + j + 1], spreads_list[: r0 + j + 1])
        if nb > full_from:
            first = r0 + full_from + 1 - self.size  # the window after block j ends at r0 + j + 1
            windows = np.arange(first, r0 + nb + 1 - self.size)[:, None] + np.arange(self.size)
            loc, scale = self.aggregate(ring_mids[windows], ring_spreads[windows])
            locs[full_from + 1 :], scales[full_from + 1 :] = loc, scale

        def commit(k: int) -> None:
            blocks = int(done[k])
            ring_end = r0 + blocks
            self.partial = pending[blocks * self.block : int(used[k])].tolist()
            self.mids = ring_mids[max(0, ring_end - self.size) : ring_end].tolist()
            self.spreads = ring_spreads[max(0, ring_end - self.size) : ring_end].tolist()
            self.loc, self.scale = float(locs[blocks]), float(scales[blocks])

        return locs[done[:-1]], scales[done[:-1]], commit

    def state_dict(self) -> State:
        """The values and the ring; location and scale follow from them."""
        return {"partial": list(self.partial), "mids": list(self.mids), "spreads": list(self.spreads)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.partial, self.mids, self.spreads = ([float(v) for v in state[k]] for k in ("partial", "mids", "spreads"))
        self._locate()


def forced(learn: BoolArray, streak0: int, relearn_after: int | None) -> tuple[BoolArray, IndexArray]:
    """Readings learned although judged anomalous, and the anomalous streak before each reading and after all.

    After ``relearn_after`` consecutive readings judged anomalous (``streak0``
    of them before this stretch) a detector learns the next ones anyway, so a
    lasting change of level becomes the new normal instead of an endless
    alarm. Scalar form: :func:`force_step`.
    """
    n = len(learn)
    if learn.all():
        streak = np.zeros(n + 1, dtype=np.intp)
        streak[0] = streak0
        return learn, streak
    j = prev_index(learn)
    idx = np.arange(n + 1)
    streak = np.where(j >= 0, idx - 1 - j, streak0 + idx)
    if relearn_after is None:
        return learn, streak
    return learn | (streak[:-1] >= relearn_after), streak


def force_step(streak: int, relearn_after: int | None, anomalous: bool) -> tuple[bool, int]:
    """Whether to learn a reading, and the streak after it (see :func:`forced`)."""
    if not anomalous:
        return True, 0
    return relearn_after is not None and streak >= relearn_after, streak + 1


@dataclass(slots=True)
class _BaselinePath:
    """An :func:`ew_var_path` with what a detector needs to score and commit from it."""

    mean: FloatArray  # before each reading and after all
    var: FloatArray
    weight: FloatArray
    sd: FloatArray  # before each reading, floored
    use: BoolArray  # readings learned into the baseline
    streak: IndexArray
    learned0: int


def ready(ok: BoolArray, learned0: int, use: BoolArray, warmup: int) -> BoolArray:
    """Readings that are usable and come after warm-up (``use``: the readings learned)."""
    return ok if learned0 >= warmup else ok & (learned0 + counts(use)[:-1] >= warmup)


def gate(score: FloatArray, ok: BoolArray, learned0: int, use: BoolArray, warmup: int) -> FloatArray:
    """``score`` where the reading is usable and the detector warmed up, else 0."""
    if learned0 >= warmup and ok.all():
        return score
    return np.where(ready(ok, learned0, use, warmup), score, 0.0)

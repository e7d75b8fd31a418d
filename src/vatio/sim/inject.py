"""Meter traces and labelled anomaly injection.

A :class:`MeterTrace` is one meter's history on a regular grid: mean power
per interval, the cumulative import counter at the end of each interval and
the voltage. :func:`inject` plants anomalies of the asked kinds into a copy
and returns their ground-truth :class:`~vatio.model.anomaly.AnomalyLabel`\\ s;
the kinds, their sizes and units are in :mod:`vatio.sim.anomalies`.

The contract the tests hold the injector to: outside every label span the
trace is unchanged (ts, power, voltage, and every interval energy whose
interval lies outside the spans — the counter itself may be offset after a
span, since it is cumulative); inside, the change is exactly what the label
says; the same seed gives the same result.

How the data-quality kinds look on the grid:

* **gap**: power, counter and voltage are NaN; :meth:`MeterTrace.to_series`
  leaves those rows out, and the meter kept counting, so the first interval
  energy after the gap covers the whole gap.
* **counter_reset**: from the span's row on, the counter restarts at 0 (its
  value is the energy since the reset): the counter drops by ``magnitude`` Wh,
  so that row's interval energy is its true energy minus ``magnitude``, well
  below zero. The span is that one row.
* **clock_skew**: the meter's clock is off by ``magnitude`` seconds (a whole
  number of steps ``k``) for the span. Slot ``j`` of the span carries the
  reading of true interval ``j - k``. A clock that jumps ahead leaves the
  first ``k`` slots empty (no reading is stamped there) and its last ``k``
  readings are lost when it is corrected (they collide with correctly stamped
  ones, and the first stamp wins, as in an idempotent store); a clock that
  falls behind loses its first ``k`` readings to collisions and leaves the
  last ``k`` slots empty.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from vatio.contracts import id_problem
from vatio.detect.base import DeviceSeries, FloatArray, IntArray
from vatio.model.anomaly import AnomalyKind, AnomalyLabel
from vatio.sim.anomalies import (
    ADDED_LOAD,
    EFFECTS,
    SPECS,
    BoolArray,
    Placement,
    candidate_starts,
    night_starts,
    occupied_starts,
    quantize_wh,
    reset_starts,
    vacancy_level_w,
)

#: Nominal voltage of a meter whose source has none (EU/AU low voltage).
NOMINAL_V = 230.0
#: Consumption kinds are applied first, then stuck meters, then counter resets (in
#: time order, each restarting from the counter the previous one left), then these:
#: they only move or blank values inside their own spans.
_LAST = frozenset({AnomalyKind.STUCK, AnomalyKind.CLOCK_SKEW, AnomalyKind.GAP})


def _device_rng(device_id: str, *salt: int) -> np.random.Generator:
    return np.random.default_rng([*salt, zlib.crc32(device_id.encode())])


@dataclass(slots=True, eq=False)
class MeterTrace:
    """One meter's history on a regular grid.

    ``ts`` epoch seconds of interval starts, ``ts[i] = ts[0] + i * step_s``;
    ``power_w`` mean power per interval (NaN unknown); ``energy_wh`` the
    cumulative import counter at the end of each interval, in steps of 1/1024
    Wh (NaN where the meter reported nothing); ``voltage_v`` the voltage; ``tz``
    the home's time zone (local night, local days); ``temperature_c`` an
    optional outdoor temperature.

    >>> trace = MeterTrace.from_intervals("m-1", np.arange(3) * 3600, 3600, power_w=np.array([100.0, 200.0, 50.0]))
    >>> np.diff(trace.energy_wh).tolist()
    [200.0, 50.0]
    >>> trace.to_series().energy_wh.tolist()
    [nan, 200.0, 50.0]
    """

    device_id: str
    ts: IntArray
    power_w: FloatArray
    energy_wh: FloatArray
    voltage_v: FloatArray
    step_s: int
    temperature_c: FloatArray | None = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        problem = id_problem(self.device_id)
        if problem is not None:
            raise ValueError(f"device id {problem}")
        self.ts = np.asarray(self.ts, dtype=np.int64)
        self.power_w = np.asarray(self.power_w, dtype=np.float64)
        self.energy_wh = np.asarray(self.energy_wh, dtype=np.float64)
        self.voltage_v = np.asarray(self.voltage_v, dtype=np.float64)
        if self.temperature_c is not None:
            self.temperature_c = np.asarray(self.temperature_c, dtype=np.float64)
        n = len(self.ts)
        others = (self.power_w, self.energy_wh, self.voltage_v, self.temperature_c)
        if any(a is not None and len(a) != n for a in others):
            raise ValueError("ts, power_w, energy_wh, voltage_v and temperature_c differ in length")
        if self.step_s <= 0:
            raise ValueError("step_s must be positive")
        if n > 1 and not np.all(np.diff(self.ts) == self.step_s):
            raise ValueError(f"ts is not a regular grid of {self.step_s} s")

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def from_intervals(
        cls,
        device_id: str,
        ts: IntArray,
        step_s: int,
        *,
        power_w: FloatArray | None = None,
        interval_wh: FloatArray | None = None,
        voltage_v: FloatArray | None = None,
        temperature_c: FloatArray | None = None,
        tz: str = "UTC",
    ) -> MeterTrace:
        """A trace from mean power and/or the energy of each interval (at least one).

        Unknown power is derived from the energy; the counter integrates the
        energy (else the power; unknown intervals add nothing, export counts
        as zero) from an offset drawn from the device id, as a meter that was
        installed long ago. Unknown voltage is 230 V with a little noise.

        >>> trace = MeterTrace.from_intervals("m-1", np.array([0, 1800]), 1800, interval_wh=np.array([50.0, np.nan]))
        >>> trace.power_w.tolist(), bool(np.isnan(trace.energy_wh[1]))
        ([100.0, nan], True)
        """
        if power_w is None and interval_wh is None:
            raise ValueError("give power_w or interval_wh")
        rng = _device_rng(device_id)
        if interval_wh is None:
            assert power_w is not None
            interval_wh = power_w * step_s / 3600.0
        derived_w = interval_wh * 3600.0 / step_s
        power_w = derived_w if power_w is None else np.where(np.isfinite(power_w), power_w, derived_w)
        known = np.isfinite(interval_wh)
        offset_wh = quantize_wh(np.array([rng.uniform(1e5, 5e6)]))[0]
        counter = offset_wh + np.cumsum(quantize_wh(np.clip(np.where(known, interval_wh, 0.0), 0.0, None)))
        counter[~known] = np.nan
        if voltage_v is None:
            voltage_v = np.round(NOMINAL_V + rng.normal(0.0, 1.0, len(ts)), 1)
            voltage_v[~(known | np.isfinite(power_w))] = np.nan
        return cls(device_id, ts, power_w, counter, voltage_v, step_s, temperature_c, tz)

    @property
    def present(self) -> BoolArray:
        """Rows a meter export would contain: those with power or a counter value."""
        return np.isfinite(self.power_w) | np.isfinite(self.energy_wh)

    def copy(self) -> MeterTrace:
        """A deep copy (arrays included)."""
        return self.slice_rows(0, len(self))

    def slice_rows(self, start: int, stop: int) -> MeterTrace:
        """Rows ``start:stop`` as a new trace with its own arrays."""
        temperature = None if self.temperature_c is None else self.temperature_c[start:stop].copy()
        return MeterTrace(
            self.device_id,
            self.ts[start:stop].copy(),
            self.power_w[start:stop].copy(),
            self.energy_wh[start:stop].copy(),
            self.voltage_v[start:stop].copy(),
            self.step_s,
            temperature,
            self.tz,
        )

    def to_series(self) -> DeviceSeries:
        """What a meter export looks like: rows of a gap absent, counter differenced naively.

        ``energy_wh`` of a row is its counter minus the previous exported row's
        (NaN for the first row), so a counter reset shows as a negative
        interval and the row after a gap carries the gap's energy.
        """
        present = self.present
        counter = self.energy_wh[present]
        energy = np.full(len(counter), np.nan)
        energy[1:] = np.diff(counter)
        temperature = None if self.temperature_c is None else self.temperature_c[present]
        return DeviceSeries(
            device_id=self.device_id,
            ts=self.ts[present],
            power_w=self.power_w[present],
            step_s=self.step_s,
            energy_wh=energy,
            temperature_c=temperature,
        )


def inject(
    trace: MeterTrace,
    kinds: Sequence[AnomalyKind],
    *,
    seed: int,
    per_kind: int = 1,
    avoid_overlap: bool = True,
) -> tuple[MeterTrace, list[AnomalyLabel]]:
    """Plant ``per_kind`` anomalies of each kind into a copy of ``trace``; labels sorted by start.

    Spans avoid unknown data (a clean row on each side, at most 1 % unknown
    rows inside for the consumption kinds, none for the others) and, with
    ``avoid_overlap``, each other with at least one untouched row between.
    A span that does not fit is shortened down to its kind's minimum
    duration; :class:`ValueError` if even that does not fit.

    >>> ts = np.arange(24 * 20) * 3600
    >>> trace = MeterTrace.from_intervals("m-1", ts, 3600, power_w=np.full(len(ts), 300.0))
    >>> out, labels = inject(trace, [AnomalyKind.LEFT_ON], seed=1)
    >>> [label.kind.value for label in labels], bool((out.power_w >= trace.power_w).all())
    (['left_on'], True)
    """
    if per_kind < 0:
        raise ValueError("per_kind must be >= 0")
    rng = _device_rng(trace.device_id, seed % 2**63)
    plan = [AnomalyKind(kind) for kind in kinds for _ in range(per_kind)]
    # Longest first: long spans need the room, short ones fit in what is left.
    plan.sort(key=lambda kind: -SPECS[kind].max_s)
    unknown = ~(np.isfinite(trace.power_w) & np.isfinite(trace.energy_wh))
    busy = np.zeros(len(trace), dtype=bool)
    level_w = vacancy_level_w(trace.power_w)
    out = trace.copy()
    labels: list[AnomalyLabel] = []

    def place(kind: AnomalyKind, resets: Sequence[int] = ()) -> Placement:
        placement = _place(out, kind, rng, unknown, busy, level_w, resets)
        if avoid_overlap:
            busy[placement.lo : placement.hi] = True
        return placement

    def apply(placements: list[Placement]) -> None:
        for placement in sorted(placements, key=lambda p: p.lo):
            magnitude, detail = EFFECTS[placement.kind](out, placement, rng)
            labels.append(_label(out, placement, magnitude, detail))

    placed = [place(kind) for kind in plan if kind is not AnomalyKind.COUNTER_RESET]
    apply([p for p in placed if p.kind not in _LAST])
    apply([p for p in placed if p.kind is AnomalyKind.STUCK])
    # Resets go where they show: the counter since the previous reset must be clearly
    # above the interval's energy, which is only known once consumption is final.
    resets: list[Placement] = []
    for _ in range(plan.count(AnomalyKind.COUNTER_RESET)):
        resets.append(place(AnomalyKind.COUNTER_RESET, [p.lo for p in resets]))
    apply(resets)
    apply([p for p in placed if p.kind in (AnomalyKind.CLOCK_SKEW, AnomalyKind.GAP)])
    labels.sort(key=lambda label: (label.start, label.kind.value))
    return out, labels


def _place(
    trace: MeterTrace,
    kind: AnomalyKind,
    rng: np.random.Generator,
    unknown: BoolArray,
    busy: BoolArray,
    level_w: float,
    resets: Sequence[int] = (),
) -> Placement:
    spec = SPECS[kind]
    step = trace.step_s
    length = max(1, round(rng.uniform(spec.min_s, spec.max_s) / step))
    min_length = max(1, math.ceil(spec.min_s / step))
    placement = Placement(kind, 0, 0, 0.0)
    if kind in ADDED_LOAD:
        placement.magnitude = float(round(rng.uniform(spec.low, spec.high)))
    elif kind is AnomalyKind.TAMPER:
        placement.magnitude = round(float(rng.uniform(spec.low, spec.high)), 2)
    elif kind is AnomalyKind.VACANCY:
        placement.magnitude = level_w
    elif kind is AnomalyKind.CLOCK_SKEW:
        steps = max(1, round(rng.uniform(spec.low, spec.high) / step))
        placement.skew_steps = steps * int(rng.choice([-1, 1]))
        min_length = 3 * steps
        length = max(length, min_length)
    if kind is AnomalyKind.HVAC_RUNAWAY:
        placement.variant = str(rng.choice(["heating", "cooling"]))
    while True:
        allowed = None
        if kind is AnomalyKind.NIGHT_USE:
            allowed = night_starts(trace, length)
        elif kind is AnomalyKind.VACANCY:
            allowed = occupied_starts(trace.power_w, length, level_w)
        elif kind is AnomalyKind.COUNTER_RESET:
            allowed = reset_starts(trace.energy_wh, resets)
        starts = candidate_starts(unknown, busy, length, spec.max_nan, allowed)
        if len(starts):
            placement.lo = int(rng.choice(starts))
            placement.hi = placement.lo + length
            return placement
        if length <= min_length:
            raise ValueError(
                f"no room for {kind.value} ({length} x {step} s) in {trace.device_id!r}: "
                f"{len(trace)} rows, {int(unknown.sum())} unknown, {int(busy.sum())} taken"
            )
        length = max(min_length, length // 2)


def _label(trace: MeterTrace, placement: Placement, magnitude: float, detail: str) -> AnomalyLabel:
    start = int(trace.ts[placement.lo])
    return AnomalyLabel(
        kind=placement.kind,
        device_id=trace.device_id,
        start=datetime.fromtimestamp(start, UTC),
        end=datetime.fromtimestamp(start + (placement.hi - placement.lo) * trace.step_s, UTC),
        magnitude=magnitude,
        detail=detail,
    )

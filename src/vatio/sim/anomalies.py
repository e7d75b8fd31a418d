"""The anomaly kinds the injector knows: their sizes as data, where they may go, what they do.

Every kind changes a :class:`~vatio.sim.inject.MeterTrace` only inside its
label span ``[lo, hi)`` (row indices), except that a kind that changes what
the counter counts (consumption kinds, stuck meter, reset) moves the
cumulative counter by that energy from the span on: interval energies outside
the span are unchanged. A vacant home's power is ``min(actual, level x
U(0.8, 1))``, so it still varies. ``magnitude`` units:

==================  ============  ===================================================
kind                duration      magnitude
==================  ============  ===================================================
left_on             6-72 h        W added (300-2000)
baseload_increase   2-10 days     W added (50-300)
night_use           1-4 h         W added (500-2500), within local 00:00-05:00
vacancy             2-7 days      W ceiling: power <= the home's 5th percentile
tamper              2-10 days     factor on power and counter (0.1-0.6), voltage kept
spike               1-3 min       W added (10-50 kW, at least one interval)
stuck_meter         6-72 h        W, the frozen power (counter and voltage frozen too)
gap                 1-48 h        seconds missing (rows absent)
counter_reset       one interval  Wh the counter dropped by (to ~0)
clock_skew          6-48 h        seconds, signed (+ = meter clock ahead), 5 min-3 h
hvac_runaway        1-5 days      W added (1500-3500), constant whatever the weather
==================  ============  ===================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from vatio.model.anomaly import AnomalyKind

if TYPE_CHECKING:
    from vatio.detect.base import FloatArray, IntArray
    from vatio.sim.inject import MeterTrace

BoolArray = npt.NDArray[np.bool_]

#: The counter's resolution: 1/1024 Wh. A binary fraction keeps every counter
#: value, offset and difference exact in float64, so interval energies outside
#: an anomaly stay bit-identical after the counter is shifted.
COUNTER_STEPS_PER_WH: Final = 1024.0
HOUR: Final = 3600.0
DAY: Final = 86_400.0
NIGHT_END_S: Final = 5 * 3600
#: A counter reset must drop the counter by at least this much more than its interval's energy.
MIN_RESET_DROP_WH: Final = 500.0
#: Spikes stay inside the wire contract's plausibility limit (100 kW).
MAX_SPIKE_POWER_W: Final = 90_000.0


def quantize_wh(energy_wh: FloatArray) -> FloatArray:
    """Round to the counter's resolution (1/1024 Wh).

    >>> quantize_wh(np.array([0.1, 1.0 / 3.0])).tolist()
    [0.099609375, 0.3330078125]
    """
    return np.round(energy_wh * COUNTER_STEPS_PER_WH) / COUNTER_STEPS_PER_WH


@dataclass(frozen=True, slots=True)
class KindSpec:
    """How long and how big one kind is; ``max_nan`` the tolerated fraction of unknown rows."""

    min_s: float
    max_s: float
    low: float
    high: float
    unit: str
    max_nan: float = 0.0


K = AnomalyKind
SPECS: Final[Mapping[AnomalyKind, KindSpec]] = {
    K.LEFT_ON: KindSpec(6 * HOUR, 72 * HOUR, 300.0, 2000.0, "W added", 0.01),
    K.BASELOAD: KindSpec(2 * DAY, 10 * DAY, 50.0, 300.0, "W added", 0.01),
    K.NIGHT_USE: KindSpec(1 * HOUR, 4 * HOUR, 500.0, 2500.0, "W added"),
    K.VACANCY: KindSpec(2 * DAY, 7 * DAY, 0.0, 0.0, "W ceiling", 0.01),
    K.TAMPER: KindSpec(2 * DAY, 10 * DAY, 0.1, 0.6, "factor", 0.01),
    K.SPIKE: KindSpec(60.0, 180.0, 10_000.0, 50_000.0, "W added"),
    K.STUCK: KindSpec(6 * HOUR, 72 * HOUR, 0.0, 0.0, "W frozen"),
    K.GAP: KindSpec(1 * HOUR, 48 * HOUR, 0.0, 0.0, "s missing"),
    K.COUNTER_RESET: KindSpec(0.0, 0.0, 0.0, 0.0, "Wh dropped"),
    K.CLOCK_SKEW: KindSpec(6 * HOUR, 48 * HOUR, 300.0, 3 * HOUR, "s shift"),
    K.HVAC_RUNAWAY: KindSpec(1 * DAY, 5 * DAY, 1500.0, 3500.0, "W added", 0.01),
}
#: Kinds that add ``magnitude`` W to the load over their span.
ADDED_LOAD: Final = frozenset({K.LEFT_ON, K.BASELOAD, K.NIGHT_USE, K.SPIKE, K.HVAC_RUNAWAY})


@dataclass(slots=True)
class Placement:
    """One planned anomaly: rows ``[lo, hi)``, its drawn size and ``skew_steps`` for clock skew."""

    kind: AnomalyKind
    lo: int
    hi: int
    magnitude: float
    skew_steps: int = 0
    variant: str = ""


# -- placement -----------------------------------------------------------------------


def candidate_starts(
    unknown: BoolArray, busy: BoolArray, length: int, max_nan: float, allowed: BoolArray | None = None
) -> IntArray:
    """Rows ``s`` where ``[s, s + length)`` may go: free of other anomalies with a clean row each side.

    >>> none = np.zeros(6, dtype=bool)
    >>> candidate_starts(none, np.array([0, 0, 0, 0, 1, 0], dtype=bool), 2, 0.0).tolist()
    [1]
    """
    n = len(unknown)
    starts = np.arange(1, n - length, dtype=np.int64)
    if len(starts) == 0:
        return starts
    nan_cs = np.concatenate(([0], np.cumsum(unknown)))
    busy_cs = np.concatenate(([0], np.cumsum(busy)))
    ok = busy_cs[starts + length + 1] - busy_cs[starts - 1] == 0
    ok &= nan_cs[starts + length] - nan_cs[starts] <= int(max_nan * length)
    for edge in (starts - 1, starts, starts + length - 1, starts + length):
        ok &= ~unknown[edge]
    if allowed is not None:
        ok &= allowed[starts]
    chosen: IntArray = starts[ok]
    return chosen


def local_wall_seconds(ts: IntArray, tz: str) -> IntArray:
    """Wall-clock time in zone ``tz`` of each epoch second, as seconds since 1970-01-01 local.

    >>> local_wall_seconds(np.array([0]), "Europe/Paris").tolist()
    [3600]
    """
    local = pd.to_datetime(ts, unit="s", utc=True).tz_convert(tz).tz_localize(None)
    return np.asarray((local - pd.Timestamp(1970, 1, 1)) // pd.Timedelta(seconds=1), dtype=np.int64)


def night_starts(trace: MeterTrace, length: int) -> BoolArray:
    """Starts whose span lies inside one local night (00:00-05:00, daylight saving included)."""
    start = local_wall_seconds(trace.ts, trace.tz)
    end = local_wall_seconds(trace.ts + length * trace.step_s, trace.tz)
    return np.asarray((start // DAY == end // DAY) & (end % DAY <= NIGHT_END_S))


def reset_starts(counter_wh: FloatArray, resets: Sequence[int]) -> BoolArray:
    """Rows where a counter reset shows, given the rows of the resets already planned.

    A reset at row ``s`` drops the counter by its value at ``s - 1`` (the energy
    since the previous reset, or the whole counter); that must exceed the
    row's own energy by :data:`MIN_RESET_DROP_WH`, and so must the drop of the
    next planned reset, which this one shortens.

    >>> counter = np.arange(7) * 600.0  # 600 Wh per row
    >>> np.flatnonzero(reset_starts(counter, [])).tolist()
    [3, 4, 5, 6]
    >>> np.flatnonzero(reset_starts(counter, [4])).tolist()
    [6]
    """
    interval_wh = np.nan_to_num(np.diff(counter_wh, prepend=counter_wh[0]))
    before = np.concatenate(([0.0], np.cumsum(interval_wh)[:-1]))  # counter at s - 1, less the first
    previous_wh = np.concatenate(([np.nan], counter_wh[:-1]))
    marks = np.sort(np.asarray(resets, dtype=np.int64))
    if not len(marks):
        return np.asarray(previous_wh >= interval_wh + MIN_RESET_DROP_WH)
    at = np.searchsorted(marks, np.arange(len(counter_wh)))
    prev = marks[np.maximum(at - 1, 0)]
    drop = np.where(at == 0, previous_wh, before - before[prev])
    nxt = marks[np.minimum(at, len(marks) - 1)]
    next_ok = (at == len(marks)) | (before[nxt] - before >= interval_wh[nxt] + MIN_RESET_DROP_WH)
    ok = (drop >= interval_wh + MIN_RESET_DROP_WH) & next_ok
    ok[marks] = False
    return np.asarray(ok)


def occupied_starts(power_w: FloatArray, length: int, level_w: float) -> BoolArray:
    """Starts of spans a home is normally in: mean power well above the vacancy level and
    at least half the home's overall mean."""
    cs = np.concatenate(([0.0], np.cumsum(np.nan_to_num(power_w))))
    mean = np.zeros(len(power_w))
    mean[: len(power_w) - length + 1] = (cs[length:] - cs[:-length]) / length
    return np.asarray(mean >= max(1.5 * level_w + 20.0, 0.5 * float(np.nanmean(power_w))))


def vacancy_level_w(power_w: FloatArray) -> float:
    """The home's low percentile: what it draws with nobody in."""
    finite = power_w[np.isfinite(power_w)]
    return max(0.0, round(float(np.percentile(finite, 5)), 1)) if len(finite) else 0.0


# -- effects -----------------------------------------------------------------------


def _shift_counter(trace: MeterTrace, lo: int, hi: int, added_w: FloatArray) -> None:
    """Move the counter by the energy of ``added_w`` over ``[lo, hi)`` (and after: it is cumulative)."""
    added_wh = quantize_wh(np.cumsum(np.nan_to_num(added_w) * trace.step_s / 3600.0))
    trace.energy_wh[lo:hi] += added_wh
    trace.energy_wh[hi:] += added_wh[-1]


def _set_power(trace: MeterTrace, p: Placement, new_w: FloatArray) -> None:
    old = trace.power_w[p.lo : p.hi]
    added = new_w - old
    trace.power_w[p.lo : p.hi] = new_w
    _shift_counter(trace, p.lo, p.hi, added)


def _added_load(trace: MeterTrace, p: Placement, rng: np.random.Generator) -> tuple[float, str]:
    old = trace.power_w[p.lo : p.hi]
    magnitude = p.magnitude
    if p.kind is K.SPIKE:
        magnitude = min(magnitude, MAX_SPIKE_POWER_W - float(np.nanmax(old)))
    _set_power(trace, p, old + magnitude)
    what = {
        K.LEFT_ON: "appliance left on",
        K.BASELOAD: "always-on load up (failing fridge)",
        K.NIGHT_USE: "unusual use in the local night",
        K.SPIKE: "implausible power spike",
        K.HVAC_RUNAWAY: f"{p.variant} runaway: constant load, not following temperature",
    }[p.kind]
    return magnitude, f"{what}: +{magnitude:.0f} W"


def _vacancy(trace: MeterTrace, p: Placement, rng: np.random.Generator) -> tuple[float, str]:
    ceiling = np.round(p.magnitude * rng.uniform(0.8, 1.0, p.hi - p.lo), 1)
    _set_power(trace, p, np.minimum(trace.power_w[p.lo : p.hi], ceiling))
    return p.magnitude, f"home empty: power at most {p.magnitude:.1f} W (its 5th percentile)"


def _tamper(trace: MeterTrace, p: Placement, rng: np.random.Generator) -> tuple[float, str]:
    _set_power(trace, p, trace.power_w[p.lo : p.hi] * p.magnitude)
    return p.magnitude, f"meter under-reads: consumption x{p.magnitude:.2f}, voltage normal"


def _stuck(trace: MeterTrace, p: Placement, rng: np.random.Generator) -> tuple[float, str]:
    frozen_w = float(trace.power_w[p.lo - 1])
    frozen_wh = trace.energy_wh[p.lo - 1]
    lost_wh = trace.energy_wh[p.hi - 1] - frozen_wh
    trace.power_w[p.lo : p.hi] = frozen_w
    trace.voltage_v[p.lo : p.hi] = trace.voltage_v[p.lo - 1]
    trace.energy_wh[p.lo : p.hi] = frozen_wh
    # The register lost what it did not count; it resumes from the frozen value.
    trace.energy_wh[p.hi :] -= lost_wh
    return frozen_w, f"meter stuck: power {frozen_w:.1f} W and counter frozen, {lost_wh:.0f} Wh not counted"


def _gap(trace: MeterTrace, p: Placement, rng: np.random.Generator) -> tuple[float, str]:
    for values in (trace.power_w, trace.energy_wh, trace.voltage_v):
        values[p.lo : p.hi] = np.nan
    seconds = float((p.hi - p.lo) * trace.step_s)
    return seconds, f"meter offline: {seconds / 3600:.1f} h of readings missing"


def _counter_reset(trace: MeterTrace, p: Placement, rng: np.random.Generator) -> tuple[float, str]:
    dropped = float(trace.energy_wh[p.lo - 1])
    trace.energy_wh[p.lo :] -= dropped
    return dropped, f"counter restarted from 0 (dropped {dropped:.0f} Wh)"


def _clock_skew(trace: MeterTrace, p: Placement, rng: np.random.Generator) -> tuple[float, str]:
    k = p.skew_steps
    source = np.arange(p.lo, p.hi) - k
    inside = (source >= p.lo) & (source < p.hi)
    for values in (trace.power_w, trace.energy_wh, trace.voltage_v):
        moved = np.full(p.hi - p.lo, np.nan)
        moved[inside] = values[source[inside]]
        values[p.lo : p.hi] = moved
    seconds = float(k * trace.step_s)
    way = "ahead (readings stamped late)" if k > 0 else "behind (readings stamped early)"
    return seconds, f"meter clock {abs(seconds) / 60:.0f} min {way}; {abs(k)} slot(s) empty, as many lost"


Effect = Callable[["MeterTrace", Placement, np.random.Generator], tuple[float, str]]
EFFECTS: Final[Mapping[AnomalyKind, Effect]] = {
    **dict.fromkeys(ADDED_LOAD, _added_load),
    K.VACANCY: _vacancy,
    K.TAMPER: _tamper,
    K.STUCK: _stuck,
    K.GAP: _gap,
    K.COUNTER_RESET: _counter_reset,
    K.CLOCK_SKEW: _clock_skew,
}

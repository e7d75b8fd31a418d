"""Energy per interval from cumulative counters, and the 1-minute rollup.

One implementation shared by every backend, so SQLite and PostgreSQL agree to
the watt-hour. The rules, for a device whose readings carry a counter:

* the energy of the interval ending at a reading is its counter minus the
  previous counter value of the same device;
* a negative delta is a **counter reset** when the new value is small enough
  to have been counted since zero in the interval: the new value is the energy;
* any other negative delta, or a positive delta larger than the device could
  draw at ``max_power_w`` in the interval, is a **meter replacement** or a
  glitch: the interval falls back to integrated power (or zero), so daily
  energy never shows a negative or a giant spike;
* a device without counters gets trapezoidal integration of power across
  gaps up to ``max_integration_gap_s`` (longer gaps count as unknown, zero).

Energy is attributed to the bucket holding the interval's end (exclusive), so
the interval ending exactly at midnight belongs to the day before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vatio.model import RollupRow
from vatio.model.instants import from_ms

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyPolicy:
    """Plausibility bounds for counter deltas and power integration."""

    max_power_w: float = 100_000.0
    slack_wh: float = 1.0
    max_integration_gap_s: float = 900.0


DEFAULT_POLICY = EnergyPolicy()


def interval_energy_wh(
    ts_ms: IntArray,
    power_w: FloatArray,
    energy_wh: FloatArray,
    policy: EnergyPolicy = DEFAULT_POLICY,
) -> FloatArray:
    """Energy of the interval ending at each reading; element 0 is 0 (no predecessor).

    ``power_w`` and ``energy_wh`` use NaN for missing values. Readings must be
    sorted by time.

    >>> ts = np.array([0, 60_000, 120_000, 180_000], dtype=np.int64)
    >>> counter = np.array([5000.0, 5010.0, 3.0, 13.0])  # reset after the 2nd reading
    >>> interval_energy_wh(ts, np.full(4, np.nan), counter).tolist()
    [0.0, 10.0, 3.0, 10.0]
    """
    n = len(ts_ms)
    out = np.zeros(n, dtype=np.float64)
    if n < 2:
        return out
    has_counter = ~np.isnan(energy_wh)
    if has_counter.any():
        _counter_energy(ts_ms, power_w, energy_wh, has_counter, policy, out)
    else:
        out[1:] = _integrated(ts_ms, power_w, policy)
    return out


def _integrated(ts_ms: IntArray, power_w: FloatArray, policy: EnergyPolicy) -> FloatArray:
    """Trapezoidal import energy between consecutive readings (export counts as zero)."""
    dt_s = np.diff(ts_ms) / 1000.0
    mean_w = np.clip((power_w[:-1] + power_w[1:]) / 2.0, 0.0, None)
    energy = mean_w * dt_s / 3600.0
    usable = (dt_s <= policy.max_integration_gap_s) & ~np.isnan(energy)
    return np.where(usable, energy, 0.0)


def _counter_energy(
    ts_ms: IntArray,
    power_w: FloatArray,
    energy_wh: FloatArray,
    has_counter: npt.NDArray[np.bool_],
    policy: EnergyPolicy,
    out: FloatArray,
) -> None:
    idx = np.flatnonzero(has_counter)
    if len(idx) < 2:
        return
    counter = energy_wh[idx]
    delta = np.diff(counter)
    dt_h = np.diff(ts_ms[idx]) / 3_600_000.0
    ceiling = policy.max_power_w * dt_h + policy.slack_wh
    plausible = (delta >= 0.0) & (delta <= ceiling)
    reset = (delta < 0.0) & (counter[1:] <= ceiling)
    # Replacement or glitch: the counter says nothing usable, power might.
    power_at = power_w[idx[1:]]
    power_prev = power_w[idx[:-1]]
    fallback_w = np.where(np.isnan(power_at), power_prev, power_at)
    fallback = np.nan_to_num(np.clip(fallback_w, 0.0, None) * dt_h, nan=0.0)
    fallback = np.where(dt_h * 3600.0 <= policy.max_integration_gap_s, fallback, 0.0)
    out[idx[1:]] = np.where(plausible, delta, np.where(reset, counter[1:], fallback))


def export_interval_wh(ts_ms: IntArray, export_wh: FloatArray, policy: EnergyPolicy = DEFAULT_POLICY) -> FloatArray:
    """Exported energy of the interval ending at each reading, from the cumulative export counter.

    The import counter's rules apply (resets, replacements); there is no power
    fallback, so an implausible delta or a device without an export counter
    counts zero export.

    >>> ts = np.array([0, 60_000, 120_000], dtype=np.int64)
    >>> export_interval_wh(ts, np.array([900.0, 2.0, 7.0])).tolist()  # reset after the 1st reading
    [0.0, 2.0, 5.0]
    """
    out = np.zeros(len(ts_ms), dtype=np.float64)
    has_counter = ~np.isnan(export_wh)
    if len(ts_ms) >= 2 and has_counter.any():
        _counter_energy(ts_ms, np.full(len(ts_ms), np.nan), export_wh, has_counter, policy, out)
    return out


def minute_rollups(
    device_id: str,
    ts_ms: IntArray,
    power_w: FloatArray,
    energy_wh: FloatArray,
    *,
    first_bucket_ms: int,
    last_bucket_ms: int,
    policy: EnergyPolicy = DEFAULT_POLICY,
    export_wh: FloatArray | None = None,
) -> list[RollupRow]:
    """1-minute rollup rows for buckets ``first_bucket_ms..last_bucket_ms`` inclusive.

    The arrays hold the device's readings sorted by time: the last reading
    before ``first_bucket_ms`` (if any) first, then every reading up to and
    including the end of the last bucket. Buckets without data get no row.
    ``export_wh``, the cumulative export counter (NaN when missing), fills
    ``energy_export_wh`` like ``energy_wh`` fills ``energy_wh``.

    >>> ts = np.array([0, 30_000, 60_000, 90_000], dtype=np.int64)
    >>> rows = minute_rollups("m", ts, np.array([100.0, 300.0, 200.0, 200.0]),
    ...                       np.full(4, np.nan), first_bucket_ms=0, last_bucket_ms=60_000)
    >>> [(r.samples, r.power_mean_w, round(r.energy_wh, 3)) for r in rows]
    [(2, 200.0, 3.75), (2, 200.0, 1.667)]
    """
    energy = interval_energy_wh(ts_ms, power_w, energy_wh, policy)
    sample_bucket = ts_ms - ts_ms % MINUTE_MS
    energy_bucket = (ts_ms - 1) - (ts_ms - 1) % MINUTE_MS
    nbuckets = (last_bucket_ms - first_bucket_ms) // MINUTE_MS + 1
    if nbuckets <= 0:
        return []

    in_samples = (sample_bucket >= first_bucket_ms) & (sample_bucket <= last_bucket_ms)
    slot = ((sample_bucket[in_samples] - first_bucket_ms) // MINUTE_MS).astype(np.int64)
    power_in = power_w[in_samples]
    has_power = ~np.isnan(power_in)
    samples = np.bincount(slot, minlength=nbuckets)
    power_count = np.bincount(slot[has_power], minlength=nbuckets)
    power_sum = np.bincount(slot[has_power], weights=power_in[has_power], minlength=nbuckets)
    power_min = np.full(nbuckets, np.inf)
    power_max = np.full(nbuckets, -np.inf)
    np.minimum.at(power_min, slot[has_power], power_in[has_power])
    np.maximum.at(power_max, slot[has_power], power_in[has_power])

    in_energy = (energy_bucket >= first_bucket_ms) & (energy_bucket <= last_bucket_ms)
    in_energy[:1] = False  # the predecessor reading closes no interval in range
    eslot = ((energy_bucket[in_energy] - first_bucket_ms) // MINUTE_MS).astype(np.int64)
    energy_sum = np.bincount(eslot, weights=energy[in_energy], minlength=nbuckets)
    export = np.zeros(len(ts_ms)) if export_wh is None else export_interval_wh(ts_ms, export_wh, policy)
    export_sum = np.bincount(eslot, weights=export[in_energy], minlength=nbuckets)
    touched = np.bincount(eslot, minlength=nbuckets)

    rows: list[RollupRow] = []
    for i in np.flatnonzero((samples > 0) | (touched > 0)).tolist():
        has = power_count[i] > 0
        rows.append(
            RollupRow(
                device_id=device_id,
                bucket=from_ms(first_bucket_ms + i * MINUTE_MS),
                samples=int(samples[i]),
                power_count=int(power_count[i]),
                power_sum_w=float(power_sum[i]),
                power_min_w=float(power_min[i]) if has else None,
                power_max_w=float(power_max[i]) if has else None,
                energy_wh=float(energy_sum[i]),
                energy_export_wh=float(export_sum[i]),
            )
        )
    return rows

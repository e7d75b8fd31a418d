"""The back-end tier's per-device model, fitted in batch from hourly history.

A :class:`SeasonalModel` holds what a year of a device's hourly mean power
says is normal, as an additive level + hour-of-week decomposition (the terms
Holt-Winters would converge to):

* ``season_w[slot]`` — the median over weeks of (hourly mean − that week's
  median), for each of the 168 hours of the week (slot 0: Monday 00:00 UTC);
* ``spread_w[slot]`` — 1.4826 × the median absolute residual of that slot;
* ``level_w`` — the level at the end of training (median of the last two
  weeks' levels), where the stream's forecast starts;
* ``baseload_w`` and ``baseload_spread_w`` — the median and robust spread of
  each day's always-on power (its second-lowest hourly mean) over the last
  eight weeks of training.

Days that are not representative are left out before anything is fitted:
days with fewer than 20 hours of data, and days whose mean lies more than
``DAY_Z`` robust deviations from the device's usual day — absences and
holidays (near baseload all day) as well as days of a fault.

:func:`fit_models` fits many devices at once over one matrix of hourly means
(devices × hours); everything is vectorised over devices.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass

import numpy as np

from vatio.detect.base import FloatArray

HOUR_S = 3600
WEEK_H = 168
DAY_H = 24
#: Hours from the Monday 00:00 UTC before the epoch (a Thursday) to the epoch.
MONDAY_OFFSET_H = 72
MAD_SCALE = 1.4826
DAY_Z = 3.5
MIN_DAY_HOURS = 20
MIN_DAYS = 14
MIN_SLOT_WEEKS = 3
_MAGIC = b"VSM1"
_HEADER = struct.Struct("<4s4d")


def slot_of(hour: int) -> int:
    """Hour-of-week slot (0 = Monday 00:00 UTC) of an hour index (epoch hours).

    >>> slot_of(0), slot_of(96), slot_of(96 + 168 + 25)
    (72, 0, 25)
    """
    return (hour + MONDAY_OFFSET_H) % WEEK_H


@dataclass(frozen=True, slots=True, eq=False)
class SeasonalModel:
    """A fitted per-device model; ``to_bytes`` is what a :class:`~vatio.model.ModelVersion` stores.

    >>> m = SeasonalModel(np.full(168, 50.0), np.full(168, 20.0), 250.0, 90.0, 8.0)
    >>> len(m.to_bytes()), SeasonalModel.from_bytes(m.to_bytes()).expected(slot=3)
    (2724, 300.0)
    """

    season_w: FloatArray
    spread_w: FloatArray
    level_w: float
    baseload_w: float
    baseload_spread_w: float

    def __post_init__(self) -> None:
        if self.season_w.shape != (WEEK_H,) or self.spread_w.shape != (WEEK_H,):
            raise ValueError("SeasonalModel needs 168 season and spread terms")

    def expected(self, *, slot: int) -> float:
        return float(self.level_w + self.season_w[slot])

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(_MAGIC, self.level_w, self.baseload_w, self.baseload_spread_w, 0.0)
        return head + self.season_w.astype("<f8").tobytes() + self.spread_w.astype("<f8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> SeasonalModel:
        """Raises ValueError for bytes that are not a model of this format."""
        if len(data) != _HEADER.size + 2 * WEEK_H * 8 or not data.startswith(_MAGIC):
            raise ValueError("not a seasonal model (VSM1)")
        _, level, base, base_spread, _ = _HEADER.unpack_from(data)
        arrays = np.frombuffer(data, dtype="<f8", offset=_HEADER.size).astype(np.float64)
        return cls(arrays[:WEEK_H].copy(), arrays[WEEK_H:].copy(), level, base, base_spread)


@dataclass(frozen=True, slots=True)
class FitResult:
    """The model of one device (``None`` when its history was too short) and its metrics."""

    model: SeasonalModel | None
    metrics: dict[str, float]


def hourly_means(ts: FloatArray, power_w: FloatArray, first_hour: int, hours: int) -> FloatArray:
    """Mean power per hour ``first_hour + i`` (epoch hours) of readings; NaN where none.

    >>> hourly_means(np.array([0.0, 1800.0, 3600.0]), np.array([100.0, 300.0, np.nan]), 0, 3).tolist()
    [200.0, nan, nan]
    """
    ok = np.isfinite(power_w) & np.isfinite(ts)
    idx = np.floor(ts[ok] / HOUR_S).astype(np.int64) - first_hour
    inside = (idx >= 0) & (idx < hours)
    sums = np.bincount(idx[inside], weights=power_w[ok][inside], minlength=hours)
    counts = np.bincount(idx[inside], minlength=hours)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _nanmedian(values: FloatArray, axis: int) -> FloatArray:
    # All-NaN slices (devices without data in a week) are expected; their result is NaN, silently.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(values, axis=axis), dtype=np.float64)


def _nanmean(values: FloatArray, axis: int) -> FloatArray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmean(values, axis=axis), dtype=np.float64)


def _aligned(matrix: FloatArray, first_hour: int, period: int, offset: int) -> tuple[FloatArray, int]:
    """``matrix`` padded with NaN so column 0 is a period boundary and whole periods fill it,
    reshaped to (devices, periods, period); also the padding put in front."""
    front = (first_hour + offset) % period
    total = front + matrix.shape[1]
    back = -total % period
    padded = np.pad(matrix, ((0, 0), (front, back)), constant_values=np.nan)
    return padded.reshape(matrix.shape[0], -1, period), front


def representative_days(matrix: FloatArray, first_hour: int) -> FloatArray:
    """``matrix`` with the hours of unrepresentative days set to NaN (see the module docstring)."""
    days, front = _aligned(matrix, first_hour, DAY_H, 0)
    covered = np.sum(np.isfinite(days), axis=2) >= MIN_DAY_HOURS
    day_mean = np.where(covered, _nanmean(days, axis=2), np.nan)
    usual = _nanmedian(day_mean, axis=1)[:, None]
    mad = _nanmedian(np.abs(day_mean - usual), axis=1)[:, None] * MAD_SCALE
    scale = np.maximum(np.nan_to_num(mad), np.maximum(0.1 * np.abs(usual), 10.0))
    keep = covered & (np.abs(day_mean - usual) <= DAY_Z * scale)
    kept = np.where(keep[:, :, None], days, np.nan).reshape(matrix.shape[0], -1)
    return kept[:, front : front + matrix.shape[1]]


def fit_models(matrix: FloatArray, first_hour: int, *, z_limit: float = 4.0, floor_w: float = 20.0) -> list[FitResult]:
    """Fit one model per row of ``matrix`` (hourly means from epoch hour ``first_hour``).

    Metrics per device: ``days_used``, ``days_excluded``, ``residual_spread_w``
    (median of the slot spreads), ``alert_rate`` (share of the used hours above
    ``expected + z_limit × spread``, in sample) and ``level_w``/``baseload_w``.
    """
    kept = representative_days(matrix, first_hour)
    weeks, _ = _aligned(kept, first_hour, WEEK_H, MONDAY_OFFSET_H)
    week_level = _nanmedian(weeks, axis=2)  # (devices, weeks)
    relative = weeks - week_level[:, :, None]
    season = _nanmedian(relative, axis=1)
    spread = _nanmedian(np.abs(relative - season[:, None, :]), axis=1) * MAD_SCALE
    enough = np.sum(np.isfinite(relative), axis=1) >= MIN_SLOT_WEEKS
    season, spread = _fallback_to_hour_of_day(season, spread, enough)
    spread = np.maximum(np.nan_to_num(spread, nan=floor_w), floor_w)
    recent_levels = _last_finite(week_level, 2)
    level = _nanmedian(recent_levels, axis=1)
    base, base_spread = _baseload(kept, first_hour)
    expected = week_level[:, :, None] + season[:, None, :]
    over = (weeks - expected) >= z_limit * np.maximum(spread[:, None, :], floor_frac_floor(expected, floor_w))
    used_hours = np.sum(np.isfinite(weeks), axis=(1, 2))
    alert_rate = np.sum(over & np.isfinite(weeks), axis=(1, 2)) / np.maximum(used_hours, 1)
    days_used = used_hours / DAY_H
    days_excluded = np.maximum(np.sum(np.isfinite(matrix), axis=1) / DAY_H - days_used, 0.0)
    metrics = {
        "days_used": days_used, "days_excluded": days_excluded, "residual_spread_w": np.median(spread, axis=1),
        "alert_rate": alert_rate, "level_w": np.nan_to_num(level), "baseload_w": np.nan_to_num(base),
    }  # fmt: skip
    usable = (days_used >= MIN_DAYS) & np.isfinite(level) & np.isfinite(base) & np.all(np.isfinite(season), axis=1)
    return [
        FitResult(
            SeasonalModel(season[d].copy(), spread[d].copy(), float(level[d]), float(base[d]), float(base_spread[d]))
            if usable[d]
            else None,
            {name: round(float(values[d]), 6) for name, values in metrics.items()},
        )
        for d in range(matrix.shape[0])
    ]


def floor_frac_floor(expected: FloatArray, floor_w: float, floor_frac: float = 0.15) -> FloatArray:
    """The smallest spread a slot may have: ``floor_w`` or ``floor_frac`` of the expected level."""
    return np.maximum(floor_w, floor_frac * np.abs(np.nan_to_num(expected)))


def _fallback_to_hour_of_day(
    season: FloatArray, spread: FloatArray, enough: np.ndarray
) -> tuple[FloatArray, FloatArray]:
    """Slots seen in fewer than three weeks take their hour of day's median over the week."""
    by_hour_season = _nanmedian(np.where(enough, season, np.nan).reshape(-1, 7, DAY_H), axis=1)
    by_hour_spread = _nanmedian(np.where(enough, spread, np.nan).reshape(-1, 7, DAY_H), axis=1)
    season = np.where(enough, season, np.tile(by_hour_season, 7))
    spread = np.where(enough, spread, np.tile(by_hour_spread, 7))
    return season, spread


def _last_finite(values: FloatArray, k: int) -> FloatArray:
    """The last ``k`` finite values of each row (NaN-padded on the left when fewer)."""
    order = np.argsort(np.isfinite(values), axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1)[:, -k:]


def _baseload(kept: FloatArray, first_hour: int) -> tuple[FloatArray, FloatArray]:
    """Median and robust spread of each day's second-lowest hourly mean, over the last 8 weeks."""
    days, _ = _aligned(kept, first_hour, DAY_H, 0)
    covered = np.sum(np.isfinite(days), axis=2) >= MIN_DAY_HOURS
    low = np.where(covered, np.sort(days, axis=2)[:, :, 1], np.nan)  # NaN sorts last
    recent = _last_finite(low, 56)
    base = _nanmedian(recent, axis=1)
    spread = _nanmedian(np.abs(recent - base[:, None]), axis=1) * MAD_SCALE
    return base, np.nan_to_num(spread)

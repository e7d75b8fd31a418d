"""Time-series shapes returned by range and energy queries."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Resolution(enum.StrEnum):
    """Resolution of a range query: raw readings or a rollup tier."""

    RAW = "raw"
    MIN_1 = "1m"
    MIN_15 = "15m"
    HOUR_1 = "1h"
    DAY_1 = "1d"


#: Width of each rollup tier in seconds (UTC-aligned buckets).
BUCKET_SECONDS: dict[Resolution, int] = {
    Resolution.MIN_1: 60,
    Resolution.MIN_15: 900,
    Resolution.HOUR_1: 3600,
    Resolution.DAY_1: 86400,
}


class EnergyPeriod(enum.StrEnum):
    """Buckets of an energy query, in the caller's time zone."""

    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One bucket of one rollup tier.

    ``power_sum_w`` and ``power_count`` keep the mean exact when tiers are
    combined; ``energy_wh`` is the energy of intervals ending in the bucket,
    from the cumulative counter with reset handling, else integrated power;
    ``energy_export_wh`` the same from the export counter (zero without one).
    """

    device_id: str
    bucket: datetime
    samples: int
    power_count: int
    power_sum_w: float
    power_min_w: float | None
    power_max_w: float | None
    energy_wh: float
    energy_export_wh: float = 0.0

    @property
    def power_mean_w(self) -> float | None:
        return self.power_sum_w / self.power_count if self.power_count else None


@dataclass(frozen=True, slots=True)
class EnergyBucket:
    """Energy of one hour, day or month (local time of the query)."""

    start: datetime
    energy_wh: float


@dataclass(frozen=True, slots=True)
class SiteBucket:
    """One rollup bucket summed over a site's devices.

    ``power_w`` is the sum of the means of the ``devices`` that reported power
    in the bucket (``None`` when none did); energies are sums over all devices.
    """

    bucket: datetime
    devices: int
    power_w: float | None
    import_wh: float
    export_wh: float

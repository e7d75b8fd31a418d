"""15-minute peak demand of a site, per local day and over a period.

Demand in a 15-minute window is the site's mean power in it: the sum over its
devices of each device's mean power (from the 15-minute rollups); a window
with energy but no power samples (energy-only meters) uses its energy × 4.
The peak of a day is its highest window; a window belongs to the local day
its start falls in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from vatio.model import SiteBucket

WINDOW = "15min"


@dataclass(frozen=True, slots=True)
class DayPeak:
    day: date
    peak_kw: float
    at: datetime
    over_limit: bool


@dataclass(frozen=True, slots=True)
class PeakDemand:
    """The highest 15-minute demand of a period (``None`` without data) and each day's."""

    peak_kw: float | None
    at: datetime | None
    limit_kw: float | None
    days: list[DayPeak]


def demand_kw(bucket: SiteBucket) -> float:
    if bucket.power_w is not None:
        return bucket.power_w / 1000.0
    return bucket.import_wh * 4 / 1000.0


def peak_demand(buckets: Sequence[SiteBucket], tz: ZoneInfo, limit_kw: float | None) -> PeakDemand:
    """Peaks of 15-minute ``buckets`` per local day of ``tz`` and overall (the earliest wins a tie).

    >>> from datetime import UTC, timedelta
    >>> t0 = datetime(2026, 1, 1, 22, 30, tzinfo=UTC)
    >>> powers = [900.0, 2500.0, 1200.0]  # 23:30 and 23:45 in Paris, then 00:00 the next day
    >>> rows = [SiteBucket(t0 + timedelta(minutes=15 * k), 1, w, 0.0, 0.0) for k, w in enumerate(powers)]
    >>> result = peak_demand(rows, ZoneInfo("Europe/Paris"), 2.0)
    >>> result.peak_kw, [(d.day.isoformat(), d.peak_kw, d.over_limit) for d in result.days]
    (2.5, [('2026-01-01', 2.5, True), ('2026-01-02', 1.2, False)])
    """
    best: dict[date, tuple[float, datetime]] = {}
    for bucket in buckets:
        kw = demand_kw(bucket)
        day = bucket.bucket.astimezone(tz).date()
        if day not in best or kw > best[day][0]:
            best[day] = (kw, bucket.bucket)
    days = [
        DayPeak(day=day, peak_kw=kw, at=at, over_limit=limit_kw is not None and kw > limit_kw)
        for day, (kw, at) in sorted(best.items())
    ]
    top = max(days, key=lambda d: (d.peak_kw, -d.at.timestamp()), default=None)
    return PeakDemand(
        peak_kw=top.peak_kw if top else None,
        at=top.at if top else None,
        limit_kw=limit_kw,
        days=days,
    )

"""Energy and cost of a site per local hour, day or month.

Each priced UTC bucket (an hour, or a quarter-hour when the tariff needs it)
goes to the local period its start falls in (the rule of
:func:`vatio.store.rollup.energy_buckets`); hourly periods are UTC hours. A
period's cost is the sum of its priced buckets, or ``None`` when no bucket of
it had a tariff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from vatio.energy.pricing import EPOCH_ORDINAL, PricedBuckets, PricedHour, local_days, local_midnight
from vatio.model import EnergyPeriod


@dataclass(frozen=True, slots=True)
class CostBucket:
    """Energy and cost of one local period ``[start, end)`` (aware, in the query's zone)."""

    start: datetime
    end: datetime
    import_kwh: float
    export_kwh: float
    cost: float | None


@dataclass(frozen=True, slots=True)
class EnergyReport:
    """A site's energy over a range: buckets and totals (``total_cost`` ``None`` when nothing was priced)."""

    items: list[CostBucket]
    total_kwh: float
    total_export_kwh: float
    total_cost: float | None
    currency: str


def next_period(day: date, period: EnergyPeriod) -> date:
    if period is EnergyPeriod.MONTH:
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return day + timedelta(days=1)


def group_hours(hours: PricedBuckets | Sequence[PricedHour], period: EnergyPeriod, tz: ZoneInfo) -> list[CostBucket]:
    """Sum priced buckets (hours or quarter-hours) into local periods of ``tz``, oldest first.

    >>> from datetime import UTC
    >>> from vatio.energy.pricing import PricedHour
    >>> at = datetime(2026, 1, 1, 22, tzinfo=UTC)
    >>> hours = [PricedHour(at + timedelta(hours=k), 1000.0, 0.0, 0.2, 0.0, 0.05) for k in range(3)]
    >>> [(b.start.isoformat(), b.import_kwh, round(b.cost or 0, 2)) for b in group_hours(hours, EnergyPeriod.DAY,
    ...   ZoneInfo("Europe/Paris"))]
    [('2026-01-01T00:00:00+01:00', 1.0, 0.25), ('2026-01-02T00:00:00+01:00', 2.0, 0.5)]
    """
    priced = hours if isinstance(hours, PricedBuckets) else PricedBuckets.of(hours)
    if len(priced) == 0:
        return []
    if period is EnergyPeriod.HOUR:
        # Keyed by UTC: the two local 02:00 hours of an autumn night are different hours.
        keys = priced.start_s // 3600
    else:
        keys = local_days(tz, priced.start_s)
        if period is EnergyPeriod.MONTH:
            months = keys.astype("datetime64[D]").astype("datetime64[M]")
            keys = months.astype("datetime64[D]").astype(np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)
    # bincount adds in bucket order, as a running sum would.
    imports = np.bincount(inverse, weights=priced.import_wh, minlength=len(unique))
    exports = np.bincount(inverse, weights=priced.export_wh, minlength=len(unique))
    cost = priced.cost
    priced_rows = ~np.isnan(cost)
    costs = np.bincount(inverse[priced_rows], weights=cost[priced_rows], minlength=len(unique))
    counted = np.bincount(inverse[priced_rows], minlength=len(unique)) > 0
    buckets = []
    for k, key in enumerate(unique.tolist()):
        start, end = _period(key, period, tz)
        buckets.append(
            CostBucket(
                start=start.astimezone(tz),
                end=end.astimezone(tz),
                import_kwh=float(imports[k]) / 1000.0,
                export_kwh=float(exports[k]) / 1000.0,
                cost=float(costs[k]) if counted[k] else None,
            )
        )
    return buckets


def _period(key: int, period: EnergyPeriod, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC bounds of a period keyed by its UTC hour (hours) or its first local day (days since 1970)."""
    if period is EnergyPeriod.HOUR:
        start = datetime.fromtimestamp(key * 3600, UTC)
        return start, start + timedelta(hours=1)
    day = date.fromordinal(key + EPOCH_ORDINAL)
    return local_midnight(day, tz), local_midnight(next_period(day, period), tz)


def report(
    hours: PricedBuckets | Sequence[PricedHour], period: EnergyPeriod, tz: ZoneInfo, currency: str
) -> EnergyReport:
    """Buckets and totals of priced hours."""
    items = group_hours(hours, period, tz)
    costs = [b.cost for b in items if b.cost is not None]
    return EnergyReport(
        items=items,
        total_kwh=sum(b.import_kwh for b in items),
        total_export_kwh=sum(b.export_kwh for b in items),
        total_cost=sum(costs) if costs else None,
        currency=currency,
    )

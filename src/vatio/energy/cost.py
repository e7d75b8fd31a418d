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
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from vatio.energy.pricing import PricedHour, floor_hour, local_midnight
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


def period_start(local: datetime, period: EnergyPeriod) -> tuple[date, int]:
    """The local date a period starts on, and its hour (for hourly periods)."""
    if period is EnergyPeriod.HOUR:
        return local.date(), local.hour
    day = local.date()
    return (day.replace(day=1) if period is EnergyPeriod.MONTH else day), 0


def next_period(day: date, period: EnergyPeriod) -> date:
    if period is EnergyPeriod.MONTH:
        return date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return day + timedelta(days=1)


def group_hours(hours: Sequence[PricedHour], period: EnergyPeriod, tz: ZoneInfo) -> list[CostBucket]:
    """Sum priced buckets (hours or quarter-hours) into local periods of ``tz``, oldest first.

    >>> from datetime import UTC
    >>> from vatio.energy.pricing import PricedHour
    >>> at = datetime(2026, 1, 1, 22, tzinfo=UTC)
    >>> hours = [PricedHour(at + timedelta(hours=k), 1000.0, 0.0, 0.2, 0.0, 0.05) for k in range(3)]
    >>> [(b.start.isoformat(), b.import_kwh, round(b.cost or 0, 2)) for b in group_hours(hours, EnergyPeriod.DAY,
    ...   ZoneInfo("Europe/Paris"))]
    [('2026-01-01T00:00:00+01:00', 1.0, 0.25), ('2026-01-02T00:00:00+01:00', 2.0, 0.5)]
    """
    groups: dict[datetime, list[PricedHour]] = {}
    for hour in hours:
        local = hour.start.astimezone(tz)
        if period is EnergyPeriod.HOUR:
            # Keyed by UTC: the two local 02:00 hours of an autumn night are different hours.
            key = floor_hour(hour.start)
        else:
            day, _ = period_start(local, period)
            key = local_midnight(day, tz)
        groups.setdefault(key, []).append(hour)
    return [_bucket(key, members, period, tz) for key, members in sorted(groups.items())]


def _bucket(key: datetime, members: Sequence[PricedHour], period: EnergyPeriod, tz: ZoneInfo) -> CostBucket:
    if period is EnergyPeriod.HOUR:
        end = key + timedelta(hours=1)
    else:
        end = local_midnight(next_period(key.astimezone(tz).date(), period), tz)
    costs = [h.cost for h in members if h.cost is not None]
    return CostBucket(
        start=key.astimezone(tz),
        end=end.astimezone(tz),
        import_kwh=sum(h.import_wh for h in members) / 1000.0,
        export_kwh=sum(h.export_wh for h in members) / 1000.0,
        cost=sum(costs) if costs else None,
    )


def report(hours: Sequence[PricedHour], period: EnergyPeriod, tz: ZoneInfo, currency: str) -> EnergyReport:
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

"""Hour-by-hour pricing of a site's energy under its tariff history.

The rules, applied to every UTC hour of a query (hours hold whole local
hours in zones with whole-hour offsets, DST included):

* the tariff is the one in effect on the **local date** of the hour's start;
* import costs the hour's imported kWh × the time-of-use rate in effect at
  the hour's **local start time** (weekday and ``HH:MM``), so rates change on
  the hour; export earns exported kWh × ``export_price_per_kwh`` (if any);
* the standing charge of a local day is spread evenly over the hours that day
  has (23, 24 or 25), so a day costs exactly one standing charge, DST or not,
  and a part of a day costs its share; it is due whether or not energy flowed;
* an hour before the first tariff has no cost (``None``).

Everything is computed at query time from rollups and the stored tariffs: a
tariff added or changed later, even effective in the past, changes every cost
from its date on with nothing to invalidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from vatio.model import SiteBucket, Tariff, TariffHistory

HOUR = timedelta(hours=1)


def floor_hour(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(minute=0, second=0, microsecond=0)


def ceil_hour(ts: datetime) -> datetime:
    floored = floor_hour(ts)
    return floored if floored == ts else floored + HOUR


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant local ``day`` begins (the transition instant if midnight is skipped)."""
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def hours_in_local_day(day: date, tz: ZoneInfo) -> int:
    """How many UTC hours start within local ``day``: 23 or 25 on DST change days, else 24.

    >>> paris = ZoneInfo("Europe/Paris")
    >>> [hours_in_local_day(d, paris) for d in (date(2026, 3, 29), date(2026, 3, 30), date(2026, 10, 25))]
    [23, 24, 25]
    """
    first = ceil_hour(local_midnight(day, tz))
    last = ceil_hour(local_midnight(day + timedelta(days=1), tz))
    return (last - first) // HOUR


@dataclass(frozen=True, slots=True)
class PricedHour:
    """One UTC hour of a site: its energy and, when a tariff applies, its cost parts."""

    start: datetime
    import_wh: float
    export_wh: float
    energy_cost: float | None
    export_credit: float | None
    standing_cost: float | None

    @property
    def cost(self) -> float | None:
        """What the hour costs: import + standing share - export credit."""
        if self.energy_cost is None or self.standing_cost is None:
            return None
        return self.energy_cost + self.standing_cost - (self.export_credit or 0.0)


def price_hours(
    buckets: Iterable[SiteBucket],
    history: TariffHistory,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
) -> list[PricedHour]:
    """Every UTC hour from ``start`` (floored) to ``end`` (ceiled), priced.

    ``buckets`` are the site's hourly rollups; hours without one carry no
    energy but still their share of the standing charge.
    """
    energy = {b.bucket.astimezone(UTC): b for b in buckets}
    day_hours: dict[date, int] = {}
    hours: list[PricedHour] = []
    at, stop = floor_hour(start), ceil_hour(end)
    while at < stop:
        local = at.astimezone(tz)
        bucket = energy.get(at)
        import_wh = bucket.import_wh if bucket else 0.0
        export_wh = bucket.export_wh if bucket else 0.0
        tariff = history.on(local.date())
        if tariff is None:
            hours.append(PricedHour(at, import_wh, export_wh, None, None, None))
        else:
            if local.date() not in day_hours:
                day_hours[local.date()] = hours_in_local_day(local.date(), tz)
            hours.append(_priced(at, local, import_wh, export_wh, tariff, day_hours[local.date()]))
        at += HOUR
    return hours


def _priced(
    at: datetime, local: datetime, import_wh: float, export_wh: float, tariff: Tariff, day_hours: int
) -> PricedHour:
    price = tariff.price_at(weekday=local.weekday(), minute=local.hour * 60 + local.minute)
    credit = export_wh / 1000.0 * tariff.export_price_per_kwh if tariff.export_price_per_kwh is not None else 0.0
    return PricedHour(
        start=at,
        import_wh=import_wh,
        export_wh=export_wh,
        energy_cost=import_wh / 1000.0 * price,
        export_credit=credit,
        standing_cost=tariff.standing_charge_per_day / day_hours,
    )


def mean_week_price(tariff: Tariff) -> float:
    """The import price averaged over every minute of the week: what a constant load pays per kWh.

    >>> from vatio.model import Rate
    >>> day, night = (Rate(days=tuple(range(7)), start="06:00", end="24:00", price_per_kwh=0.3),
    ...               Rate(days=tuple(range(7)), start="00:00", end="06:00", price_per_kwh=0.1))
    >>> round(mean_week_price(Tariff(name="tou", currency="EUR", effective_from=date(2026, 1, 1),
    ...                              standing_charge_per_day=0, rates=(day, night))), 6)
    0.25
    """
    minutes = 7 * 1440
    return sum(tariff.price_at(weekday=m // 1440, minute=m % 1440) for m in range(minutes)) / minutes

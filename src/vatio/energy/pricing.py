"""Bucket-by-bucket pricing of a site's energy under its tariff history.

Costs come from UTC-aligned rollups. A range is priced from **hourly**
rollups (the fast path) when every tariff in force over it changes price only
on whole UTC hours, i.e. every rate boundary is on a whole local hour and the
zone's UTC offsets over the range are whole hours; otherwise (a boundary like
``00:30`` or ``07:15``, or a zone like ``Asia/Kolkata``) from **15-minute**
rollups (see :func:`pricing_step`). The rules, applied to every bucket:

* the tariff is the one in effect on the **local date** of the bucket's start;
* import costs the bucket's imported kWh × the time-of-use rate in effect over
  the bucket (the rate at its local start time, which holds for the whole
  bucket on the chosen grid); export earns exported kWh ×
  ``export_price_per_kwh`` (if any);
* the standing charge of a local day is spread evenly over the buckets that
  day has (23, 24 or 25 hours; 92, 96 or 100 quarters), so a day costs exactly
  one standing charge, DST or not, and a part of a day costs its share; it is
  due whether or not energy flowed;
* a bucket before the first tariff has no cost (``None``).

New tariffs must have their boundaries on a 15-minute grid
(:func:`check_quarter_hours`). A tariff stored before that rule with a
boundary inside a quarter is priced, in the quarters that straddle it, at the
minute-weighted mean of its rates (the load is taken as even within a quarter).

Everything is computed at query time from rollups and the stored tariffs: a
tariff added or changed later, even effective in the past, changes every cost
from its date on with nothing to invalidate.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from vatio.errors import ConfigError
from vatio.model import Resolution, SiteBucket, Tariff, TariffHistory
from vatio.model.tariff import MINUTES_PER_DAY, parse_hhmm

HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)
_STEP_RESOLUTION = {HOUR: Resolution.HOUR_1, QUARTER: Resolution.MIN_15}


def floor_to(ts: datetime, step: timedelta) -> datetime:
    """``ts`` in UTC, floored to a multiple of ``step`` (an hour or a divisor of one)."""
    seconds = int(step.total_seconds())
    ts = ts.astimezone(UTC).replace(microsecond=0)
    return ts - timedelta(seconds=(ts.minute * 60 + ts.second) % seconds)


def ceil_to(ts: datetime, step: timedelta) -> datetime:
    floored = floor_to(ts, step)
    return floored if floored == ts else floored + step


def floor_hour(ts: datetime) -> datetime:
    return floor_to(ts, HOUR)


def ceil_hour(ts: datetime) -> datetime:
    return ceil_to(ts, HOUR)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant local ``day`` begins (the transition instant if midnight is skipped)."""
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def buckets_in_local_day(day: date, tz: ZoneInfo, step: timedelta) -> int:
    """How many UTC buckets of ``step`` start within local ``day``.

    >>> london = ZoneInfo("Europe/London")
    >>> [buckets_in_local_day(d, london, QUARTER) for d in (date(2026, 3, 29), date(2026, 10, 25))]
    [92, 100]
    """
    first = ceil_to(local_midnight(day, tz), step)
    last = ceil_to(local_midnight(day + timedelta(days=1), tz), step)
    return (last - first) // step


def hours_in_local_day(day: date, tz: ZoneInfo) -> int:
    """How many UTC hours start within local ``day``: 23 or 25 on DST change days, else 24.

    >>> paris = ZoneInfo("Europe/Paris")
    >>> [hours_in_local_day(d, paris) for d in (date(2026, 3, 29), date(2026, 3, 30), date(2026, 10, 25))]
    [23, 24, 25]
    """
    return buckets_in_local_day(day, tz, HOUR)


def boundaries(tariff: Tariff) -> tuple[int, ...]:
    """The local minutes of the day where ``tariff``'s price may change, midnight included, sorted.

    >>> from vatio.model import Rate
    >>> boundaries(Tariff(name="e7", currency="GBP", effective_from=date(2026, 1, 1), standing_charge_per_day=0,
    ...     rates=(Rate(days=tuple(range(7)), start="00:30", end="07:30", price_per_kwh=0.1),
    ...            Rate(days=tuple(range(7)), start="07:30", end="00:30", price_per_kwh=0.3))))
    (0, 30, 450, 1440)
    """
    minutes = {0, MINUTES_PER_DAY}
    for rate in tariff.rates:
        minutes |= {parse_hhmm(rate.start) % MINUTES_PER_DAY, parse_hhmm(rate.end) % MINUTES_PER_DAY}
    return tuple(sorted(minutes))


def check_quarter_hours(tariff: Tariff) -> None:
    """:class:`~vatio.errors.ConfigError` unless every rate starts and ends on a 15-minute boundary.

    >>> from vatio.model import Rate
    >>> day, night = (Rate(days=tuple(range(7)), start="07:10", end="23:00", price_per_kwh=0.3),
    ...               Rate(days=tuple(range(7)), start="23:00", end="07:10", price_per_kwh=0.1))
    >>> check_quarter_hours(Tariff(name="x", currency="EUR", effective_from=date(2026, 1, 1),  # doctest: +ELLIPSIS
    ...                            standing_charge_per_day=0, rates=(day, night)))
    Traceback (most recent call last):
    ...
    vatio.errors.ConfigError: rate 07:10-23:00 starts at 07:10: rate times must be on a 15-minute boundary (:00, ...
    """
    for rate in tariff.rates:
        for which, text in (("starts", rate.start), ("ends", rate.end)):
            if parse_hhmm(text) % 15:
                raise ConfigError(
                    f"rate {rate.start}-{rate.end} {which} at {text}: rate times must be on a 15-minute boundary"
                    " (:00, :15, :30 or :45)"
                )


def tariffs_in_force(history: TariffHistory, tz: ZoneInfo, start: datetime, end: datetime) -> list[Tariff]:
    """The tariffs that apply on some local date of ``[start, end)`` in ``tz``, oldest first."""
    if end <= start:
        return []
    first = start.astimezone(tz).date()
    last = (end - timedelta(microseconds=1)).astimezone(tz).date()
    current = history.on(first)
    later = [t for t in history.tariffs if first < t.effective_from <= last]
    return ([current] if current is not None else []) + later


def _offsets_minutes(tz: ZoneInfo, start: datetime, end: datetime) -> set[int]:
    """The UTC offsets (in minutes) ``tz`` uses over ``[start, end)``, sampled daily and at both ends.

    Offsets last months, so a daily sample sees every one a range spans.
    """
    instants = [start, max(start, end - HOUR)]
    at = start + timedelta(days=1)
    while at < end:
        instants.append(at)
        at += timedelta(days=1)
    offsets: set[int] = set()
    for instant in instants:
        offset = instant.astimezone(tz).utcoffset()
        offsets.add(int(offset.total_seconds() // 60) if offset is not None else 0)
    return offsets


def pricing_step(history: TariffHistory, tz: ZoneInfo, start: datetime, end: datetime) -> timedelta:
    """The bucket width that prices ``[start, end)`` exactly: :data:`HOUR` or :data:`QUARTER`.

    An hour, the fast path, when every tariff in force changes price only on whole UTC hours
    (every boundary on a whole local hour, and the zone's offsets whole hours); else a quarter.
    """
    tariffs = tariffs_in_force(history, tz, start, end)
    if not tariffs:
        return HOUR
    edges = {b for t in tariffs for b in boundaries(t)}
    if any(b % 60 for b in edges):
        return QUARTER
    if any(offset % 60 for offset in _offsets_minutes(tz, start, end)):
        return QUARTER
    return HOUR


def rollup_resolution(step: timedelta) -> Resolution:
    """The rollup tier whose buckets are ``step`` wide."""
    return _STEP_RESOLUTION[step]


@dataclass(frozen=True, slots=True)
class PricedHour:
    """One priced UTC bucket of a site (an hour, or a quarter-hour when the range needs it).

    Its energy and, when a tariff applies, its cost parts.
    """

    start: datetime
    import_wh: float
    export_wh: float
    energy_cost: float | None
    export_credit: float | None
    standing_cost: float | None

    @property
    def cost(self) -> float | None:
        """What the bucket costs: import + standing share - export credit."""
        if self.energy_cost is None or self.standing_cost is None:
            return None
        return self.energy_cost + self.standing_cost - (self.export_credit or 0.0)


def price_hours(
    buckets: Iterable[SiteBucket],
    history: TariffHistory,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    *,
    step: timedelta = HOUR,
) -> list[PricedHour]:
    """Every UTC bucket of ``step`` from ``start`` (floored) to ``end`` (ceiled), priced.

    ``buckets`` are the site's rollups of that width (:func:`rollup_resolution`);
    buckets without one carry no energy but still their share of the standing charge.
    """
    energy = {b.bucket.astimezone(UTC): b for b in buckets}
    day_buckets: dict[date, int] = {}
    edges: dict[int, tuple[int, ...]] = {}
    # A year of quarters repeats a week's 672 prices per tariff: look each up once.
    prices: dict[tuple[int, int, int, int], float] = {}
    priced: list[PricedHour] = []
    at, stop = floor_to(start, step), ceil_to(end, step)
    while at < stop:
        local = at.astimezone(tz)
        bucket = energy.get(at)
        import_wh = bucket.import_wh if bucket else 0.0
        export_wh = bucket.export_wh if bucket else 0.0
        tariff = history.on(local.date())
        if tariff is None:
            priced.append(PricedHour(at, import_wh, export_wh, None, None, None))
        else:
            if local.date() not in day_buckets:
                day_buckets[local.date()] = buckets_in_local_day(local.date(), tz, step)
            if id(tariff) not in edges:
                edges[id(tariff)] = boundaries(tariff)
            key = (id(tariff), local.weekday(), local.hour, local.minute)
            price = prices.get(key)
            if price is None:
                price = prices[key] = _price(tariff, edges[id(tariff)], local, step)
            priced.append(_priced(at, import_wh, export_wh, tariff, price, day_buckets[local.date()]))
        at += step
    return priced


def _price(tariff: Tariff, edges: tuple[int, ...], local: datetime, step: timedelta) -> float:
    """The import price over the bucket starting at ``local``: its start's rate, or the minute mean if it changes."""
    weekday, minute = local.weekday(), local.hour * 60 + local.minute
    width = step // timedelta(minutes=1)
    if edges[bisect_right(edges, minute)] >= minute + width:
        return tariff.price_at(weekday=weekday, minute=minute)
    week = [(weekday * MINUTES_PER_DAY + minute + k) % (7 * MINUTES_PER_DAY) for k in range(width)]
    return sum(tariff.price_at(weekday=m // MINUTES_PER_DAY, minute=m % MINUTES_PER_DAY) for m in week) / width


def _priced(
    at: datetime, import_wh: float, export_wh: float, tariff: Tariff, price: float, day_buckets: int
) -> PricedHour:
    credit = export_wh / 1000.0 * tariff.export_price_per_kwh if tariff.export_price_per_kwh is not None else 0.0
    return PricedHour(
        start=at,
        import_wh=import_wh,
        export_wh=export_wh,
        energy_cost=import_wh / 1000.0 * price,
        export_credit=credit,
        standing_cost=tariff.standing_charge_per_day / day_buckets,
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
    week = [divmod(m, MINUTES_PER_DAY) for m in range(7 * MINUTES_PER_DAY)]
    return sum(tariff.price_at(weekday=day, minute=minute) for day, minute in week) / len(week)

"""Bucket-by-bucket pricing of a site's energy under its tariff history.

Costs come from UTC-aligned rollups. A range is priced from **hourly**
rollups (the fast path) when every tariff in force over it changes price only
on whole UTC hours, i.e. every rate boundary is on a whole local hour and the
zone's UTC offsets over the range are whole hours. A boundary like ``00:30``
or ``07:15`` splits the hours it falls in into **15-minute** rollups, and a
zone like ``Asia/Kolkata`` prices every quarter (see :func:`pricing_plan`).
The rules, applied to every bucket:

* the tariff is the one in effect on the **local date** of the bucket's start;
* import costs the bucket's imported kWh × the time-of-use rate in effect over
  the bucket (the rate at its local start time, which holds for the whole
  bucket on the chosen grid); export earns exported kWh ×
  ``export_price_per_kwh`` (if any);
* the standing charge of a local day is spread evenly over the time that day
  has (23, 24 or 25 hours; a quarter costs a quarter of an hour's share), so a day costs exactly
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

import itertools
import math
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from vatio.detect.base import FloatArray, IntArray
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


@dataclass(frozen=True, slots=True)
class PricingPlan:
    """How a range is priced: buckets of ``step``, and with an hourly step the UTC hours of the day in
    ``split`` by quarter (the hours a tariff boundary like ``00:30`` falls in)."""

    step: timedelta
    split: frozenset[int] = frozenset()


def pricing_plan(history: TariffHistory, tz: ZoneInfo, start: datetime, end: datetime) -> PricingPlan:
    """The buckets that price ``[start, end)`` exactly, fetching as few as it can.

    * every tariff in force changes price only on whole local hours and the zone's offsets are
      whole hours: hours (the fast path);
    * some boundary is off the hour (Economy 7's ``00:30``) but the offsets are whole hours, and
      the range starts and ends on whole hours: hours, except the UTC hours of the day a boundary
      falls in under any of the range's offsets, which are split into quarters;
    * otherwise (a zone like ``Asia/Kolkata``, or a range from ``10:15``): quarters throughout.

    >>> from vatio.model import Rate
    >>> e7 = Tariff(name="e7", currency="GBP", effective_from=date(2026, 1, 1), standing_charge_per_day=0,
    ...     rates=(Rate(days=tuple(range(7)), start="00:30", end="07:30", price_per_kwh=0.1),
    ...            Rate(days=tuple(range(7)), start="07:30", end="00:30", price_per_kwh=0.3)))
    >>> plan = pricing_plan(TariffHistory([e7]), ZoneInfo("Europe/London"),
    ...                     datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    >>> plan.step == HOUR, sorted(plan.split)
    (True, [0, 6, 7, 23])
    """
    lo, hi = floor_hour(start), ceil_hour(end)
    tariffs = tariffs_in_force(history, tz, lo, hi)
    if not tariffs:
        return PricingPlan(HOUR)
    # Over the whole local days the range touches: a day's standing charge is shared by all its
    # buckets, so a day whose other part is in a half-hour offset (Lord Howe's +10:30) needs quarters.
    first = lo.astimezone(tz).date()
    last = (hi - timedelta(microseconds=1)).astimezone(tz).date()
    offsets = _offsets_minutes(tz, local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz))
    if any(offset % 60 for offset in offsets):
        return PricingPlan(QUARTER)
    odd = {b for t in tariffs for b in boundaries(t) if b % 60}
    if not odd:
        return PricingPlan(HOUR)
    if lo != start or hi != end:
        return PricingPlan(QUARTER)
    return PricingPlan(HOUR, frozenset(((b - offset) // 60) % 24 for b in odd for offset in offsets))


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


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True, slots=True)
class PricedBuckets:
    """Priced UTC buckets as columns, oldest first: what :func:`price_hours` returns.

    ``start_s`` are epoch seconds of the buckets' starts; a cost part is NaN where no tariff
    applies. Iterating gives :class:`PricedHour` rows (``None`` for NaN).
    """

    start_s: IntArray
    import_wh: FloatArray
    export_wh: FloatArray
    energy_cost: FloatArray
    export_credit: FloatArray
    standing_cost: FloatArray

    @classmethod
    def of(cls, rows: Sequence[PricedHour]) -> PricedBuckets:
        def column(values: Iterable[float | None]) -> FloatArray:
            return np.array([math.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            start_s=np.array([int(r.start.timestamp()) for r in rows], dtype=np.int64),
            import_wh=column(r.import_wh for r in rows),
            export_wh=column(r.export_wh for r in rows),
            energy_cost=column(r.energy_cost for r in rows),
            export_credit=column(r.export_credit for r in rows),
            standing_cost=column(r.standing_cost for r in rows),
        )

    @property
    def cost(self) -> FloatArray:
        """Per bucket: import + standing share - export credit (NaN without a tariff), as :attr:`PricedHour.cost`."""
        total: FloatArray = self.energy_cost + self.standing_cost - np.nan_to_num(self.export_credit)
        return total

    def __len__(self) -> int:
        return len(self.start_s)

    def __getitem__(self, i: int) -> PricedHour:
        return PricedHour(
            start=datetime.fromtimestamp(int(self.start_s[i]), UTC),
            import_wh=float(self.import_wh[i]),
            export_wh=float(self.export_wh[i]),
            energy_cost=_nan_to_none(float(self.energy_cost[i])),
            export_credit=_nan_to_none(float(self.export_credit[i])),
            standing_cost=_nan_to_none(float(self.standing_cost[i])),
        )

    def __iter__(self) -> Iterator[PricedHour]:
        return (self[i] for i in range(len(self)))


def utc_offsets_s(tz: ZoneInfo, instants_s: IntArray) -> IntArray:
    """The UTC offset (seconds) of ``tz`` at each instant (epoch seconds).

    Exact at any second: the zone is sampled daily over the instants' span, and
    each change between two samples is found by bisection. Assumes a zone's
    offset changes at most once a day, as every zone's does.

    >>> paris = ZoneInfo("Europe/Paris")
    >>> change = int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp())
    >>> utc_offsets_s(paris, np.array([change - 1, change, change + 86400 * 220])).tolist()
    [3600, 7200, 3600]
    """

    def offset(at: int) -> int:
        delta = datetime.fromtimestamp(at, tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    if len(instants_s) == 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = int(instants_s.min()), int(instants_s.max())
    samples = [*range(lo, hi, 86400), hi]
    changes: list[int] = []
    offsets = [offset(samples[0])]
    for before, after in itertools.pairwise(samples):
        if (now := offset(after)) == offsets[-1]:
            continue
        below, above = before, after  # offset(below) is the old one, offset(above) the new
        while above - below > 1:
            middle = (below + above) // 2
            below, above = (middle, above) if offset(middle) == offsets[-1] else (below, middle)
        changes.append(above)
        offsets.append(now)
    result: IntArray = np.asarray(offsets, dtype=np.int64)[np.searchsorted(changes, instants_s, side="right")]
    return result


def local_days(tz: ZoneInfo, instants_s: IntArray) -> IntArray:
    """The local date of each instant in ``tz``, as days since 1970-01-01."""
    days: IntArray = (instants_s + utc_offsets_s(tz, instants_s)) // 86400
    return days


EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _grid(start: datetime, end: datetime, step: timedelta, split: frozenset[int]) -> tuple[IntArray, IntArray]:
    """Bucket starts and widths (seconds) from ``start`` to ``end``; ``split`` UTC hours as four quarters."""
    step_s = int(step.total_seconds())
    lo, hi = int(floor_to(start, step).timestamp()), int(ceil_to(end, step).timestamp())
    starts = np.arange(lo, hi, step_s, dtype=np.int64)
    if not split or step != HOUR:
        return starts, np.full(len(starts), step_s, dtype=np.int64)
    counts = np.where(np.isin((starts // 3600) % 24, sorted(split)), 4, 1)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    widths = np.repeat(np.where(counts == 4, 900, 3600), counts)
    return np.repeat(starts, counts) + within * widths, widths


def _fill(into: FloatArray, starts: IntArray, widths: IntArray, buckets: Iterable[SiteBucket], width: int) -> None:
    """Put the buckets' imports (column 0) and exports (1) at the grid rows of their start and width."""
    rows = [(int(b.bucket.timestamp()), b.import_wh, b.export_wh) for b in buckets]
    if not rows or len(starts) == 0:
        return
    table = np.array(rows, dtype=np.float64)
    at = table[:, 0].astype(np.int64)
    pos = np.minimum(np.searchsorted(starts, at), len(starts) - 1)
    ok = (starts[pos] == at) & (widths[pos] == width)
    into[pos[ok], 0] = table[ok, 1]
    into[pos[ok], 1] = table[ok, 2]


def price_hours(
    buckets: Iterable[SiteBucket],
    history: TariffHistory,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    *,
    step: timedelta = HOUR,
    quarters: Iterable[SiteBucket] = (),
    split: frozenset[int] = frozenset(),
) -> PricedBuckets:
    """Every UTC bucket of ``step`` from ``start`` (floored) to ``end`` (ceiled), priced.

    ``buckets`` are the site's rollups of that width (:func:`rollup_resolution`);
    buckets without one carry no energy but still their share of the standing charge.
    With an hourly ``step``, the hours that start in a UTC hour of the day in ``split``
    are priced as their four quarters instead, from the 15-minute rollups ``quarters``
    (:class:`PricingPlan`). Prices are looked up once per distinct (tariff, weekday,
    local time, width), standing shares once per (local day, width).
    """
    starts, widths = _grid(start, end, step, split if step == HOUR else frozenset())
    energy = np.zeros((len(starts), 2))
    _fill(energy, starts, widths, buckets, int(step.total_seconds()))
    _fill(energy, starts, widths, quarters, 900)
    local = starts + utc_offsets_s(tz, starts)
    day = local // 86400
    tariffs = history.tariffs
    effective = np.array([t.effective_from.toordinal() - EPOCH_ORDINAL for t in tariffs], dtype=np.int64)
    which = np.searchsorted(effective, day, side="right") - 1
    has = which >= 0
    price = np.full(len(starts), math.nan)
    standing = np.full(len(starts), math.nan)
    # One key per distinct price: tariff, minute of the week, width in minutes (<= 60).
    minute_of_week = ((day + 3) % 7) * MINUTES_PER_DAY + (local % 86400) // 60
    keys = (which * 7 * MINUTES_PER_DAY + minute_of_week) * 61 + widths // 60
    edges = [boundaries(t) for t in tariffs]
    unique, inverse = np.unique(keys[has], return_inverse=True)
    lookup = []
    for key in unique.tolist():
        rest, width = divmod(key, 61)
        t, minute = divmod(rest, 7 * MINUTES_PER_DAY)
        lookup.append(_price(tariffs[t], edges[t], minute, width))
    price[has] = np.asarray(lookup, dtype=np.float64)[inverse]
    # The standing charge of a local day, shared by the buckets starting in it (of this width).
    day_keys = day * 61 + widths // 60
    unique, inverse = np.unique(day_keys[has], return_inverse=True)
    shares = []
    for key in unique.tolist():
        local_day, width = divmod(key, 61)
        local_date = date.fromordinal(local_day + EPOCH_ORDINAL)
        tariff = history.on(local_date)
        assert tariff is not None  # `has`: a tariff applies on that date
        shares.append(tariff.standing_charge_per_day / buckets_in_local_day(local_date, tz, timedelta(minutes=width)))
    standing[has] = np.asarray(shares, dtype=np.float64)[inverse]
    # Indexed by `which`: -1 (no tariff yet) takes the NaN at the end.
    export_price = np.array([t.export_price_per_kwh or 0.0 for t in tariffs] + [math.nan], dtype=np.float64)
    return PricedBuckets(
        start_s=starts,
        import_wh=energy[:, 0],
        export_wh=energy[:, 1],
        energy_cost=energy[:, 0] / 1000.0 * price,
        export_credit=energy[:, 1] / 1000.0 * export_price[which],
        standing_cost=standing,
    )


def _price(tariff: Tariff, edges: tuple[int, ...], minute_of_week: int, width: int) -> float:
    """The import price over ``width`` minutes from ``minute_of_week``: its start's rate, or the minute mean."""
    weekday, minute = divmod(minute_of_week, MINUTES_PER_DAY)
    if edges[bisect_right(edges, minute)] >= minute + width:
        return tariff.price_at(weekday=weekday, minute=minute)
    week = [(minute_of_week + k) % (7 * MINUTES_PER_DAY) for k in range(width)]
    return sum(tariff.price_at(weekday=m // MINUTES_PER_DAY, minute=m % MINUTES_PER_DAY) for m in week) / width


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

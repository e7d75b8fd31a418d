"""Sites and their electricity tariffs: pure types with validation, no I/O.

A site has a history of tariffs; the one whose ``effective_from`` is the
latest on or before a local date applies on that date. A tariff prices every
minute of every weekday exactly once: its time-of-use rates may not overlap
and must cover the whole week, so a cost is never silently zero.

Weekdays are numbered like :meth:`datetime.date.weekday`: 0 = Monday ... 6 = Sunday.
Times are local wall-clock ``HH:MM``; ``end`` is exclusive and may be
``24:00``; a rate whose ``end`` is before its ``start`` wraps past midnight
(``22:00``-``06:00``) and applies on the listed weekday of each minute it
covers (a night rate for Monday night lists the days of both halves).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from vatio.errors import ConfigError

MINUTES_PER_DAY = 1440
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HHMM = re.compile(r"^(\d{2}):(\d{2})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_SITE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_hhmm(text: str) -> int:
    """Minutes since local midnight of ``HH:MM`` (``24:00`` allowed as an end).

    >>> parse_hhmm("07:30"), parse_hhmm("24:00")
    (450, 1440)
    """
    match = _HHMM.match(text)
    if not match:
        raise ConfigError(f"time {text!r} is not HH:MM")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ConfigError(f"time {text!r} is out of range 00:00-24:00")
    return hours * 60 + minutes


def format_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


#: Bound on prices and charges: far above any real tariff, far below where sums overflow to infinity.
MAX_AMOUNT = 1e6


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value) or abs(value) > MAX_AMOUNT:
        raise ConfigError(f"{name} must be a finite number within ±{MAX_AMOUNT:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """A time-of-use price: ``price_per_kwh`` on ``days`` from ``start`` to ``end`` (local ``HH:MM``)."""

    days: tuple[int, ...]
    start: str
    end: str
    price_per_kwh: float

    def __post_init__(self) -> None:
        if not self.days:
            raise ConfigError("a rate needs at least one weekday")
        if any(d not in range(7) for d in self.days) or len(set(self.days)) != len(self.days):
            raise ConfigError(f"weekdays must be distinct numbers 0 (Monday) to 6 (Sunday), got {list(self.days)}")
        if parse_hhmm(self.start) == parse_hhmm(self.end) or parse_hhmm(self.start) == MINUTES_PER_DAY:
            raise ConfigError(f"rate {self.start}-{self.end} is empty")
        _finite("price_per_kwh", self.price_per_kwh)

    def minutes(self) -> list[tuple[int, int]]:
        """``(weekday, minute of day)`` ranges as half-open spans of week minutes."""
        start, end = parse_hhmm(self.start), parse_hhmm(self.end)
        spans: list[tuple[int, int]] = []
        for day in self.days:
            base = day * MINUTES_PER_DAY
            if start < end:
                spans.append((base + start, base + end))
            else:  # wraps past midnight: both halves on the listed day
                spans += [(base + start, base + MINUTES_PER_DAY), (base, base + end)]
        return spans


def _week_prices(rates: Sequence[Rate]) -> tuple[float, ...]:
    """Price of every minute of the week; rejects overlaps and holes."""
    week: list[float | None] = [None] * (7 * MINUTES_PER_DAY)
    for rate in rates:
        for lo, hi in rate.minutes():
            clash = next((m for m in range(lo, hi) if week[m] is not None), None)
            if clash is not None:
                raise ConfigError(f"rates overlap on {_where(clash)}")
            week[lo:hi] = [rate.price_per_kwh] * (hi - lo)
    hole = next((m for m, price in enumerate(week) if price is None), None)
    if hole is not None:
        raise ConfigError(f"rates leave {_where(hole)} without a price: cover every minute of the week")
    return tuple(p for p in week if p is not None)


def _where(week_minute: int) -> str:
    day, minute = divmod(week_minute, MINUTES_PER_DAY)
    return f"{DAY_NAMES[day]} {format_hhmm(minute)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tariff:
    """A site's tariff from ``effective_from`` (a local date) until the next one.

    >>> flat = Tariff(name="flat", currency="EUR", effective_from=date(2026, 1, 1), standing_charge_per_day=0.5,
    ...               rates=(Rate(days=tuple(range(7)), start="00:00", end="24:00", price_per_kwh=0.25),))
    >>> flat.price_at(weekday=2, minute=13 * 60)
    0.25
    >>> Tariff(name="x", currency="EUR", effective_from=date(2026, 1, 1), standing_charge_per_day=0.0,
    ...        rates=(Rate(days=(0,), start="00:00", end="24:00", price_per_kwh=0.2),))
    Traceback (most recent call last):
    ...
    vatio.errors.ConfigError: rates leave Tue 00:00 without a price: cover every minute of the week
    """

    name: str
    currency: str
    effective_from: date
    standing_charge_per_day: float
    rates: tuple[Rate, ...]
    export_price_per_kwh: float | None = None
    id: int | None = None
    _week: tuple[float, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > 200:
            raise ConfigError("tariff name must be 1-200 characters")
        if "\x00" in self.name:  # PostgreSQL text cannot hold it (a tariff file may spell it \u0000)
            raise ConfigError("tariff name must not contain NUL characters")
        if not _CURRENCY.match(self.currency):
            raise ConfigError(f"currency must be an ISO 4217 code like EUR, got {self.currency!r}")
        if _finite("standing_charge_per_day", self.standing_charge_per_day) < 0:
            raise ConfigError("standing_charge_per_day must not be negative")
        if self.export_price_per_kwh is not None:
            _finite("export_price_per_kwh", self.export_price_per_kwh)
        if not self.rates:
            raise ConfigError("a tariff needs at least one rate")
        object.__setattr__(self, "_week", _week_prices(self.rates))

    def price_at(self, *, weekday: int, minute: int) -> float:
        """Import price per kWh at a local weekday and minute of the day."""
        return self._week[weekday * MINUTES_PER_DAY + minute]


class TariffHistory:
    """The tariffs of one site, ordered by ``effective_from``; answers which applies on a date.

    >>> rate = (Rate(days=tuple(range(7)), start="00:00", end="24:00", price_per_kwh=0.2),)
    >>> old = Tariff(name="old", currency="EUR", effective_from=date(2025, 1, 1), standing_charge_per_day=0, rates=rate)
    >>> new = Tariff(name="new", currency="EUR", effective_from=date(2026, 1, 1), standing_charge_per_day=0, rates=rate)
    >>> history = TariffHistory([new, old])
    >>> history.on(date(2025, 12, 31)).name, history.on(date(2026, 1, 1)).name, history.on(date(2024, 1, 1))
    ('old', 'new', None)
    """

    def __init__(self, tariffs: Sequence[Tariff]) -> None:
        self.tariffs = sorted(tariffs, key=lambda t: t.effective_from)
        self._starts = [t.effective_from for t in self.tariffs]

    def on(self, day: date) -> Tariff | None:
        """The tariff in effect on local date ``day``, or ``None`` before the first."""
        i = bisect_right(self._starts, day)
        return self.tariffs[i - 1] if i else None

    def __bool__(self) -> bool:
        return bool(self.tariffs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Site:
    """A household or building: its settings (devices join it by publishing under its id).

    ``peak_limit_kw`` is the contracted demand limit that 15-minute peaks are compared with.
    ``main_meters`` are the devices that together measure the whole site (sub-meters and plugs
    behind them are not added again); empty means every device of the site.

    >>> Site(site_id="home-1").tz
    'UTC'
    >>> Site(site_id="home-1", main_meters=("home-1-main",)).main_meters
    ('home-1-main',)
    """

    site_id: str
    name: str | None = None
    tz: str = "UTC"
    currency: str = "EUR"
    peak_limit_kw: float | None = None
    main_meters: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _SITE_ID.match(self.site_id):
            raise ConfigError(f"site id {self.site_id!r} must match [A-Za-z0-9_-]{{1,64}}")
        if not _CURRENCY.match(self.currency):
            raise ConfigError(f"currency must be an ISO 4217 code like EUR, got {self.currency!r}")
        if self.peak_limit_kw is not None and not (_finite("peak_limit_kw", self.peak_limit_kw) > 0):
            raise ConfigError("peak_limit_kw must be positive")
        if len(set(self.main_meters)) != len(self.main_meters):
            raise ConfigError(f"main_meters lists a device twice: {list(self.main_meters)}")

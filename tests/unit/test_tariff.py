"""Tariff validation and hour-by-hour pricing across local days, DST change days included.

Expected costs are worked out here by hand from the tariff's rules, never by the code under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from vatio.energy.cost import group_hours, report
from vatio.energy.pricing import hours_in_local_day, mean_week_price, price_hours
from vatio.errors import ConfigError
from vatio.model import EnergyPeriod, Rate, SiteBucket, Tariff, TariffHistory

PARIS = ZoneInfo("Europe/Paris")
ALL_DAYS = tuple(range(7))
DAY_PRICE, NIGHT_PRICE, STANDING = 0.30, 0.10, 0.48


def tou(effective: date = date(2026, 1, 1), **kwargs: Any) -> Tariff:
    """Day 07:00-23:00 at 0.30, night 23:00-07:00 (wrapping midnight) at 0.10, 0.48 a day."""
    fields: dict[str, Any] = {
        "name": "tou",
        "currency": "EUR",
        "effective_from": effective,
        "standing_charge_per_day": STANDING,
        "rates": (
            Rate(days=ALL_DAYS, start="07:00", end="23:00", price_per_kwh=DAY_PRICE),
            Rate(days=ALL_DAYS, start="23:00", end="07:00", price_per_kwh=NIGHT_PRICE),
        ),
    }
    fields.update(kwargs)
    return Tariff(**fields)


def flat(price: float, effective: date, standing: float = 0.0) -> Tariff:
    rate = Rate(days=ALL_DAYS, start="00:00", end="24:00", price_per_kwh=price)
    return Tariff(name=f"flat {price}", currency="EUR", effective_from=effective, standing_charge_per_day=standing,
                  rates=(rate,))  # fmt: skip


def hourly(start: datetime, hours: int, import_wh: float, export_wh: float = 0.0) -> list[SiteBucket]:
    return [SiteBucket(start + timedelta(hours=k), 1, import_wh, import_wh, export_wh) for k in range(hours)]


# -- validation ------------------------------------------------------------------------


def test_wrapping_night_rate_prices_both_sides_of_midnight() -> None:
    tariff = tou()
    assert tariff.price_at(weekday=0, minute=23 * 60 + 30) == NIGHT_PRICE
    assert tariff.price_at(weekday=1, minute=6 * 60 + 59) == NIGHT_PRICE
    assert tariff.price_at(weekday=1, minute=7 * 60) == DAY_PRICE


def test_weekday_rates_differ_from_weekend() -> None:
    weekday = Rate(days=(0, 1, 2, 3, 4), start="00:00", end="24:00", price_per_kwh=0.3)
    weekend = Rate(days=(5, 6), start="00:00", end="24:00", price_per_kwh=0.2)
    tariff = Tariff(name="w", currency="EUR", effective_from=date(2026, 1, 1), standing_charge_per_day=0,
                    rates=(weekday, weekend))  # fmt: skip
    assert [tariff.price_at(weekday=d, minute=600) for d in range(7)] == [0.3] * 5 + [0.2] * 2


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ((Rate(days=ALL_DAYS, start="00:00", end="12:00", price_per_kwh=0.2),), "Mon 12:00 without a price"),
        (
            (
                Rate(days=ALL_DAYS, start="00:00", end="24:00", price_per_kwh=0.2),
                Rate(days=(2,), start="10:00", end="11:00", price_per_kwh=0.5),
            ),
            "overlap on Wed 10:00",
        ),
        (
            (
                Rate(days=ALL_DAYS, start="07:00", end="23:00", price_per_kwh=0.3),
                Rate(days=ALL_DAYS, start="22:00", end="07:00", price_per_kwh=0.1),
            ),
            "overlap on Mon 22:00",
        ),
        ((), "at least one rate"),
    ],
)
def test_overlapping_or_incomplete_rates_are_rejected(rates: tuple[Rate, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tou(rates=rates)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": (), "start": "00:00", "end": "24:00"}, "at least one weekday"),
        ({"days": (7,), "start": "00:00", "end": "24:00"}, "0 \\(Monday\\) to 6"),
        ({"days": (1, 1), "start": "00:00", "end": "24:00"}, "distinct"),
        ({"days": (1,), "start": "7:00", "end": "24:00"}, "not HH:MM"),
        ({"days": (1,), "start": "07:60", "end": "24:00"}, "out of range"),
        ({"days": (1,), "start": "24:00", "end": "07:00"}, "empty"),
        ({"days": (1,), "start": "07:00", "end": "07:00"}, "empty"),
    ],
)
def test_bad_rates_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Rate(price_per_kwh=0.1, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"currency": "eur"}, "ISO 4217"),
        ({"standing_charge_per_day": -1.0}, "not be negative"),
        ({"standing_charge_per_day": float("nan")}, "finite"),
        ({"name": " "}, "name"),
        ({"export_price_per_kwh": float("inf")}, "finite"),
        ({"export_price_per_kwh": 1e300}, "within"),
    ],
)
def test_bad_tariff_fields_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tou(**kwargs)


def test_history_picks_the_latest_tariff_on_or_before_a_date() -> None:
    history = TariffHistory([flat(0.5, date(2026, 3, 1)), flat(0.2, date(2026, 1, 1))])
    assert history.on(date(2025, 12, 31)) is None
    assert history.on(date(2026, 2, 28)).effective_from == date(2026, 1, 1)  # type: ignore[union-attr]
    assert history.on(date(2026, 3, 1)).effective_from == date(2026, 3, 1)  # type: ignore[union-attr]


# -- pricing across local days -------------------------------------------------------------


def test_local_day_lengths_follow_dst() -> None:
    assert hours_in_local_day(date(2026, 3, 29), PARIS) == 23
    assert hours_in_local_day(date(2026, 10, 25), PARIS) == 25
    assert hours_in_local_day(date(2026, 7, 1), PARIS) == 24
    assert hours_in_local_day(date(2026, 3, 8), ZoneInfo("America/New_York")) == 23


@pytest.mark.parametrize(
    ("day", "night_hours", "day_hours"),
    [
        # Spring forward: local 02:00 does not exist, so the night has 6 hours before 07:00 (+ 23:00).
        (date(2026, 3, 29), 7, 16),
        # Fall back: local 02:00 happens twice, so the night has 8 + 1 hours.
        (date(2026, 10, 25), 9, 16),
        (date(2026, 6, 15), 8, 16),
    ],
)
def test_time_of_use_cost_of_a_local_day(day: date, night_hours: int, day_hours: int) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(UTC)
    end = (datetime(day.year, day.month, day.day, tzinfo=PARIS) + timedelta(days=1)).astimezone(UTC)
    total_hours = (end - start) // timedelta(hours=1)
    assert total_hours == night_hours + day_hours
    # 1.2 kWh in every hour, plus an hour of data either side that must not count.
    buckets = hourly(start - timedelta(hours=1), total_hours + 2, 1200.0)
    hours = price_hours(buckets, TariffHistory([tou()]), PARIS, start, end)
    [bucket] = group_hours(hours, EnergyPeriod.DAY, PARIS)
    assert bucket.start == datetime(day.year, day.month, day.day, tzinfo=PARIS)
    assert bucket.import_kwh == pytest.approx(1.2 * total_hours)
    expected = 1.2 * (night_hours * NIGHT_PRICE + day_hours * DAY_PRICE) + STANDING
    assert bucket.cost == pytest.approx(expected, abs=1e-9)


def test_hourly_buckets_on_fall_back_day_keep_both_two_oclocks() -> None:
    start = datetime(2026, 10, 25, tzinfo=PARIS).astimezone(UTC)
    hours = price_hours(hourly(start, 25, 1000.0), TariffHistory([tou()]), PARIS, start, start + timedelta(hours=25))
    buckets = group_hours(hours, EnergyPeriod.HOUR, PARIS)
    assert len(buckets) == 25
    assert [b.start.hour for b in buckets[1:5]] == [1, 2, 2, 3]
    assert all(b.cost == pytest.approx(NIGHT_PRICE + STANDING / 25) for b in buckets[:7])


def test_standing_charge_is_due_without_energy_and_before_first_tariff_there_is_no_cost() -> None:
    start = datetime(2025, 12, 30, tzinfo=UTC)
    hours = price_hours([], TariffHistory([flat(0.2, date(2026, 1, 1), standing=0.72)]), ZoneInfo("UTC"),
                        start, start + timedelta(days=4))  # fmt: skip
    days = group_hours(hours, EnergyPeriod.DAY, ZoneInfo("UTC"))
    assert [b.cost for b in days] == [None, None, pytest.approx(0.72), pytest.approx(0.72)]
    totals = report(hours, EnergyPeriod.MONTH, ZoneInfo("UTC"), "EUR")
    assert [b.cost for b in totals.items] == [None, pytest.approx(1.44)]
    assert totals.total_cost == pytest.approx(1.44)


def test_export_earns_its_price_and_a_new_tariff_applies_from_its_local_date() -> None:
    start = datetime(2026, 2, 27, 23, tzinfo=UTC)  # 2026-02-28 00:00 in Paris
    old = flat(0.20, date(2026, 1, 1))
    new = Tariff(name="solar", currency="EUR", effective_from=date(2026, 3, 1), standing_charge_per_day=0.0,
                 rates=old.rates, export_price_per_kwh=0.05)  # fmt: skip
    buckets = hourly(start, 48, 1000.0, export_wh=2000.0)
    hours = price_hours(buckets, TariffHistory([old, new]), PARIS, start, start + timedelta(hours=48))
    days = group_hours(hours, EnergyPeriod.DAY, PARIS)
    assert [b.start.day for b in days] == [28, 1]
    assert [b.export_kwh for b in days] == [48.0, 48.0]
    # Before the solar tariff, export earns nothing; after it the hour prices switch too.
    assert days[0].cost == pytest.approx(24 * 0.20)
    assert days[1].cost == pytest.approx(24 * 0.20 - 48 * 0.05)


def test_mean_week_price_weights_rates_by_their_minutes() -> None:
    assert mean_week_price(tou()) == pytest.approx((16 * DAY_PRICE + 8 * NIGHT_PRICE) / 24)

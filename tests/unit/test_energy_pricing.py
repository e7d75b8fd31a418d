"""Which rollup tier a range is priced from, and pricing on quarter-hours.

Expected costs are worked out here by hand, never by the code under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vatio.energy.cost import group_hours
from vatio.energy.pricing import HOUR, QUARTER, check_quarter_hours, price_hours, pricing_step, rollup_resolution
from vatio.errors import ConfigError
from vatio.model import EnergyPeriod, Rate, Resolution, SiteBucket, Tariff, TariffHistory

ALL_DAYS = tuple(range(7))
LONDON = ZoneInfo("Europe/London")
CHEAP, PEAK = 0.10, 0.30


def two_rate(cheap_from: str, cheap_to: str, effective: date = date(2026, 1, 1), standing: float = 0.0) -> Tariff:
    return Tariff(
        name=f"cheap {cheap_from}-{cheap_to}",
        currency="EUR",
        effective_from=effective,
        standing_charge_per_day=standing,
        rates=(
            Rate(days=ALL_DAYS, start=cheap_from, end=cheap_to, price_per_kwh=CHEAP),
            Rate(days=ALL_DAYS, start=cheap_to, end=cheap_from, price_per_kwh=PEAK),
        ),
    )


JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tariffs", "tz", "step"),
    [
        ([], LONDON, HOUR),
        ([two_rate("23:00", "07:00")], LONDON, HOUR),
        ([two_rate("00:30", "07:30")], LONDON, QUARTER),
        ([two_rate("00:15", "07:00")], LONDON, QUARTER),
        # Economy 7 only from February: January is still the fast path.
        ([two_rate("23:00", "07:00"), two_rate("00:30", "07:30", date(2026, 2, 1))], LONDON, HOUR),
        # ... but a range reaching a day of it is not.
        ([two_rate("23:00", "07:00"), two_rate("00:30", "07:30", date(2026, 1, 31))], LONDON, QUARTER),
        # Economy 7 replaced by a whole-hour tariff before the range.
        ([two_rate("00:30", "07:30", date(2025, 1, 1)), two_rate("23:00", "07:00")], LONDON, HOUR),
        # Whole local hours are half UTC hours in India (+05:30).
        ([two_rate("23:00", "07:00")], ZoneInfo("Asia/Kolkata"), QUARTER),
    ],
)
def test_pricing_step_follows_the_tariffs_in_force_over_the_range(
    tariffs: list[Tariff], tz: ZoneInfo, step: timedelta
) -> None:
    assert pricing_step(TariffHistory(tariffs), tz, JAN, FEB) == step


def test_rollup_resolution_of_a_step() -> None:
    assert rollup_resolution(HOUR) is Resolution.HOUR_1
    assert rollup_resolution(QUARTER) is Resolution.MIN_15


def test_quarter_pricing_of_a_spring_forward_day() -> None:
    # London, 29 March 2026: 23 hours = 92 quarters; cheap 00:30-01:00 GMT and 02:00-07:30 BST = 24 quarters.
    start = datetime(2026, 3, 29, tzinfo=UTC)
    quarters = [SiteBucket(start + k * QUARTER, 1, 400.0, 100.0, 0.0) for k in range(92)]
    tariff = two_rate("00:30", "07:30", standing=0.92)
    priced = price_hours(quarters, TariffHistory([tariff]), LONDON, start, start + 92 * QUARTER, step=QUARTER)
    assert len(priced) == 92
    assert all(p.standing_cost == pytest.approx(0.01) for p in priced)
    [day] = group_hours(priced, EnergyPeriod.DAY, LONDON)
    assert day.import_kwh == pytest.approx(9.2)
    assert day.cost == pytest.approx(0.1 * (24 * CHEAP + 68 * PEAK) + 0.92)
    hours = group_hours(priced, EnergyPeriod.HOUR, LONDON)
    assert [h.start.astimezone(UTC) for h in hours] == [start + k * HOUR for k in range(23)]
    assert hours[0].cost == pytest.approx(0.2 * PEAK + 0.2 * CHEAP + 0.04)
    assert hours[0].import_kwh == pytest.approx(0.4)


def test_a_stored_tariff_off_the_quarter_grid_is_priced_at_the_minute_mean() -> None:
    # Stored before boundaries had to be quarter hours: cheap until 07:10. The quarter 07:00-07:15
    # is 10 minutes cheap and 5 minutes peak; the load is taken as even within the quarter.
    tariff = two_rate("23:00", "07:10")
    start = datetime(2026, 1, 15, 7, tzinfo=UTC)
    quarters = [SiteBucket(start + k * QUARTER, 1, 1500.0, 1500.0, 0.0) for k in range(2)]
    priced = price_hours(quarters, TariffHistory([tariff]), LONDON, start, start + 2 * QUARTER, step=QUARTER)
    assert [p.energy_cost for p in priced] == pytest.approx([1.5 * (10 * CHEAP + 5 * PEAK) / 15, 1.5 * PEAK])


@pytest.mark.parametrize("times", [("00:15", "07:45"), ("22:30", "06:45"), ("00:00", "23:45")])
def test_quarter_hour_boundaries_are_accepted(times: tuple[str, str]) -> None:
    check_quarter_hours(two_rate(*times))


@pytest.mark.parametrize(("times", "bad"), [(("07:10", "23:00"), "07:10"), (("00:30", "07:31"), "07:31")])
def test_boundaries_off_the_quarter_grid_are_rejected(times: tuple[str, str], bad: str) -> None:
    with pytest.raises(ConfigError, match=rf"at {bad}: rate times must be on a 15-minute boundary"):
        check_quarter_hours(two_rate(*times))

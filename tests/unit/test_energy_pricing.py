"""Which rollup tier a range is priced from, and pricing on quarter-hours.

Expected costs are worked out here by hand, never by the code under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from vatio.energy.cost import group_hours
from vatio.energy.pricing import (
    HOUR,
    QUARTER,
    PricedHour,
    PricingPlan,
    check_quarter_hours,
    price_hours,
    pricing_plan,
    rollup_resolution,
    utc_offsets_s,
)
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


SPLIT_E7 = PricingPlan(HOUR, frozenset({0, 7}))


@pytest.mark.parametrize(
    ("tariffs", "tz", "plan"),
    [
        ([], LONDON, PricingPlan(HOUR)),
        ([two_rate("23:00", "07:00")], LONDON, PricingPlan(HOUR)),
        # Economy 7 in London's winter (UTC+0): only the hours holding 00:30 and 07:30 are split.
        ([two_rate("00:30", "07:30")], LONDON, SPLIT_E7),
        ([two_rate("00:15", "07:00")], LONDON, PricingPlan(HOUR, frozenset({0}))),
        # Economy 7 only from February: January is still the fast path.
        ([two_rate("23:00", "07:00"), two_rate("00:30", "07:30", date(2026, 2, 1))], LONDON, PricingPlan(HOUR)),
        # ... but a range reaching a day of it is not.
        ([two_rate("23:00", "07:00"), two_rate("00:30", "07:30", date(2026, 1, 31))], LONDON, SPLIT_E7),
        # Economy 7 replaced by a whole-hour tariff before the range.
        ([two_rate("00:30", "07:30", date(2025, 1, 1)), two_rate("23:00", "07:00")], LONDON, PricingPlan(HOUR)),
        # Paris is UTC+1 in winter: local 00:30 is 23:30 UTC.
        ([two_rate("00:30", "07:30")], ZoneInfo("Europe/Paris"), PricingPlan(HOUR, frozenset({23, 6}))),
        # Whole local hours are half UTC hours in India (+05:30).
        ([two_rate("23:00", "07:00")], ZoneInfo("Asia/Kolkata"), PricingPlan(QUARTER)),
    ],
)
def test_pricing_plan_follows_the_tariffs_in_force_over_the_range(
    tariffs: list[Tariff], tz: ZoneInfo, plan: PricingPlan
) -> None:
    assert pricing_plan(TariffHistory(tariffs), tz, JAN, FEB) == plan


def test_a_range_off_the_hour_is_priced_by_quarter_when_a_boundary_is() -> None:
    e7 = TariffHistory([two_rate("00:30", "07:30")])
    assert pricing_plan(e7, LONDON, JAN + QUARTER, FEB) == PricingPlan(QUARTER)
    # A whole-hour tariff has no quarter to split: the range is rounded out to hours as always.
    assert pricing_plan(TariffHistory([two_rate("23:00", "07:00")]), LONDON, JAN + QUARTER, FEB) == PricingPlan(HOUR)


def test_a_split_plan_prices_the_same_as_quarters_throughout() -> None:
    # Two London days across the spring change, Economy 7, a load that differs in every quarter
    # (most in the boundary hours): pricing split hours from quarters must equal pricing every quarter.
    start = datetime(2026, 3, 28, tzinfo=UTC)
    end = datetime(2026, 3, 29, 23, tzinfo=UTC)  # local midnight of 30 March (BST)
    count = (end - start) // QUARTER
    quarters = [
        SiteBucket(start + k * QUARTER, 1, 0.0, 50.0 + 37.0 * (k % 7) + 400.0 * (k % 4 == 2), 1.0) for k in range(count)
    ]
    hours = [
        SiteBucket(start + h * HOUR, 1, 0.0, sum(q.import_wh for q in quarters[4 * h : 4 * h + 4]), 4.0)
        for h in range(count // 4)
    ]
    history = TariffHistory([two_rate("00:30", "07:30", standing=0.96)])
    plan = pricing_plan(history, LONDON, start, end)
    assert plan == PricingPlan(HOUR, frozenset({23, 0, 6, 7}))
    split = price_hours(hours, history, LONDON, start, end, quarters=quarters, split=plan.split)
    every = price_hours(quarters, history, LONDON, start, end, step=QUARTER)
    # 47 hours, of which 7 start at 23, 00, 06 or 07 UTC (4 on the 28th, 3 on the 29th) and become 4 quarters.
    assert len(split) == 47 - 7 + 7 * 4
    got = group_hours(split, EnergyPeriod.DAY, LONDON)
    want = group_hours(every, EnergyPeriod.DAY, LONDON)
    assert [g.start for g in got] == [w.start for w in want]
    assert [g.import_kwh for g in got] == pytest.approx([w.import_kwh for w in want])
    assert [g.cost for g in got] == pytest.approx([w.cost for w in want])
    # Not trivially equal: an hourly price of the boundary hours would be off.
    hourly = group_hours(price_hours(hours, history, LONDON, start, end), EnergyPeriod.DAY, LONDON)
    assert [h.cost for h in hourly] != pytest.approx([w.cost for w in want])


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


@pytest.mark.parametrize(
    "zone", ["UTC", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Chatham"]
)
def test_utc_offsets_match_the_zone_at_every_instant_and_around_each_change(zone: str) -> None:
    tz = ZoneInfo(zone)
    rng = np.random.default_rng(5)
    lo = int(datetime(2012, 1, 1, tzinfo=UTC).timestamp())  # Sao Paulo still had DST then
    instants = np.sort(rng.integers(lo, lo + 3 * 365 * 86400, 3000))

    def offset(at: int) -> int:
        delta = datetime.fromtimestamp(at, tz).utcoffset()
        assert delta is not None
        return int(delta.total_seconds())

    # The seconds either side of every change in the span, found here by a scan of whole hours and minutes.
    edges = []
    for hour in range(lo, lo + 3 * 365 * 86400, 3600):
        if offset(hour) != offset(hour + 3600):
            change = next(s for s in range(hour, hour + 3601, 60) if offset(s) != offset(hour))
            edges += [change - 1, change]
    with_dst = ("Europe/London", "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Chatham")
    assert len(edges) >= (4 if zone in with_dst else 0)
    probe = np.sort(np.concatenate([instants, np.array(edges, dtype=np.int64)]))
    assert utc_offsets_s(tz, probe).tolist() == [offset(int(t)) for t in probe]


def test_a_range_in_the_whole_hour_part_of_a_half_hour_zones_change_day_is_priced_by_quarter() -> None:
    # Lord Howe starts DST on 1 October 2017 at 02:00 +10:30 (15:30Z): that day lasts 23.5 h, 94
    # quarters. From 16:00Z (03:00 +11) to its end (13:00Z) the offset is a whole +11 h, but the
    # day's standing charge is shared by all 94 quarters, so 21 of its 23.5 hours cost 21/23.5 of it.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    start, end = datetime(2017, 9, 30, 16, tzinfo=UTC), datetime(2017, 10, 1, 13, tzinfo=UTC)
    history = TariffHistory([two_rate("00:30", "07:30", effective=date(2017, 1, 1), standing=1.0)])
    plan = pricing_plan(history, lord_howe, start, end)
    assert plan == PricingPlan(QUARTER)
    [day] = group_hours(price_hours([], history, lord_howe, start, end, step=plan.step), EnergyPeriod.DAY, lord_howe)
    assert day.cost == pytest.approx(21 / 23.5)


def test_rows_without_an_export_credit_group_as_their_own_cost() -> None:
    at = datetime(2026, 1, 1, 10, tzinfo=UTC)
    row = PricedHour(at, 1000.0, 0.0, 0.2, None, 0.05)
    assert row.cost == pytest.approx(0.25)
    [day] = group_hours([row], EnergyPeriod.DAY, ZoneInfo("UTC"))
    assert day.cost == pytest.approx(0.25)

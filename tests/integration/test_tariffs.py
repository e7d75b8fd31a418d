"""Sites and tariffs in the store (both backends), and costs that follow tariff changes made after the fact.

Data: ``meter-1`` of site ``home`` reads every minute and its import counter
rises 20 Wh a minute (1.2 kWh an hour). Expected costs are computed here from
the pricing rules, never by the code under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vatio.energy.site import SiteEnergy, add_tariff
from vatio.errors import ConfigError, NotFoundError
from vatio.model import EnergyPeriod, Rate, Reading, Resolution, Site, Tariff
from vatio.store import Store, write_all

pytestmark = pytest.mark.integration

ALL_DAYS = tuple(range(7))
PARIS = ZoneInfo("Europe/Paris")
UTC_ZONE = ZoneInfo("UTC")
WH_PER_MINUTE = 20.0
KWH_PER_HOUR = 1.2


def flat(price: float, effective: date, standing: float = 0.0, name: str = "flat") -> Tariff:
    return Tariff(
        name=name,
        currency="EUR",
        effective_from=effective,
        standing_charge_per_day=standing,
        rates=(Rate(days=ALL_DAYS, start="00:00", end="24:00", price_per_kwh=price),),
    )


def metered(device: str, start: datetime, minutes: int, wh_per_minute: float = WH_PER_MINUTE) -> list[Reading]:
    return [
        Reading(device, start + timedelta(minutes=k), k, power_w=wh_per_minute * 60, energy_wh=1000 + wh_per_minute * k)
        for k in range(minutes + 1)
    ]


async def refresh_all(store: Store) -> None:
    for _ in range(100):
        if await store.refresh_rollups() == 0:
            return
    pytest.fail("refresh_rollups never drained")


# -- CRUD --------------------------------------------------------------------------------


async def test_sites_round_trip(store: Store) -> None:
    assert await store.get_site("home") is None
    site = Site(site_id="home", name="Home", tz="Europe/Paris", currency="GBP", peak_limit_kw=9.0)
    await store.put_site(site)
    await store.put_site(Site(site_id="cabin"))
    assert await store.get_site("home") == site
    assert [s.site_id for s in await store.list_sites()] == ["cabin", "home"]
    changed = Site(site_id="home", tz="UTC", currency="GBP")
    await store.put_site(changed)
    assert await store.get_site("home") == changed


async def test_main_meters_round_trip_and_replace(store: Store) -> None:
    site = Site(site_id="home", main_meters=("meter-2", "meter-1"))
    await store.put_site(site)
    assert await store.get_site("home") == site  # order kept
    assert [s.main_meters for s in await store.list_sites()] == [("meter-2", "meter-1")]
    await store.put_site(Site(site_id="home", main_meters=("meter-1",)))
    assert (await store.get_site("home")) == Site(site_id="home", main_meters=("meter-1",))
    await store.put_site(Site(site_id="home"))  # a PUT without main meters: every device counts again
    assert (await store.get_site("home")) == Site(site_id="home", main_meters=())


async def test_tariffs_round_trip_replace_by_start_date_and_delete(store: Store) -> None:
    tou = Tariff(
        name="tou",
        currency="EUR",
        effective_from=date(2026, 3, 1),
        standing_charge_per_day=0.4,
        export_price_per_kwh=0.07,
        rates=(
            Rate(days=ALL_DAYS, start="07:00", end="23:00", price_per_kwh=0.3),
            Rate(days=ALL_DAYS, start="23:00", end="07:00", price_per_kwh=0.1),
        ),
    )
    first = await store.put_tariff("home", flat(0.2, date(2026, 1, 1)))
    second = await store.put_tariff("home", tou)
    assert first.id is not None
    assert second.id is not None
    assert second == replace(tou, id=second.id)
    await store.put_tariff("other", flat(0.9, date(2026, 1, 1)))
    assert [t.effective_from for t in await store.tariffs("home")] == [date(2026, 1, 1), date(2026, 3, 1)]

    replaced = await store.put_tariff("home", flat(0.25, date(2026, 1, 1), name="flat v2"))
    assert replaced.id == first.id
    assert [(t.name, t.rates[0].price_per_kwh) for t in await store.tariffs("home")] == [
        ("flat v2", 0.25),
        ("tou", 0.3),
    ]

    await store.delete_tariff("home", second.id)
    assert [t.id for t in await store.tariffs("home")] == [first.id]
    with pytest.raises(NotFoundError):
        await store.delete_tariff("home", second.id)
    with pytest.raises(NotFoundError):
        await store.delete_tariff("other", first.id)  # another site's tariff id


async def test_add_tariff_checks_site_and_currency(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await add_tariff(store, "nowhere", flat(0.2, date(2026, 1, 1)))
    await add_tariff(store, "new-home", flat(0.2, date(2026, 1, 1)), create_site=True)
    assert (await store.get_site("new-home")) == Site(site_id="new-home", currency="EUR")
    gbp = replace(flat(0.2, date(2026, 2, 1)), currency="GBP")
    with pytest.raises(ConfigError, match="currency"):
        await add_tariff(store, "new-home", gbp)


# -- costs follow tariffs changed after the fact -------------------------------------------


async def test_tariff_effective_in_the_past_recomputes_the_affected_costs(store: Store) -> None:
    start = datetime(2026, 1, 10, tzinfo=UTC)
    await write_all(store, metered("meter-1", start, 3 * 24 * 60), "home")
    await refresh_all(store)
    await add_tariff(store, "home", flat(0.20, date(2026, 1, 1), standing=1.0))

    async def daily_costs() -> list[float | None]:
        energy = await SiteEnergy.load(store, "home")
        result = await energy.energy(start, start + timedelta(days=3), EnergyPeriod.DAY, UTC_ZONE)
        assert [b.import_kwh for b in result.items] == pytest.approx([24 * KWH_PER_HOUR] * 3)
        return [b.cost for b in result.items]

    day_kwh = 24 * KWH_PER_HOUR
    assert await daily_costs() == pytest.approx([day_kwh * 0.20 + 1.0] * 3)

    # Added later, effective from the second day: days 2 and 3 change, day 1 does not.
    later = await add_tariff(store, "home", flat(0.50, date(2026, 1, 11)))
    assert await daily_costs() == pytest.approx([day_kwh * 0.20 + 1.0, day_kwh * 0.50, day_kwh * 0.50])

    # The old tariff corrected in place (same start date): only day 1 follows.
    await add_tariff(store, "home", flat(0.30, date(2026, 1, 1), standing=1.0))
    assert await daily_costs() == pytest.approx([day_kwh * 0.30 + 1.0, day_kwh * 0.50, day_kwh * 0.50])

    assert later.id is not None
    await store.delete_tariff("home", later.id)
    assert await daily_costs() == pytest.approx([day_kwh * 0.30 + 1.0] * 3)


async def test_time_of_use_cost_over_a_spring_forward_day(store: Store) -> None:
    # Local 29 March 2026 in Paris has 23 hours: 23:00Z on the 28th to 22:00Z on the 29th.
    await write_all(store, metered("meter-1", datetime(2026, 3, 28, 21, tzinfo=UTC), 27 * 60), "home")
    await refresh_all(store)
    await store.put_site(Site(site_id="home", tz="Europe/Paris"))
    tou = Tariff(
        name="tou",
        currency="EUR",
        effective_from=date(2026, 1, 1),
        standing_charge_per_day=0.48,
        rates=(
            Rate(days=ALL_DAYS, start="07:00", end="23:00", price_per_kwh=0.30),
            Rate(days=ALL_DAYS, start="23:00", end="07:00", price_per_kwh=0.10),
        ),
    )
    await add_tariff(store, "home", tou)
    energy = await SiteEnergy.load(store, "home")
    day_start = datetime(2026, 3, 29, tzinfo=PARIS)
    result = await energy.energy(day_start, day_start + timedelta(days=1), EnergyPeriod.DAY, energy.zone(None))
    [day] = result.items
    assert day.start == day_start
    assert day.import_kwh == pytest.approx(23 * KWH_PER_HOUR)
    # Night: 00, 01, 03, 04, 05, 06 and 23 h local = 7 hours; day 07-23 h = 16 hours.
    assert day.cost == pytest.approx(KWH_PER_HOUR * (7 * 0.10 + 16 * 0.30) + 0.48)
    assert result.total_cost == day.cost
    assert result.currency == "EUR"

    hours = await energy.energy(day_start, day_start + timedelta(days=1), EnergyPeriod.HOUR, energy.zone(None))
    assert [h.start.hour for h in hours.items[:4]] == [0, 1, 3, 4]
    assert hours.total_cost == pytest.approx(day.cost)


async def test_site_rollups_sum_devices_and_ignore_other_sites(store: Store) -> None:
    start = datetime(2026, 1, 10, tzinfo=UTC)
    await write_all(store, metered("meter-1", start, 60), "home")
    await write_all(store, metered("plug-1", start, 60, wh_per_minute=5.0), "home")
    await write_all(store, metered("elsewhere", start, 60, wh_per_minute=100.0), "other")
    await refresh_all(store)
    [hour] = await store.site_rollups("home", start, start + timedelta(hours=1), Resolution.HOUR_1)
    assert hour.bucket == start
    assert hour.devices == 2
    assert hour.power_w == pytest.approx(1200.0 + 300.0)
    assert hour.import_wh == pytest.approx(60 * (WH_PER_MINUTE + 5.0))
    assert hour.export_wh == 0.0
    assert await store.site_rollups("nowhere", start, start + timedelta(hours=1), Resolution.HOUR_1) == []


async def test_site_rollups_of_some_devices_leave_the_others_out(store: Store) -> None:
    start = datetime(2026, 1, 10, tzinfo=UTC)
    await write_all(store, metered("meter-1", start, 60), "home")
    await write_all(store, metered("plug-1", start, 60, wh_per_minute=5.0), "home")
    await write_all(store, metered("elsewhere", start, 60, wh_per_minute=100.0), "other")
    await refresh_all(store)
    end = start + timedelta(hours=1)
    [hour] = await store.site_rollups("home", start, end, Resolution.HOUR_1, ["meter-1"])
    assert hour.devices == 1
    assert [hour.power_w, hour.import_wh] == pytest.approx([1200.0, 60 * 20.0])
    # A device of another site never counts, even when named.
    [both] = await store.site_rollups("home", start, end, Resolution.HOUR_1, ["meter-1", "elsewhere"])
    assert both.import_wh == pytest.approx(60 * 20.0)
    assert await store.site_rollups("home", start, end, Resolution.HOUR_1, []) == []


async def test_site_rollups_of_some_hours_of_the_utc_day(store: Store) -> None:
    start = datetime(2026, 1, 9, 22, tzinfo=UTC)
    await write_all(store, metered("meter-1", start, 4 * 60), "home")
    await write_all(store, metered("plug-1", start, 4 * 60, wh_per_minute=5.0), "home")
    await refresh_all(store)
    end = start + timedelta(hours=4)
    # 22:00-02:00 UTC: the hours 23 and 01 (either side of midnight) only, with and without a device filter.
    quarters = await store.site_rollups("home", start, end, Resolution.MIN_15, utc_hours=frozenset({23, 1}))
    assert [q.bucket.astimezone(UTC).strftime("%H:%M") for q in quarters] == [
        "23:00",
        "23:15",
        "23:30",
        "23:45",
        "01:00",
        "01:15",
        "01:30",
        "01:45",
    ]
    assert all(q.import_wh == pytest.approx(15 * (WH_PER_MINUTE + 5.0)) for q in quarters)
    mains = await store.site_rollups("home", start, end, Resolution.MIN_15, ["meter-1"], utc_hours=frozenset({0}))
    assert [(q.bucket.astimezone(UTC).hour, q.devices) for q in mains] == [(0, 1)] * 4
    assert await store.site_rollups("home", start, end, Resolution.MIN_15, utc_hours=frozenset()) == []


# -- tariffs whose rates change on the half hour ---------------------------------------------

LONDON = ZoneInfo("Europe/London")
CHEAP, PEAK, E7_STANDING = 0.10, 0.35, 0.40
HALF_HOUR = timedelta(minutes=30)


def economy_7(effective: date, standing: float = E7_STANDING) -> Tariff:
    """UK Economy 7 style: 00:30-07:30 local at CHEAP, the rest of the day at PEAK."""
    return Tariff(
        name="economy 7",
        currency="EUR",
        effective_from=effective,
        standing_charge_per_day=standing,
        rates=(
            Rate(days=ALL_DAYS, start="00:30", end="07:30", price_per_kwh=CHEAP),
            Rate(days=ALL_DAYS, start="07:30", end="00:30", price_per_kwh=PEAK),
        ),
    )


def constant(_: datetime) -> float:
    return WH_PER_MINUTE


def storage_heater(at: datetime) -> float:
    """40 Wh a minute from local midnight to 04:00 in London, 10 Wh a minute otherwise."""
    return 40.0 if at.astimezone(LONDON).hour < 4 else 10.0


def switched_at_the_boundaries(at: datetime) -> float:
    """40 Wh a minute in the half hours just inside the cheap window (00:30-01:00, 07:00-07:30 London), else 10.

    Uneven within the boundary hours: an hour priced at its mean rate gets this wrong.
    """
    local = at.astimezone(LONDON)
    return 40.0 if (local.hour, local.minute // 30) in ((0, 1), (7, 0)) else 10.0


def profiled(device: str, start: datetime, minutes: int, wh_at: Callable[[datetime], float]) -> list[Reading]:
    """A reading every minute whose import counter rises ``wh_at(minute start)`` over that minute."""
    readings, counter = [], 1000.0
    for k in range(minutes + 1):
        at = start + timedelta(minutes=k)
        readings.append(Reading(device, at, k, power_w=wh_at(at) * 60, energy_wh=counter))
        counter += wh_at(at)
    return readings


def kwh(start: datetime, minutes: int, wh_at: Callable[[datetime], float]) -> float:
    start = start.astimezone(UTC)
    return sum(wh_at(start + timedelta(minutes=k)) for k in range(minutes)) / 1000.0


def is_cheap(at: datetime) -> bool:
    """Economy 7's cheap window, decided here from the local wall clock (not by the code under test)."""
    local = at.astimezone(LONDON)
    return (0, 30) <= (local.hour, local.minute) < (7, 30)


def half_hour_energy_cost(start: datetime, end: datetime, wh_at: Callable[[datetime], float]) -> float:
    """Σ over the half hours of [start, end): kWh in the half hour × the Economy 7 rate of that half hour."""
    # In UTC: arithmetic on datetimes of one zone is wall-clock arithmetic, wrong across a DST change.
    total, at, end = 0.0, start.astimezone(UTC), end.astimezone(UTC)
    while at < end:
        total += kwh(at, 30, wh_at) * (CHEAP if is_cheap(at) else PEAK)
        at += HALF_HOUR
    return total


def local_day(day: date) -> tuple[datetime, datetime]:
    return (
        datetime(day.year, day.month, day.day, tzinfo=LONDON).astimezone(UTC),
        datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=LONDON).astimezone(UTC),
    )


@pytest.mark.parametrize(
    "wh_at",
    [constant, storage_heater, switched_at_the_boundaries],
    ids=["constant", "storage-heater", "switched-at-the-boundaries"],
)
@pytest.mark.parametrize(
    ("day", "hours", "cheap_half_hours"),
    [
        (date(2026, 1, 15), 24, 14),
        # Spring forward at 01:00 GMT: cheap 00:30-01:00 GMT and 02:00-07:30 BST.
        (date(2026, 3, 29), 23, 12),
        # Fall back at 02:00 BST: 01:00-02:00 happens twice, both cheap.
        (date(2026, 10, 25), 25, 16),
    ],
)
async def test_economy_7_day_costs_the_half_hour_weighted_sum(
    store: Store, day: date, hours: int, cheap_half_hours: int, wh_at: Callable[[datetime], float]
) -> None:
    start, end = local_day(day)
    assert (end - start) // timedelta(hours=1) == hours
    assert sum(1 for k in range(2 * hours) if is_cheap(start + k * HALF_HOUR)) == cheap_half_hours
    # An hour of data either side that must not count.
    await write_all(store, profiled("meter-1", start - timedelta(hours=1), (hours + 2) * 60, wh_at), "home")
    await refresh_all(store)
    await store.put_site(Site(site_id="home", tz="Europe/London"))
    await add_tariff(store, "home", economy_7(date(2026, 1, 1)))
    energy = await SiteEnergy.load(store, "home")

    result = await energy.energy(start, end, EnergyPeriod.DAY, LONDON)
    [bucket] = result.items
    assert bucket.start == datetime(day.year, day.month, day.day, tzinfo=LONDON)
    assert bucket.import_kwh == pytest.approx(kwh(start, hours * 60, wh_at))
    assert bucket.cost == pytest.approx(half_hour_energy_cost(start, end, wh_at) + E7_STANDING, abs=1e-9)
    if wh_at is constant:
        half_kwh = 30 * WH_PER_MINUTE / 1000
        by_hand = half_kwh * (cheap_half_hours * CHEAP + (2 * hours - cheap_half_hours) * PEAK) + E7_STANDING
        assert bucket.cost == pytest.approx(by_hand, abs=1e-9)

    # Each hour costs its two half hours (00:00-01:00 is half peak, half cheap) and 1/hours of the standing charge.
    by_hour = await energy.energy(start, end, EnergyPeriod.HOUR, LONDON)
    assert [item.start.astimezone(UTC) for item in by_hour.items] == [
        start + k * timedelta(hours=1) for k in range(hours)
    ]
    expected = [half_hour_energy_cost(item.start, item.end, wh_at) + E7_STANDING / hours for item in by_hour.items]
    assert [item.cost for item in by_hour.items] == pytest.approx(expected, abs=1e-9)
    assert by_hour.total_cost == pytest.approx(bucket.cost, abs=1e-9)


async def test_month_total_is_recomputed_after_a_tariff_change_effective_in_the_past(store: Store) -> None:
    # Three days of data, 10-12 February 2026 (London is on UTC in February).
    data_start = datetime(2026, 2, 10, tzinfo=UTC)
    await write_all(store, profiled("meter-1", data_start, 3 * 24 * 60, storage_heater), "home")
    await refresh_all(store)
    await store.put_site(Site(site_id="home", tz="Europe/London"))
    await add_tariff(store, "home", flat(0.20, date(2026, 1, 1), standing=0.50))
    january, february, march = (datetime(2026, m, 1, tzinfo=LONDON) for m in (1, 2, 3))

    async def monthly_costs() -> list[float | None]:
        energy = await SiteEnergy.load(store, "home")
        result = await energy.energy(january, march, EnergyPeriod.MONTH, LONDON)
        assert [item.start for item in result.items] == [january, february]
        assert [item.import_kwh for item in result.items] == pytest.approx(
            [0.0, kwh(data_start, 3 * 24 * 60, storage_heater)]
        )
        return [item.cost for item in result.items]

    days = [data_start + timedelta(days=k) for k in range(3)]
    day_kwh = [kwh(d, 24 * 60, storage_heater) for d in days]
    assert await monthly_costs() == pytest.approx([31 * 0.50, sum(day_kwh) * 0.20 + 28 * 0.50])

    # Economy 7 from 12 February, added afterwards: January and 1-11 February keep the flat
    # tariff; from the 12th the half-hour rates and the new standing charge apply.
    await add_tariff(store, "home", economy_7(date(2026, 2, 12)))
    e7_day = half_hour_energy_cost(days[2], days[2] + timedelta(days=1), storage_heater)
    expected_february = (day_kwh[0] + day_kwh[1]) * 0.20 + e7_day + 11 * 0.50 + 17 * E7_STANDING
    assert await monthly_costs() == pytest.approx([31 * 0.50, expected_february], abs=1e-9)

    # Corrected in place (same start date, cheaper standing charge): the month follows again.
    await add_tariff(store, "home", economy_7(date(2026, 2, 12), standing=0.30))
    assert await monthly_costs() == pytest.approx([31 * 0.50, expected_february - 17 * (E7_STANDING - 0.30)], abs=1e-9)


@pytest.mark.parametrize(("start", "end", "bad"), [("07:10", "23:00", "07:10"), ("07:00", "23:59", "23:59")])
async def test_a_rate_time_off_the_quarter_hour_grid_is_rejected(store: Store, start: str, end: str, bad: str) -> None:
    tariff = Tariff(
        name="odd",
        currency="EUR",
        effective_from=date(2026, 1, 1),
        standing_charge_per_day=0.0,
        rates=(
            Rate(days=ALL_DAYS, start=start, end=end, price_per_kwh=0.3),
            Rate(days=ALL_DAYS, start=end, end=start, price_per_kwh=0.1),
        ),
    )
    with pytest.raises(ConfigError, match=rf"at {bad}: rate times must be on a 15-minute boundary \(:00, :15"):
        await add_tariff(store, "home", tariff, create_site=True)
    assert await store.tariffs("home") == []
    # Quarter hours are fine.
    await add_tariff(store, "home", economy_7(date(2026, 1, 1)), create_site=True)


async def test_a_local_day_of_a_half_hour_zone_holds_none_of_its_neighbours(store: Store) -> None:
    """Asia/Kolkata's day runs 18:30Z-18:30Z: rounding to whole hours took in half an hour either side."""
    kolkata = ZoneInfo("Asia/Kolkata")
    day = datetime(2026, 3, 10, tzinfo=kolkata)
    # 10 Wh a minute (0.6 kW) for three days around it.
    await write_all(store, profiled("meter-1", day.astimezone(UTC) - timedelta(days=1), 3 * 24 * 60, constant), "home")
    await refresh_all(store)
    await store.put_site(Site(site_id="home", tz="Asia/Kolkata"))
    await add_tariff(store, "home", flat(0.10, date(2026, 1, 1), standing=1.0))
    energy = await SiteEnergy.load(store, "home")
    result = await energy.energy(day, day + timedelta(days=1), EnergyPeriod.DAY, kolkata)
    [bucket] = result.items
    assert bucket.import_kwh == pytest.approx(24 * 60 * WH_PER_MINUTE / 1000)
    assert bucket.cost == pytest.approx(24 * 60 * WH_PER_MINUTE / 1000 * 0.10 + 1.0)

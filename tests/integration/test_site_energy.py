"""Site energy features end to end over both backends: import/export of a solar home, comparisons,
baseload and peak demand from real rollups. Expected numbers follow from the synthetic data by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vatio.alert.lifecycle import AlertEngine
from vatio.energy.compare import ComparePeriod
from vatio.energy.demo import install_demo_main_meters, install_demo_tariffs, main_meters_of
from vatio.energy.site import SiteEnergy, add_tariff, save_site
from vatio.energy.summary import summary
from vatio.errors import ConfigError
from vatio.model import Anomaly, EnergyPeriod, Rate, Reading, Site, Tariff
from vatio.sim.publish import SimOptions, build_meters
from vatio.store import Store, write_all

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 6, 1, 10, tzinfo=UTC)
EXPORT_RESET_AT = 90  # minute at which the inverter's export counter restarts from zero
ALL_DAYS = tuple(range(7))


def flat(price: float, *, export: float | None = None, currency: str = "EUR") -> Tariff:
    return Tariff(name="flat", currency=currency, effective_from=date(2025, 1, 1), standing_charge_per_day=0.0,
                  rates=(Rate(days=ALL_DAYS, start="00:00", end="24:00", price_per_kwh=price),),
                  export_price_per_kwh=export)  # fmt: skip


def export_counter(k: int) -> float:
    """+10 Wh a minute; at minute 90 the counter resets and reads 4 Wh (the energy since the reset)."""
    return 5000.0 + 10.0 * k if k < EXPORT_RESET_AT else 4.0 + 10.0 * (k - EXPORT_RESET_AT)


def solar_home() -> list[Reading]:
    """A grid meter: import +5 Wh a minute, export counter with a reset; 2 hours of minute readings."""
    return [
        Reading("grid", T0 + timedelta(minutes=k), k, energy_wh=1000.0 + 5.0 * k, energy_export_wh=export_counter(k))
        for k in range(121)
    ]


async def refresh_all(store: Store) -> None:
    for _ in range(100):
        if await store.refresh_rollups() == 0:
            return
    pytest.fail("refresh_rollups never drained")


async def test_import_and_export_of_a_solar_home_with_an_export_counter_reset(store: Store) -> None:
    await write_all(store, solar_home(), "sun")
    # A power-only plug of the same site: 600 W integrated is 600 Wh an hour of import, no export.
    await write_all(store, [Reading("plug", T0 + timedelta(minutes=k), k, power_w=600.0) for k in range(121)], "sun")
    await refresh_all(store)
    await add_tariff(store, "sun", flat(0.25, export=0.08), create_site=True)
    energy = await SiteEnergy.load(store, "sun")
    result = await energy.energy(T0, T0 + timedelta(hours=2), EnergyPeriod.HOUR, ZoneInfo("UTC"))

    # Hour 1: intervals ending at minutes 1-60. Hour 2: 61-120, where 61-89 export 10 Wh, 90 exports the
    # 4 Wh counted since the reset, and 91-120 export 10 Wh each.
    export_wh = [60 * 10.0, 29 * 10.0 + 4.0 + 30 * 10.0]
    import_wh = [60 * 5.0 + 600.0, 60 * 5.0 + 600.0]
    assert [b.export_kwh for b in result.items] == pytest.approx([e / 1000 for e in export_wh])
    assert [b.import_kwh for b in result.items] == pytest.approx([i / 1000 for i in import_wh])
    assert [b.cost for b in result.items] == pytest.approx(
        [i / 1000 * 0.25 - e / 1000 * 0.08 for i, e in zip(import_wh, export_wh, strict=True)]
    )
    assert result.total_export_kwh == pytest.approx(sum(export_wh) / 1000)

    # The device rollups still carry import only, unchanged by export.
    [day] = await store.energy("grid", T0, T0 + timedelta(hours=2), EnergyPeriod.DAY)
    assert day.energy_wh == pytest.approx(120 * 5.0)


async def test_week_and_month_comparisons(store: Store) -> None:
    # Paris in January is UTC+1. Last week (from Mon 5 Jan) 1 kW, this week (from Mon 12 Jan) 0.5 kW;
    # a year earlier, one day of 1 kW on 1 Jan 2025. Readings every 15 minutes.
    def steady(device: str, start: datetime, quarters: int, watts: list[float]) -> list[Reading]:
        counter, readings = 0.0, []
        for k in range(quarters + 1):
            if k:
                counter += watts[k - 1] / 4
            readings.append(Reading(device, start + timedelta(minutes=15 * k), k, energy_wh=counter))
        return readings

    start = datetime(2026, 1, 4, 23, tzinfo=UTC)
    quarters = (9 * 24 + 12) * 4  # to Wed 14 Jan 12:00 local
    watts = [1000.0 if k < 7 * 24 * 4 else 500.0 for k in range(quarters)]
    await write_all(store, steady("meter", start, quarters, watts), "home")
    await write_all(store, steady("meter", datetime(2024, 12, 31, 23, tzinfo=UTC), 96, [1000.0] * 96), "home")
    await refresh_all(store)
    await store.put_site(Site(site_id="home", tz="Europe/Paris"))
    await add_tariff(store, "home", flat(0.2))
    energy = await SiteEnergy.load(store, "home")
    now = datetime(2026, 1, 14, 11, tzinfo=UTC)

    week = await energy.compare(ComparePeriod.WEEK, now, PARIS)
    assert week.current.window.start == datetime(2026, 1, 12, tzinfo=PARIS)
    assert [week.current.kwh, week.previous.kwh] == pytest.approx([60 * 0.5, 60 * 1.0])
    assert week.current.cost == pytest.approx(30 * 0.2)
    assert week.change_pct == pytest.approx(-50.0)

    month = await energy.compare(ComparePeriod.MONTH, now, PARIS)
    assert month.previous.window.start == datetime(2025, 1, 1, tzinfo=PARIS)
    assert month.current.kwh == pytest.approx(7 * 24 * 1.0 + 60 * 0.5)
    assert month.previous.kwh == pytest.approx(24.0)
    assert month.change_pct == pytest.approx((198.0 - 24.0) / 24.0 * 100)


async def test_baseload_and_peak_demand_from_rollups(store: Store) -> None:
    # Two meters, readings every 5 minutes over one day from 00:00 UTC. The fridge draws 80 W always;
    # the heater 0 W except 3000 W from 18:00 to 18:30 and 500 W from 03:00 to 04:00.
    # The heater stops reporting from 12:00 to 13:00 (a gap, excluded from baseload).
    day = datetime(2026, 2, 2, tzinfo=UTC)

    def heater(t: datetime) -> float:
        if day.replace(hour=18) <= t < day.replace(hour=18, minute=30):
            return 3000.0
        return 500.0 if day.replace(hour=3) <= t < day.replace(hour=4) else 0.0

    times = [day + timedelta(minutes=5 * k) for k in range(24 * 12)]
    fridge = [Reading("fridge", t, k, power_w=80.0) for k, t in enumerate(times)]
    heat = [Reading("heater", t, k, power_w=heater(t)) for k, t in enumerate(times) if t.hour != 12]
    await write_all(store, fridge, "flat")
    await write_all(store, heat, "flat")
    await refresh_all(store)
    await store.put_site(Site(site_id="flat", tz="UTC", peak_limit_kw=3.0))
    await add_tariff(store, "flat", flat(0.25))
    energy = await SiteEnergy.load(store, "flat")

    result, yearly_cost = await energy.baseload(7, day + timedelta(days=1))
    # 92 complete quarters (96 minus the 4 of the gap hour): 86 at 80 W, 4 at 580 W and 2 at 3080 W;
    # the 5th percentile by nearest rank (the 5th lowest) is a quiet quarter: 80 W.
    assert result.baseload_w == pytest.approx(80.0)
    assert result.buckets == 92
    assert result.yearly_kwh == pytest.approx(80.0 * 8760 / 1000)
    assert yearly_cost == pytest.approx(80.0 * 8760 / 1000 * 0.25)

    peak = await energy.peak_demand(day, day + timedelta(days=1), ZoneInfo("UTC"))
    assert peak.peak_kw == pytest.approx(3.08)
    assert peak.at == day.replace(hour=18)
    assert peak.limit_kw == 3.0
    assert [(d.day, d.over_limit) for d in peak.days] == [(date(2026, 2, 2), True)]


# -- main meters: a plug behind the main meter is not counted twice ------------------------

HOME_T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday: today, this week and this month start at HOME_T0
HOME_NOW = HOME_T0 + timedelta(hours=6)


def main_power(minute: int) -> float:
    """The main meter: 1 kW, 2 kW from 02:00 to 02:30 (everything in the home, the plug included)."""
    return 2000.0 if 120 <= minute < 150 else 1000.0


def counted(device: str, power: list[float]) -> list[Reading]:
    """Minute readings of power and an import counter that integrates it (minute k holds power[k])."""
    counter, readings = 0.0, []
    for k, watts in enumerate(power):
        readings.append(Reading(device, HOME_T0 + timedelta(minutes=k), k, power_w=watts, energy_wh=counter))
        counter += watts / 60
    return readings


async def metered_home(store: Store) -> None:
    """Site ``home``: a main meter and a 200 W freezer plug behind it, six hours from 00:00 UTC."""
    minutes = range(6 * 60 + 1)
    await write_all(store, counted("main", [main_power(k) for k in minutes]), "home")
    await write_all(store, counted("plug", [200.0 for _ in minutes]), "home")
    await refresh_all(store)
    await add_tariff(store, "home", flat(0.25), create_site=True)


async def test_site_figures_sum_only_the_main_meters(store: Store) -> None:
    await metered_home(store)
    main_kwh = 5 * 1.0 + 1.5  # five hours at 1 kW, and 02:00-03:00 half at 2 kW
    plug_kwh = 6 * 0.2

    # Unset: every device counts (the plug twice, as before): the data really has the plug in it.
    everything = await summary(await SiteEnergy.load(store, "home", now=HOME_NOW), HOME_NOW, ZoneInfo("UTC"))
    assert [everything.power_w, everything.baseload_w] == pytest.approx([1200.0, 1200.0])
    assert everything.today_kwh == pytest.approx(main_kwh + plug_kwh)
    assert sorted(everything.summed_devices) == ["main", "plug"]

    await save_site(store, Site(site_id="home", main_meters=("main",)))
    energy = await SiteEnergy.load(store, "home", now=HOME_NOW)
    result = await summary(energy, HOME_NOW, ZoneInfo("UTC"))
    assert result.summed_devices == ["main"]
    assert result.power_w == 1000.0
    assert [result.today_kwh, result.week_kwh, result.month_kwh] == pytest.approx([main_kwh] * 3)
    assert [result.today_cost, result.month_cost] == pytest.approx([main_kwh * 0.25] * 2)
    assert result.baseload_w == pytest.approx(1000.0)
    assert result.baseload_yearly_cost == pytest.approx(1.0 * 8760 * 0.25)

    hours = await energy.energy(HOME_T0, HOME_NOW, EnergyPeriod.HOUR, ZoneInfo("UTC"))
    assert [b.import_kwh for b in hours.items] == pytest.approx([1.0, 1.0, 1.5, 1.0, 1.0, 1.0])
    assert hours.total_cost == pytest.approx(main_kwh * 0.25)

    week = await energy.compare(ComparePeriod.WEEK, HOME_NOW, ZoneInfo("UTC"))
    assert [week.current.kwh, week.current.cost] == pytest.approx([main_kwh, main_kwh * 0.25])

    peak = await energy.peak_demand(HOME_T0, HOME_NOW, ZoneInfo("UTC"))
    assert peak.peak_kw == pytest.approx(2.0)
    assert peak.at == HOME_T0 + timedelta(hours=2)


async def test_main_meters_must_be_devices_of_the_site(store: Store) -> None:
    await metered_home(store)
    await write_all(store, [Reading("neighbour", HOME_T0, 0, power_w=50.0)], "next-door")
    for wrong in (("nope",), ("main", "neighbour")):
        with pytest.raises(ConfigError, match="must be devices of that site"):
            await save_site(store, Site(site_id="home", main_meters=wrong))
    with pytest.raises(ConfigError, match="twice"):
        Site(site_id="home", main_meters=("main", "main"))
    assert (await store.get_site("home") or Site(site_id="x")).main_meters == ()  # nothing was stored
    saved = await save_site(store, Site(site_id="home", main_meters=("main",)))
    assert saved.site.main_meters == ("main",)
    assert await store.get_site("home") == Site(site_id="home", main_meters=("main",))


async def test_vatio_up_demo_marks_each_home_main_meter(store: Store) -> None:
    fleet = build_meters(SimOptions(homes=2, devices_per_home=3))
    mains = main_meters_of((m.site_id, m.device_id) for m in fleet)
    assert mains == {"home-1": "home-1-main", "home-2": "home-2-main"}
    await install_demo_tariffs(store, ["home-1", "home-2"], today=date(2026, 3, 1))
    assert await install_demo_main_meters(store, mains) == ["home-1", "home-2"]
    home = await store.get_site("home-1")
    assert home is not None
    assert (home.main_meters, home.currency) == (("home-1-main",), "EUR")  # the tariff's site settings kept
    # A site whose main meters are set keeps them on the next run.
    await store.put_site(Site(site_id="home-2", main_meters=("home-2-plug-1",)))
    assert await install_demo_main_meters(store, mains) == []
    assert (await store.get_site("home-2")) == Site(site_id="home-2", main_meters=("home-2-plug-1",))


async def test_open_alerts_counts_the_alerts_a_resident_has_not_resolved(store: Store) -> None:
    await metered_home(store)
    clock = [HOME_NOW]
    engine = AlertEngine(store=store, clock=lambda: clock[0])
    for device, kind in (("main", "over_power"), ("plug", "stuck_meter")):
        at = HOME_NOW - timedelta(hours=1)
        await store.record_anomaly(
            Anomaly(device_id=device, kind=kind, detector="edge", start=at, last=at, score=5.0,
                    explanation="observed 9000 W (band up to 7000 W)", observed_w=9000.0)
        )  # fmt: skip
    await engine.tick()
    open_before = (
        await summary(await SiteEnergy.load(store, "home", now=HOME_NOW), HOME_NOW, ZoneInfo("UTC"))
    ).open_alerts
    assert open_before == 2

    # Resolved by hand while its episode is still open: no longer something to act on.
    alert = (await store.alerts(site_id="home", device_id="plug"))[0]
    await engine.resolve(alert.id or 0, by="ana", note="unplugged")
    after = await summary(await SiteEnergy.load(store, "home", now=HOME_NOW), HOME_NOW, ZoneInfo("UTC"))
    assert after.open_alerts == 1

"""The appliance-level household simulator: determinism, accounting, physics, calibration.

Speed is measured by ``python -m vatio.sim.calibrate`` (reported in
docs/simulator.md), never asserted here: timings on shared CI machines are noise.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest

from vatio.sim import calibrate
from vatio.sim.household import HouseholdParams, HouseholdTrace, simulate_household
from vatio.sim.weather import CLIMATES, sun_elevation_sin

WINTER_WEEK = (datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC))


def full_home(seed: int = 5, climate: str = "temperate_north") -> HouseholdParams:
    """A drawn home given every appliance, so each test exercises all of them."""
    return replace(
        HouseholdParams.draw(seed, climate=climate),
        heating_w=5000.0,
        heating_cop=1.0,
        cooling_w=2000.0,
        water_heater_w=2200.0,
        freezer_w=100.0,
        kettle_w=2200.0,
        dryer_w=2200.0,
        dryer_share=0.5,
        dishwasher_per_week=5.0,
        ev_charger_w=7400.0,
        pv_kwp=4.0,
        pool_pump_w=900.0,
    )


def simulate(params: HouseholdParams, start: datetime, days: float, step_s: int) -> HouseholdTrace:
    return simulate_household(params, start=start, end=start + timedelta(days=days), step_s=step_s)


def test_same_seed_same_home_and_trace() -> None:
    assert HouseholdParams.draw(42) == HouseholdParams.draw(42)
    a = simulate(HouseholdParams.draw(42), WINTER_WEEK[0], 3, 600)
    b = simulate(HouseholdParams.draw(42), WINTER_WEEK[0], 3, 600)
    assert a.power_w.tobytes() == b.power_w.tobytes()
    assert a.appliances.keys() == b.appliances.keys()
    assert all(a.appliances[k].tobytes() == b.appliances[k].tobytes() for k in a.appliances)


def test_different_seeds_differ() -> None:
    homes = [HouseholdParams.draw(seed) for seed in range(20)]
    assert len({h.standby_w for h in homes}) == 20
    assert len({h.heating_w > 0 for h in homes}) == 2  # some homes heat electrically, some do not
    a, b = (simulate(h, *WINTER_WEEK[:1], 2, 600) for h in homes[:2])
    assert not np.allclose(a.power_w, b.power_w)
    # The behaviour seed alone changes the days but not the home.
    c = simulate_household(homes[0], start=WINTER_WEEK[0], end=WINTER_WEEK[1], step_s=600, seed=99)
    assert not np.allclose(c.power_w[: a.power_w.size], a.power_w)


def test_draw_gives_some_homes_each_option() -> None:
    homes = [HouseholdParams.draw(seed, climate="subtropical_south") for seed in range(200)]
    for owned in ("heating_w", "cooling_w", "ev_charger_w", "pv_kwp"):
        share = np.mean([getattr(h, owned) > 0 for h in homes])
        assert 0.02 < share < 0.9, owned
    assert {h.tz for h in homes} == {"Australia/Sydney"}


def test_appliances_sum_to_consumption_and_net_accounting() -> None:
    """``sum(appliances) - solar_w == power_w - export_w``; import and export never both in an interval."""
    trace = simulate(full_home(), datetime(2024, 6, 10, tzinfo=UTC), 4, 300)
    consumption = np.sum(list(trace.appliances.values()), axis=0)
    np.testing.assert_allclose(consumption - trace.solar_w, trace.power_w - trace.export_w, atol=1e-6)
    assert (trace.power_w >= 0).all()
    assert (trace.export_w >= 0).all()
    assert (np.minimum(trace.power_w, trace.export_w) == 0).all()
    assert trace.export_w.max() > 500  # a 4 kWp roof in June exports at midday


@pytest.mark.parametrize("climate", ["temperate_north", "subtropical_south"])
def test_energy_is_the_same_at_60s_and_30min(climate: str) -> None:
    """Averaging a 60 s run to 30 min gives the 30 min run.

    Loads are events in continuous time, integrated exactly onto either grid,
    so consumption per appliance and net energy agree to float rounding
    (1e-6 W). Import alone may not: the meter nets over its interval, so a
    30 min interval with 20 min of export and 10 min of import shows only the
    net. The 30 min import is then lower by exactly min(import, export) of
    the averaged 60 s run, which is what the test checks.
    """
    home, start = full_home(climate=climate), datetime(2024, 3, 4, tzinfo=UTC)
    fine, coarse = simulate(home, start, 3, 60), simulate(home, start, 3, 1800)

    def to_30min(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(x.reshape(-1, 30).mean(axis=1), dtype=np.float64)

    assert fine.appliances.keys() == coarse.appliances.keys()
    for name, fine_w in fine.appliances.items():
        np.testing.assert_allclose(to_30min(fine_w), coarse.appliances[name], atol=1e-6, err_msg=name)
    fine_import, fine_export = to_30min(fine.power_w), to_30min(fine.export_w)
    np.testing.assert_allclose(fine_import - fine_export, coarse.power_w - coarse.export_w, atol=1e-6)
    np.testing.assert_allclose(fine_import - coarse.power_w, np.minimum(fine_import, fine_export), atol=1e-6)


@pytest.mark.parametrize("step_s", [1, 7, 60, 900, 3600])
def test_any_step_from_1s_to_1h(step_s: int) -> None:
    trace = simulate(full_home(), WINTER_WEEK[0], 1, step_s)
    n = -(-86_400 // step_s)
    assert trace.ts.shape == trace.power_w.shape == trace.occupied.shape == trace.temperature_c.shape == (n,)
    assert trace.ts.dtype == np.int64
    assert trace.ts[0] == int(WINTER_WEEK[0].timestamp())
    # Net energy over the day does not depend on the step (a 7 s grid runs past the day: skip it).
    if 86_400 % step_s == 0:
        net_kwh = (trace.power_w - trace.export_w).sum() * step_s / 3.6e6
        hourly = simulate(full_home(), WINTER_WEEK[0], 1, 3600)
        assert net_kwh == pytest.approx((hourly.power_w - hourly.export_w).sum() / 1000, rel=1e-9)


def test_heating_rises_as_temperature_falls() -> None:
    home = replace(HouseholdParams.draw(8), heating_w=6000.0, heating_cop=1.0, holiday_days_per_year=0.0)
    trace = simulate(home, datetime(2024, 1, 1, tzinfo=UTC), 150, 3600)
    daily_heat = trace.appliances["heating"].reshape(-1, 24).mean(axis=1)
    daily_temp = trace.temperature_c.reshape(-1, 24).mean(axis=1)
    assert np.corrcoef(daily_heat, daily_temp)[0, 1] < -0.8
    assert daily_heat[daily_temp > 16].mean() < 0.2 * daily_heat[daily_temp < 5].mean()


def test_solar_export_only_in_daylight() -> None:
    trace = simulate(full_home(climate="subtropical_south"), datetime(2024, 1, 1, tzinfo=UTC), 5, 600)
    clim = CLIMATES["subtropical_south"]
    sun_up = (sun_elevation_sin(clim, trace.ts) > 0) | (sun_elevation_sin(clim, trace.ts + 600) > 0)
    assert (trace.export_w[~sun_up] == 0).all()
    assert (trace.solar_w[~sun_up] == 0).all()
    assert trace.export_w[sun_up].max() > 0


def test_away_days_are_near_baseload() -> None:
    home = replace(HouseholdParams.draw(3), heating_w=0.0, cooling_w=0.0, holiday_days_per_year=20.0)
    trace = simulate(home, datetime(2024, 1, 1, tzinfo=UTC), 366, 1800)
    assert trace.away.any()
    assert not trace.occupied[trace.away].any()
    always_on = sum(trace.appliances[k] for k in ("standby", "fridge", "freezer") if k in trace.appliances)
    assert isinstance(always_on, np.ndarray)
    away_extra = (trace.power_w - always_on)[trace.away].mean()
    home_extra = (trace.power_w - always_on)[~trace.away].mean()
    # Only the water heater's standing loss (~1 kWh/day = 42 W) runs while nobody is in.
    assert away_extra < 50.0 < home_extra


@pytest.mark.parametrize("climate", ["temperate_north", "subtropical_south"])
def test_schedules_follow_local_time(climate: str) -> None:
    """Out at local midday on workdays, home at local 3 am, in both time zones."""
    home = replace(HouseholdParams.draw(1, climate=climate), home_all_day=False, trips_per_year=0.0)
    home = replace(home, holiday_days_per_year=0.0, leave_h=8.0, return_h=18.0, schedule_jitter_h=0.2)
    trace = simulate(home, datetime(2024, 3, 4, tzinfo=UTC), 14, 3600)
    offset_h = 1 if climate == "temperate_north" else 11  # CET, AEDT in early March
    local_hour = (trace.ts // 3600 + offset_h) % 24
    local_weekday = ((trace.ts + offset_h * 3600) // 86_400 + 3) % 7
    workday = local_weekday < 5
    assert not trace.occupied[workday & (local_hour == 12)].any()
    assert trace.occupied[local_hour == 3].all()
    assert trace.appliances["lighting"][local_hour == 13].max() == 0.0


@pytest.mark.skipif(
    not (calibrate.DEFAULT_DATA / calibrate.SGSC).is_file(),
    reason=f"real data sets not found in {calibrate.DEFAULT_DATA} (see ../shared/data/README.md)",
)
def test_calibration_statistics_close_to_real_homes() -> None:
    """24 simulated homes per climate against the real ones, at looser bounds than docs/simulator.md.

    With 24 homes instead of 60 a group median moves by about ±15 % between
    seed sets, so the bounds here are the doc's ±30 % target widened by that:
    profile correlation > 0.75, medians within 40 % (daily kWh, peak-to-mean,
    seasonal swing) and 50 % (baseload, whose real Sydney value is a median of
    0 to 190 W over six homes).
    """
    real = calibrate.real_groups(calibrate.DEFAULT_DATA)
    sim = calibrate.simulated_groups(24)
    for group in ("uci", "sgsc"):
        result = calibrate.compare(real[group], sim[group])
        assert result["profile_correlation"] > 0.75, group
        for stat in ("daily_kwh_median", "daily_kwh_p10", "peak_to_mean", "seasonal_swing"):
            assert 0.6 < result[stat]["ratio"] < 1.4, (group, stat, result[stat])
        assert 0.5 < result["baseload_w"]["ratio"] < 1.5, (group, result["baseload_w"])

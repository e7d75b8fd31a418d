"""Appliance loads as events (start, duration, power), rendered exactly onto a time grid.

Each appliance is a set of rectangular events in continuous time, drawn from the home's day plan and
its own random stream. Nothing depends on the grid step: :func:`render` integrates events exactly, so
a home at 1 s averaged to 30 min has the energy of the same home simulated at 30 min.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

from vatio.sim.weather import heat_to_hold_w

if TYPE_CHECKING:
    from vatio.sim.household import HouseholdParams
    from vatio.sim.weather import Climate, Weather

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MIN_S = 60.0
HOUR_S = 3600.0


class Events(NamedTuple):
    """Rectangular loads: ``power_w`` from ``start_s`` for ``duration_s`` (seconds from the span start).

    >>> Events(np.zeros(1), np.full(1, 60.0), np.full(1, 2000.0)).duration_s.tolist()
    [60.0]
    """

    start_s: FloatArray
    duration_s: FloatArray
    power_w: FloatArray


def events(start_s: npt.ArrayLike, duration_s: npt.ArrayLike, power_w: npt.ArrayLike) -> Events:
    """Events from array-likes, broadcast together and flattened.

    >>> events([0.0, 600.0], 60.0, 2000.0).power_w.tolist()
    [2000.0, 2000.0]
    """
    s, d, p = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (start_s, duration_s, power_w)))
    return Events(s.ravel(), np.maximum(d.ravel(), 0.0), p.ravel())


def concat(*parts: Events) -> Events:
    """All events of ``parts`` as one set.

    >>> concat(events([0.0], [60.0], [5.0]), events([120.0], [60.0], [7.0])).power_w.tolist()
    [5.0, 7.0]
    """
    return Events(*(np.concatenate([getattr(e, f) for e in parts]) for f in Events._fields))


def render(ev: Events, *, step_s: float, n: int) -> FloatArray:
    """Mean power of ``ev`` over each of ``n`` intervals ``[k*step_s, (k+1)*step_s)``.

    Each event is a +P step at its start and a -P step at its end; the energy
    of interval k is the sum of the steps before it (full interval) plus the
    part of the steps inside it. Two bincounts and a cumsum: exact and O(events + n).

    >>> render(events([30.0, 90.0], [60.0, 30.0], [100.0, 40.0]), step_s=60.0, n=3).tolist()
    [50.0, 70.0, 0.0]
    """
    edges = np.concatenate([ev.start_s, ev.start_s + ev.duration_s]) / step_s
    steps = np.concatenate([ev.power_w, -ev.power_w])
    idx = np.floor(edges)
    inside = idx < n
    edges, steps, idx = edges[inside], steps[inside], idx[inside]
    # A step at fraction f into interval i gives (1 - f) of itself there and all of itself after.
    after = np.bincount(np.clip(idx + 1, 0, n).astype(np.int64), weights=steps, minlength=n + 1)
    within = idx >= 0
    part = steps[within] * (1.0 - (edges - idx)[within])
    partial = np.bincount(idx[within].astype(np.int64), weights=part, minlength=n)
    mean_w = np.asarray(np.cumsum(after)[:n] + partial[:n], dtype=np.float64)
    # Cancelling +P and -P leaves ~1e-12 W of float dust where nothing runs; a microwatt is nothing.
    mean_w[mean_w < 1e-6] = 0.0
    return mean_w


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One row per local day around the span; every time in seconds from the span start.

    A home day has two awake-at-home windows: ``[wake, out_start)`` and
    ``[out_end, sleep)``; on days nobody goes out ``out_start == out_end``
    (midday), and on away days every window is empty.

    >>> plan = _example()[1]  # a week, plus margin days either side
    >>> plan.away.size, bool((plan.wake_s <= plan.sleep_s).all())
    (11, True)
    """

    midnight_s: FloatArray  # local midnight starting the day
    wake_s: FloatArray
    out_start_s: FloatArray
    out_end_s: FloatArray
    sleep_s: FloatArray
    away: BoolArray
    workday: BoolArray
    winter: FloatArray  # 1 mid-winter .. 0 mid-summer: hot water, fridge and lighting habits follow it
    sunrise_s: FloatArray
    sunset_s: FloatArray

    def local_s(self, hour: float | FloatArray) -> FloatArray:
        """Seconds from the span start of local clock ``hour`` on each day."""
        return self.midnight_s + np.asarray(hour, dtype=np.float64) * HOUR_S

    def awake_times(self, u: FloatArray, day: npt.NDArray[np.int64]) -> FloatArray:
        """Map uniforms ``u`` in [0, 1) onto the awake-at-home windows of the given days."""
        first = self.out_start_s[day] - self.wake_s[day]
        x = u * (first + self.sleep_s[day] - self.out_end_s[day])
        return np.where(x < first, self.wake_s[day] + x, self.out_end_s[day] + x - first)

    def home_days(self) -> npt.NDArray[np.int64]:
        """Indexes of the days someone is at home."""
        return np.flatnonzero(~self.away)


def programme(starts: FloatArray, phases: Sequence[tuple[float, float]], scale: FloatArray) -> Events:
    """A multi-phase appliance programme (washer, dishwasher...) run at each start.

    ``phases`` are (minutes, watts) in order; ``scale`` multiplies the power
    of each run (a cold wash has no heating phase, a dryer load is smaller).

    >>> run = programme(np.array([0.0]), [(10, 2000.0), (50, 150.0)], np.array([1.0]))
    >>> run.start_s.tolist(), run.power_w.tolist()
    ([0.0, 600.0], [2000.0, 150.0])
    """
    minutes = np.array([m for m, _ in phases])
    offsets = np.concatenate([[0.0], np.cumsum(minutes)[:-1]]) * MIN_S
    watts = np.array([w for _, w in phases])
    return events(starts[:, None] + offsets, minutes * MIN_S, scale[:, None] * watts)


def standby(p: HouseholdParams, span_s: float, rng: np.random.Generator) -> Events:
    """Always-on devices (router, boxes, standby): constant, wandering a little hour to hour.

    >>> standby(_example()[0], 86_400.0, np.random.default_rng(0)).power_w.size  # hourly, and a spare
    26
    """
    n = int(span_s // HOUR_S) + 2
    return events(np.arange(n) * HOUR_S, HOUR_S, p.standby_w * (1 + 0.06 * rng.standard_normal(n)))


def compressor(watts: float, period_s: float, duty: float, plan: DayPlan, rng: np.random.Generator) -> Events:
    """Fridge or freezer: on for ``duty`` of each ``period_s`` cycle, longer in warm seasons.

    >>> cycles = compressor(100.0, 3000.0, 0.4, _example()[1], np.random.default_rng(0))
    >>> 0.3 < float(cycles.duration_s.mean()) / 3000 < 0.5
    True
    """
    if watts <= 0:
        return events([], [], [])
    span = plan.midnight_s[-1] - plan.midnight_s[0]
    periods = period_s * rng.uniform(0.85, 1.15, int(span / period_s * 1.2) + 2)
    starts = plan.midnight_s[0] + np.cumsum(periods) - periods[0] * rng.uniform()
    day = np.clip(np.searchsorted(plan.midnight_s, starts) - 1, 0, plan.winter.size - 1)
    # A warmer kitchen means longer runs: about ±15 % between winter and summer.
    on = np.clip(duty * (1.15 - 0.3 * plan.winter[day]), 0.05, 0.95) * periods
    return events(starts, on, watts * rng.uniform(0.95, 1.05, starts.size))


def lighting(p: HouseholdParams, plan: DayPlan, rng: np.random.Generator) -> Events:
    """Lights while someone is awake at home and it is dark (half an hour of dusk either side).

    >>> home, plan, _ = _example()
    >>> bool(lighting(home, plan, np.random.default_rng(0)).power_w.max() <= 1.2 * home.lighting_w)
    True
    """
    morning_end = np.minimum(plan.out_start_s, plan.sunrise_s + 1800)
    evening_start = np.maximum(plan.out_end_s, plan.sunset_s - 1800)
    bedtime = np.maximum(evening_start, plan.sleep_s - 1800)
    n = plan.wake_s.size
    level = p.lighting_w * rng.uniform(0.6, 1.2, (3, n))
    return events(
        np.concatenate([plan.wake_s, evening_start, bedtime]),
        np.concatenate([morning_end - plan.wake_s, bedtime - evening_start, plan.sleep_s - bedtime]),
        np.concatenate([level[0] * 0.7, level[1], level[2] * 0.4]),
    )


def plug_loads(p: HouseholdParams, plan: DayPlan, rng: np.random.Generator) -> Events:
    """TV, computers, chargers: a level through each awake-at-home window, higher in the evening.

    >>> home, plan, _ = _example()
    >>> bool(plug_loads(home, plan, np.random.default_rng(0)).power_w.max() <= 1.0 * home.plug_load_w)
    True
    """
    n = plan.wake_s.size
    tv_start = np.maximum(plan.out_end_s, plan.local_s(19.5 + rng.normal(0, 0.5, n)))
    return events(
        np.concatenate([plan.wake_s, plan.out_end_s, tv_start]),
        np.concatenate([plan.out_start_s - plan.wake_s, plan.sleep_s - plan.out_end_s, plan.sleep_s - tv_start]),
        np.concatenate([rng.uniform(0.4, 0.9, n), rng.uniform(0.4, 1.0, n), rng.uniform(0.2, 0.6, n)]) * p.plug_load_w,
    )


def cooking(p: HouseholdParams, plan: DayPlan, rng: np.random.Generator) -> Events:
    """Breakfast (toaster, coffee), lunch when someone is in at midday, dinner on the hob and oven.

    >>> home, plan, _ = _example()
    >>> bool(cooking(home, plan, np.random.default_rng(0)).power_w.max() <= 1.1 * home.cooking_w)
    True
    """
    day = plan.home_days()
    n = day.size
    breakfast = day[rng.uniform(size=n) < 0.6]
    b_start = plan.wake_s[breakfast] + rng.uniform(5, 30, breakfast.size) * MIN_S
    noon = plan.local_s(12.25)
    lunch = day[(plan.out_start_s[day] >= noon[day]) & (rng.uniform(size=n) < 0.5)]
    l_start = noon[lunch] + rng.normal(0, 20, lunch.size) * MIN_S
    dinner_at = np.maximum(plan.out_end_s + 20 * MIN_S, plan.local_s(p.dinner_h + rng.normal(0, 0.5, plan.away.size)))
    dinner = day[(dinner_at[day] < plan.sleep_s[day] - HOUR_S) & (rng.uniform(size=n) < p.cooking_prob)]
    d_len = rng.uniform(20, 70, dinner.size) * MIN_S
    # Hob and oven: full power to heat up, then simmering and thermostat cycling at lower mean power.
    d_start = dinner_at[dinner][:, None] + d_len[:, None] * np.array([0.0, 1 / 3, 2 / 3])
    d_power = p.cooking_w * rng.uniform(0.7, 1.1, (dinner.size, 1)) * np.array([1.0, 0.55, 0.3])
    return concat(
        events(b_start, rng.uniform(3, 10, breakfast.size) * MIN_S, rng.uniform(800, 1600, breakfast.size)),
        events(l_start, rng.uniform(10, 30, lunch.size) * MIN_S, 0.5 * max(p.cooking_w, 1500.0)),
        events(d_start, d_len[:, None] / 3, d_power),
    )


def kettle(p: HouseholdParams, plan: DayPlan, rng: np.random.Generator) -> Events:
    """Kettle boils: one soon after waking on most days, the rest through the awake hours.

    >>> bool((kettle(*_example()[:2], np.random.default_rng(0)).duration_s <= 240).all())
    True
    """
    if p.kettle_w <= 0:
        return events([], [], [])
    day = plan.home_days()
    counts = rng.poisson(max(p.kettle_uses_per_day - 0.7, 0.0), day.size)
    later = np.repeat(day, counts)
    first = day[rng.uniform(size=day.size) < 0.7]
    first_boil = plan.wake_s[first] + rng.uniform(0, 20, first.size) * MIN_S
    starts = np.concatenate([first_boil, plan.awake_times(rng.uniform(size=later.size), later)])
    return events(starts, rng.uniform(1.5, 4.0, starts.size) * MIN_S, p.kettle_w)


def laundry(p: HouseholdParams, plan: DayPlan, rng: np.random.Generator) -> tuple[Events, Events]:
    """Washing machine programmes, some followed by the tumble dryer: (washer, dryer).

    >>> washer, dryer = laundry(*_example()[:2], np.random.default_rng(0))
    >>> float(washer.power_w.max()), bool(dryer.power_w.size > 0)
    (2000.0, True)
    """
    day = plan.home_days()
    rate = p.washer_per_week / 7 * np.where(plan.workday[day], 0.8, 1.5)
    wash = day[rng.uniform(size=day.size) < rate]
    starts = plan.awake_times(rng.uniform(0, 0.75, wash.size), wash)
    hot = np.where(rng.uniform(size=wash.size) < 0.6, 1.0, 0.0)
    heat = programme(starts, [(15, 2000.0)], hot)
    washer = concat(heat, programme(starts + 15 * MIN_S, [(55, 160.0), (12, 450.0)], np.ones(wash.size)))
    dried = starts[rng.uniform(size=wash.size) < p.dryer_share] + rng.uniform(85, 130) * MIN_S
    scale = rng.uniform(0.8, 1.0, dried.size) * p.dryer_w
    return washer, programme(dried, [(50, 1.0), (25, 0.5), (10, 0.06)], scale)


def dishwasher(p: HouseholdParams, plan: DayPlan, rng: np.random.Generator) -> Events:
    """Dishwasher after dinner, or in the daytime for a third of runs.

    >>> bool(dishwasher(*_example()[:2], np.random.default_rng(0)).power_w.max() <= 2200)
    True
    """
    day = plan.home_days()
    run = day[rng.uniform(size=day.size) < p.dishwasher_per_week / 7]
    evening = np.maximum(plan.out_end_s[run], plan.local_s(20.5)[run]) + rng.normal(0, 45, run.size) * MIN_S
    # A third of loads run when the machine is full during the day instead.
    daytime = plan.awake_times(rng.uniform(0.1, 0.5, run.size), run)
    starts = np.where(rng.uniform(size=run.size) < 0.35, daytime, np.minimum(evening, plan.sleep_s[run] - 10 * MIN_S))
    phases = [(5, 80.0), (20, 2000.0), (35, 100.0), (15, 1800.0), (10, 30.0)]
    return programme(starts, phases, rng.uniform(0.85, 1.1, run.size))


def water_heater(p: HouseholdParams, plan: DayPlan, clim: Climate, rng: np.random.Generator) -> Events:
    """Storage water heater: reheats the day's draws at night (off-peak) or right after them.

    >>> water_heater(*_example(), np.random.default_rng(0)).power_w.max()  # the element's power
    np.float64(2200.0)
    """
    if p.water_heater_w <= 0:
        return events([], [], [])
    n = plan.away.size
    # Colder mains water in winter; the tank loses about 1 kWh/day even when nobody draws.
    draw_kwh = np.where(plan.away, 0.0, p.hot_water_kwh_per_day * (0.8 + 0.4 * plan.winter))
    energy_s = (draw_kwh * rng.uniform(0.7, 1.3, n) + 1.0) * 3.6e6 / p.water_heater_w
    if p.water_heater_offpeak:
        # Off-peak contracts start anywhere in the late evening; the switch-on follows the contract.
        delay_h = rng.uniform(0, 3.5)
        start = plan.local_s(clim.offpeak_start_h + delay_h) + rng.uniform(0, 10, n) * MIN_S
        return events(start, np.minimum(energy_s, (clim.offpeak_hours - delay_h) * HOUR_S), p.water_heater_w)
    # Showers after waking, washing-up and baths through the day and evening; the thermostat follows.
    morning = np.where(plan.away, plan.local_s(7.0), plan.wake_s + rng.uniform(5, 40, n) * MIN_S)
    day = np.where(plan.away, plan.local_s(13.0), plan.awake_times(rng.uniform(0.2, 0.6, n), np.arange(n)))
    evening = np.where(plan.away, plan.local_s(19.0), plan.awake_times(rng.uniform(0.6, 1.0, n), np.arange(n)))
    return events(
        np.concatenate([morning, day, evening]),
        np.concatenate([0.5 * energy_s, 0.2 * energy_s, 0.3 * energy_s]),
        p.water_heater_w,
    )


def ev_charging(p: HouseholdParams, plan: DayPlan, clim: Climate, rng: np.random.Generator) -> Events:
    """EV charging: every two or three days, refilling the kilometres driven since the last charge.

    >>> bool((ev_charging(*_example(), np.random.default_rng(0)).duration_s <= 14 * 3600).all())
    True
    """
    if p.ev_charger_w <= 0:
        return events([], [], [])
    n = plan.away.size
    km = np.where(plan.away, 0.0, p.ev_km_per_day * rng.lognormal(-0.18, 0.6, n))
    charge = np.flatnonzero(~plan.away & (rng.uniform(size=n) < 0.4))
    used_kwh = np.cumsum(km) * p.ev_kwh_per_km / 0.9  # 90 % charger efficiency
    needed = np.diff(np.concatenate([[0.0], used_kwh[charge]]))
    at = plan.local_s(clim.offpeak_start_h) if p.ev_offpeak else np.maximum(plan.out_end_s, plan.local_s(17.5))
    starts = at[charge] + rng.uniform(0, 30, charge.size) * MIN_S
    return events(starts, np.minimum(needed * 3.6e6 / p.ev_charger_w, 14 * HOUR_S), p.ev_charger_w)


def thermal(p: HouseholdParams, plan: DayPlan, weather: Weather, t0: float) -> tuple[Events, Events]:
    """Electric space heating and air conditioning, hour by hour: (heating, cooling).

    Heating holds the setpoint (lowered when asleep or out, frost protection
    when away) in a building losing ``ua_w_per_k`` per kelvin, with occupants
    and appliances as free gains. Air conditioning runs while someone is awake
    at home (or on hot nights) when it is hotter outside than the home's threshold.

    >>> from vatio.sim.weather import synthesize_weather
    >>> home, plan, clim = _example()
    >>> weather = synthesize_weather(clim, 1_704_585_600, 1_705_276_800, seed=0)
    >>> heat, cool = thermal(home, plan, weather, 1_704_672_000.0)  # January in Paris
    >>> bool(heat.power_w.max() > 0), float(cool.power_w.max())
    (True, 0.0)
    """
    hours = weather.start_s - t0 + HOUR_S * np.arange(weather.temperature_c.size)
    day = np.clip(np.searchsorted(plan.midnight_s, hours + 1800) - 1, 0, plan.away.size - 1)
    mid = hours + 1800
    awake = ((mid >= plan.wake_s[day]) & (mid < plan.out_start_s[day])) | (
        (mid >= plan.out_end_s[day]) & (mid < plan.sleep_s[day])
    )
    away = plan.away[day]
    heating = events([], [], [])
    if p.heating_w > 0:
        comfort = awake | ((mid >= plan.wake_s[day] - p.heating_preheat_h * HOUR_S) & (mid < plan.wake_s[day]))
        setpoint = np.where(comfort, p.heating_setpoint_c, p.heating_setpoint_c - p.heating_setback_k)
        setpoint = np.where(away, 12.0, setpoint)
        gains = np.where(away, 150.0, np.where(awake, 500.0, 300.0))
        max_w = p.heating_w * p.heating_cop
        held_w = heat_to_hold_w(
            weather.temperature_c, setpoint, gains, ua_w_per_k=p.ua_w_per_k, tau_h=p.building_tau_h, max_w=max_w
        )
        heat_w = held_w / p.heating_cop
        # Resistive heaters cycle on their thermostats (20 min); heat pumps modulate (inverter).
        if p.heating_cop < 1.5:
            cycle = hours[:, None] + np.array([0.0, 1200.0, 2400.0])
            heating = events(cycle, (heat_w / p.heating_w)[:, None] * 1200.0, p.heating_w)
        else:
            heating = events(hours, HOUR_S, heat_w)
    hot = weather.temperature_c - p.cooling_setpoint_c
    wanted = (awake | ((hot > 4) & ~away)) & (hot > 0)
    cool_w = np.where(wanted, np.minimum(p.ua_w_per_k * (hot + 2.0) / 3.0, p.cooling_w), 0.0)
    return heating, events(hours, HOUR_S, cool_w)


def pool_pump(p: HouseholdParams, plan: DayPlan, rng: np.random.Generator) -> Events:
    """Pool filter pump on a daily timer from mid-morning, running longer in summer.

    >>> home, plan, _ = _example()
    >>> pool_pump(home, plan, np.random.default_rng(0)).power_w.size == plan.away.size  # one run a day
    True
    """
    if p.pool_pump_w <= 0:
        return events([], [], [])
    hours = p.pool_pump_hours * (1.4 - 0.8 * plan.winter)
    return events(plan.local_s(rng.uniform(8.0, 11.0)), hours * HOUR_S, p.pool_pump_w)


def _example() -> tuple[HouseholdParams, DayPlan, Climate]:
    """A home owning every appliance and its plan for a January week in Paris, for the examples."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from vatio.sim.household import HouseholdParams, plan_days
    from vatio.sim.weather import CLIMATES

    home = replace(HouseholdParams.draw(1), water_heater_w=2200.0, ev_charger_w=7400.0, pool_pump_w=900.0)
    home = replace(home, heating_w=4000.0, dishwasher_per_week=7.0, dryer_w=2200.0, dryer_share=1.0)
    start, end = datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC)
    return home, plan_days(home, start, end, np.random.default_rng(0)), CLIMATES["temperate_north"]

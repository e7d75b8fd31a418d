"""Appliance-level synthetic homes: parameters drawn from a seed, a year simulated in milliseconds.

A home is a :class:`HouseholdParams` (who lives there, what they own, how they
live) drawn from a seed, and :func:`simulate_household` turns it into a
:class:`HouseholdTrace` on any grid from 1 s to 1 h. Loads are generated as
events in continuous time and integrated exactly onto the grid (see
:mod:`vatio.sim.appliances`), so the same home at 60 s and at 30 min carries
the same energy. The distributions in :meth:`HouseholdParams.draw` are tuned
against real homes by :mod:`vatio.sim.calibrate` (see docs/simulator.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from vatio.sim import appliances as ap
from vatio.sim.weather import Climate, Weather, climate, pv_output_w, sun_times, synthesize_weather

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_PV_BLOCK_S = 300.0  # PV output changes every 5 min: passing clouds, without per-step noise

# How homes differ by region, side by side: (temperate_north, subtropical_south).
# Shares are of homes; the rest are medians or scales. Set by calibrate.py
# against the real homes (docs/simulator.md), within what is known of France
# and New South Wales.
_REGIONAL: dict[str, tuple[float, float]] = {
    "heating": (0.7, 0.55),  # electric space heating (convectors in France, portable or reverse-cycle in NSW)
    "heat_pump": (0.2, 0.45),  # of those, heat pumps / reverse-cycle units
    "cooling": (0.12, 0.55),  # air conditioning
    "water_heater": (0.7, 0.3),  # NSW: most are gas or on a separately metered controlled load
    "offpeak": (0.2, 0.0),  # water heater / EV on the night tariff (NSW: that is the separate meter)
    "ev": (0.1, 0.06),
    "pv": (0.08, 0.3),
    "dryer": (0.3, 0.5),
    "freezer": (0.5, 0.5),  # a second fridge or a chest freezer
    "kettle": (0.6, 0.95),
    "pool": (0.03, 0.12),
    "home_all_day": (0.6, 0.5),  # someone in on workdays
    "electric_cooking": (0.75, 0.5),  # else gas, with a small electric (microwave) load
    "standby_w": (180.0, 35.0),  # median always-on load
    "ua_w_per_k": (120.0, 260.0),  # median heat loss: NSW houses are rarely insulated
    "heater_max_w": (12000.0, 4800.0),  # resistive heating capacity cap
    "setback_max_k": (6.0, 3.0),  # French thermostats set back deeply at night
    "wake_h": (7.5, 6.75),  # workday wake-up, centre of a ±1 h spread
    "sleep_h": (23.0, 23.5),
    "dinner_h": (19.75, 18.5),
    "evening_scale": (1.0, 0.5),  # lighting and plug loads: the real NSW evenings are much flatter
}
_REGION_COLUMN = {"temperate_north": 0, "subtropical_south": 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class HouseholdParams:
    """One home: occupants, habits and equipment. A power of 0 W means the home lacks that appliance.

    >>> a, b = HouseholdParams.draw(7), HouseholdParams.draw(7)
    >>> a == b, a == HouseholdParams.draw(8)
    (True, False)
    """

    seed: int = 0  # the seed the home was drawn from; also seeds its day-to-day behaviour
    climate: str = "temperate_north"  # key of vatio.sim.weather.CLIMATES
    tz: str = "Europe/Paris"  # IANA zone; schedules follow the local clock
    weather_seed: int = 0  # homes sharing climate and weather_seed see the same weather, as neighbours do
    occupants: int = 2
    home_all_day: bool = False  # someone in on workdays (retired, small children, home office)
    wake_workday_h: float = 6.75  # local clock hours
    leave_h: float = 8.0  # everyone out from leave_h to return_h on workdays unless home_all_day
    return_h: float = 18.0
    sleep_h: float = 23.0
    wake_weekend_h: float = 8.5
    sleep_weekend_h: float = 23.75
    schedule_jitter_h: float = 0.5  # day-to-day spread of those times (standard deviation)
    dinner_h: float = 19.75  # usual start of cooking dinner
    holiday_days_per_year: float = 14.0  # one long absence in the climate's holiday months
    trips_per_year: float = 3.0  # short absences of 2-4 days starting on a Friday or Saturday
    standby_w: float = 80.0  # always-on: router, boxes, standby, alarm
    fridge_w: float = 100.0  # compressor power while running
    fridge_period_s: float = 3000.0  # one on/off cycle
    fridge_duty: float = 0.35  # share of a cycle the compressor runs, at mid-season
    freezer_w: float = 0.0
    freezer_period_s: float = 3600.0
    freezer_duty: float = 0.4
    lighting_w: float = 200.0  # lights on when awake at home in the dark
    plug_load_w: float = 150.0  # TV, computers, chargers while awake at home
    cooking_w: float = 2000.0  # electric hob and oven at full power (small if cooking on gas)
    cooking_prob: float = 0.8  # chance of cooking dinner on an evening at home
    kettle_w: float = 0.0
    kettle_uses_per_day: float = 2.0
    washer_per_week: float = 3.0  # washing-machine programmes
    dryer_w: float = 0.0  # tumble dryer heating power
    dryer_share: float = 0.0  # share of washes dried in it
    dishwasher_per_week: float = 0.0
    water_heater_w: float = 0.0  # electric storage heater on this meter (0: gas, or a separate controlled-load meter)
    water_heater_offpeak: bool = False  # heats in the night tariff window instead of after each draw
    hot_water_kwh_per_day: float = 4.0  # heat drawn on an ordinary day at mid-season
    heating_w: float = 0.0  # electric space-heating capacity (electric input)
    heating_cop: float = 1.0  # 1 for resistive heaters, ~3 for a heat pump / reverse-cycle unit
    heating_setpoint_c: float = 20.0  # while awake at home
    heating_setback_k: float = 3.0  # lower while asleep or out
    heating_preheat_h: float = 0.5  # the thermostat's comfort period starts this long before waking
    ua_w_per_k: float = 180.0  # building heat loss per kelvin of indoor-outdoor difference
    building_tau_h: float = 15.0  # how fast the home cools with the heating off (heat capacity / ua)
    cooling_w: float = 0.0  # air-conditioning electric capacity
    cooling_setpoint_c: float = 25.0  # outdoor temperature above which the AC goes on
    ev_charger_w: float = 0.0
    ev_km_per_day: float = 30.0
    ev_kwh_per_km: float = 0.17
    ev_offpeak: bool = False  # charges on a night timer rather than on arrival
    pv_kwp: float = 0.0  # rooftop solar peak power
    pool_pump_w: float = 0.0  # pool filter pump, daily on a timer
    pool_pump_hours: float = 6.0  # its daily run at mid-season, longer in summer

    @classmethod
    def draw(cls, seed: int, *, climate: str = "temperate_north") -> HouseholdParams:
        """A plausible home of ``climate``, the same one for the same seed."""
        clim = _climate(climate)
        share = {key: values[_REGION_COLUMN[climate]] for key, values in _REGIONAL.items()}
        rng = np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, 0x40D5E])

        def has(key: str) -> bool:
            return bool(rng.uniform() < share[key])

        occupants = int(rng.choice([1, 2, 3, 4, 5], p=[0.3, 0.33, 0.15, 0.14, 0.08]))
        size = occupants**0.5  # appliance use grows slower than household size
        wake = share["wake_h"] + rng.uniform(-1.0, 1.0)
        sleep = share["sleep_h"] + rng.uniform(-1.0, 1.0)
        heating, cooling = has("heating"), has("cooling")
        heat_pump = heating and has("heat_pump")
        ev = has("ev")
        ua = rng.lognormal(np.log(share["ua_w_per_k"]), 0.45)
        return cls(
            seed=seed,
            climate=clim.name,
            tz=clim.tz,
            occupants=occupants,
            home_all_day=has("home_all_day"),
            wake_workday_h=wake,
            leave_h=wake + rng.uniform(0.6, 1.6),
            return_h=rng.uniform(15.5, 19.5),
            sleep_h=sleep,
            wake_weekend_h=wake + rng.uniform(0.5, 2.5),
            sleep_weekend_h=sleep + rng.uniform(0, 1),
            schedule_jitter_h=rng.uniform(0.2, 0.8),
            dinner_h=share["dinner_h"] + rng.normal(0, 0.5),
            holiday_days_per_year=rng.uniform(0, 24),
            trips_per_year=rng.uniform(0, 6),
            standby_w=rng.lognormal(np.log(share["standby_w"]), 0.45),
            fridge_w=rng.uniform(70, 150),
            fridge_period_s=rng.uniform(2400, 4200),
            fridge_duty=rng.uniform(0.25, 0.5),
            freezer_w=rng.uniform(80, 150) if has("freezer") else 0.0,
            freezer_period_s=rng.uniform(3000, 5400),
            freezer_duty=rng.uniform(0.3, 0.5),
            lighting_w=rng.uniform(60, 220) * size * share["evening_scale"],
            plug_load_w=rng.uniform(50, 200) * size * share["evening_scale"],
            cooking_w=rng.uniform(1500, 3500) if has("electric_cooking") else 400.0,
            cooking_prob=rng.uniform(0.5, 0.95),
            kettle_w=rng.uniform(1800, 2400) if has("kettle") else 0.0,
            kettle_uses_per_day=rng.uniform(1, 3) * size,
            washer_per_week=rng.uniform(1, 3) * occupants**0.8,
            dryer_w=rng.uniform(1800, 2600) if has("dryer") else 0.0,
            dryer_share=rng.uniform(0.3, 1.0),
            dishwasher_per_week=rng.uniform(2, 7) if rng.uniform() < 0.6 else 0.0,
            water_heater_w=rng.choice([1500.0, 2200.0, 3000.0]) if has("water_heater") else 0.0,
            water_heater_offpeak=has("offpeak"),
            hot_water_kwh_per_day=rng.uniform(1.8, 3.2) * occupants**0.8,
            # Heaters sized for a cold snap: 25-40 K of indoor-outdoor difference at full power.
            heating_w=min(ua * rng.uniform(25, 40), share["heater_max_w"]) / (3.0 if heat_pump else 1.0)
            if heating
            else 0.0,
            heating_cop=rng.uniform(2.5, 3.5) if heat_pump else 1.0,
            heating_setpoint_c=rng.uniform(18.0, 21.5),
            heating_setback_k=rng.uniform(0.3, 1.0) * share["setback_max_k"],
            heating_preheat_h=rng.uniform(0.0, 1.5),
            ua_w_per_k=ua,
            building_tau_h=rng.uniform(10, 30),
            cooling_w=rng.uniform(800, 3000) if cooling else 0.0,
            cooling_setpoint_c=rng.uniform(23, 29),
            ev_charger_w=rng.choice([2300.0, 3700.0, 7400.0]) if ev else 0.0,
            ev_km_per_day=rng.uniform(15, 60),
            ev_offpeak=has("offpeak"),
            pv_kwp=rng.uniform(1.5, 6.0) if has("pv") else 0.0,
            pool_pump_w=rng.uniform(600, 1300) if has("pool") else 0.0,
            pool_pump_hours=rng.uniform(4, 8),
        )


def _climate(name: str) -> Climate:
    clim = climate(name)
    if name not in _REGION_COLUMN:
        raise ValueError(f"no household shares for climate {name!r}")
    return clim


@dataclass(slots=True)
class HouseholdTrace:
    """A simulated home on a grid: interval-mean powers, W; ``ts`` the UTC epoch second each interval starts.

    Accounting, per interval: ``sum(appliances) - solar_w == power_w - export_w``
    with at most one of ``power_w``, ``export_w`` non-zero (the meter nets
    over the interval). ``appliances`` holds only what the home owns.

    >>> from datetime import UTC
    >>> t = simulate_household(HouseholdParams.draw(2), start=datetime(2024, 6, 1, tzinfo=UTC),
    ...                        end=datetime(2024, 6, 2, tzinfo=UTC), step_s=3600)
    >>> bool(np.allclose(sum(t.appliances.values()) - t.solar_w, t.power_w - t.export_w))
    True
    """

    ts: npt.NDArray[np.int64]
    power_w: FloatArray  # mean net import
    export_w: FloatArray  # mean solar export
    solar_w: FloatArray  # mean PV generation (zeros without PV)
    appliances: dict[str, FloatArray]
    temperature_c: FloatArray  # outdoor, mid-interval
    occupied: BoolArray  # someone home (asleep counts) for at least half the interval
    away: BoolArray  # holiday or trip day for at least half the interval


def _local_days(tz: ZoneInfo, start: datetime, end: datetime) -> tuple[list[datetime], FloatArray]:
    """Local midnights from the day before ``start`` to the day after ``end``, as datetimes and epochs."""
    first = start.astimezone(tz).date() - timedelta(days=1)
    n = (end.astimezone(tz).date() - first).days + 3
    days = [datetime.combine(first + timedelta(days=i), datetime.min.time(), tzinfo=tz) for i in range(n)]
    return days, np.array([d.timestamp() for d in days])


def _away_days(p: HouseholdParams, clim: Climate, days: list[datetime], rng: np.random.Generator) -> BoolArray:
    """Holidays and trips: one long holiday a year in the usual months, a few weekends away."""
    away = np.zeros(len(days), dtype=bool)
    for year in sorted({d.year for d in days}):
        in_year = [i for i, d in enumerate(days) if d.year == year]
        season = [i for i in in_year if days[i].month in clim.holiday_months[:1]]
        length = round(p.holiday_days_per_year * rng.uniform(0.7, 1.3))
        if season and length > 0:
            first = int(rng.choice(season))
            away[first : first + length] = True
        fridays = [i for i in in_year if days[i].weekday() in (4, 5)]
        for _ in range(rng.poisson(p.trips_per_year) if fridays else 0):
            first = int(rng.choice(fridays))
            away[first : first + int(rng.integers(2, 5))] = True
    return away


def plan_days(p: HouseholdParams, start: datetime, end: datetime, rng: np.random.Generator) -> ap.DayPlan:
    """The home's days around ``[start, end)``: wake, out, back, sleep, away; seconds from ``start``.

    >>> from datetime import UTC
    >>> monday, tuesday = datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 9, tzinfo=UTC)
    >>> plan = plan_days(HouseholdParams.draw(2), monday, tuesday, np.random.default_rng(0))
    >>> bool((plan.wake_s <= plan.out_start_s).all() and (plan.out_end_s <= plan.sleep_s).all())
    True
    """
    clim = _climate(p.climate)
    days, midnights = _local_days(ZoneInfo(p.tz), start, end)
    n = len(days)
    holidays = {(d.month, d.day) for d in days} & set(clim.public_holidays)
    workday = np.array([d.weekday() < 5 and (d.month, d.day) not in holidays for d in days])
    away = _away_days(p, clim, days, rng)
    jitter = rng.normal(0.0, p.schedule_jitter_h, (4, n))
    wake = np.where(workday, p.wake_workday_h, p.wake_weekend_h) + jitter[0]
    sleep = np.maximum(np.where(workday, p.sleep_h, p.sleep_weekend_h) + jitter[1], wake + 6)
    out = workday & (not p.home_all_day)
    out_start = np.where(out, np.clip(p.leave_h + jitter[2] / 2, wake + 0.3, None), 12.5)
    out_end = np.where(out, np.clip(p.return_h + jitter[3] * 2, out_start + 1, sleep - 0.5), 12.5)
    hours = np.stack([wake, out_start, out_end, sleep])
    hours = np.where(away, 12.5, hours)  # away days: all windows empty
    base = midnights - start.timestamp()
    local_dates = np.array([d.date().toordinal() - 719_163 for d in days], dtype=np.float64) * 86_400
    sunrise, sunset = sun_times(clim, local_dates)
    day_of_year = np.array([d.timetuple().tm_yday for d in days], dtype=np.float64)
    coldest = 15 if not clim.southern else 197
    winter = 0.5 + 0.5 * np.cos(2 * np.pi * (day_of_year - coldest) / 365.25)
    return ap.DayPlan(
        midnight_s=base,
        wake_s=base + hours[0] * 3600,
        out_start_s=base + hours[1] * 3600,
        out_end_s=base + hours[2] * 3600,
        sleep_s=base + hours[3] * 3600,
        away=away,
        workday=workday,
        winter=winter,
        sunrise_s=sunrise - start.timestamp(),
        sunset_s=sunset - start.timestamp(),
    )


def _stream(seed: int, salt: int) -> np.random.Generator:
    # One independent stream per appliance: changing one appliance never reshuffles the others.
    return np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, salt])


def _loads(
    p: HouseholdParams, plan: ap.DayPlan, clim: Climate, weather: Weather, seed: int, t0: float, span_s: float
) -> tuple[dict[str, ap.Events], ap.Events]:
    """Events of every appliance the home owns, and its PV generation in 5-min blocks."""
    washer, dryer = ap.laundry(p, plan, _stream(seed, 8))
    heating, cooling = ap.thermal(p, plan, weather, t0)
    loads = {
        "standby": ap.standby(p, span_s, _stream(seed, 2)),
        "fridge": ap.compressor(p.fridge_w, p.fridge_period_s, p.fridge_duty, plan, _stream(seed, 3)),
        "freezer": ap.compressor(p.freezer_w, p.freezer_period_s, p.freezer_duty, plan, _stream(seed, 4)),
        "lighting": ap.lighting(p, plan, _stream(seed, 5)),
        "plug_loads": ap.plug_loads(p, plan, _stream(seed, 6)),
        "cooking": ap.cooking(p, plan, _stream(seed, 7)),
        "kettle": ap.kettle(p, plan, _stream(seed, 9)),
        "washer": washer,
        "dryer": dryer,
        "dishwasher": ap.dishwasher(p, plan, _stream(seed, 10)),
        "water_heater": ap.water_heater(p, plan, clim, _stream(seed, 11)),
        "heating": heating,
        "cooling": cooling,
        "ev": ap.ev_charging(p, plan, clim, _stream(seed, 12)),
        "pool_pump": ap.pool_pump(p, plan, _stream(seed, 14)),
    }
    owned = {name: ev for name, ev in loads.items() if ev.power_w.size and ev.power_w.max() > 0}
    if p.pv_kwp <= 0:
        return owned, ap.events([], [], [])
    blocks = np.arange(0.0, span_s, _PV_BLOCK_S)
    pv = pv_output_w(clim, weather, t0 + blocks + _PV_BLOCK_S / 2, kwp=p.pv_kwp, rng=_stream(seed, 13))
    return owned, ap.events(blocks, _PV_BLOCK_S, pv)


def simulate_household(
    params: HouseholdParams, *, start: datetime, end: datetime, step_s: int, seed: int | None = None
) -> HouseholdTrace:
    """Simulate ``params`` over ``[start, end)`` on a ``step_s`` grid (any step; 1 s to 1 h is the use).

    ``seed`` drives day-to-day behaviour (default: ``params.seed``); the same
    params, span, step and seed give the same trace, byte for byte.

    >>> from datetime import UTC
    >>> home = HouseholdParams.draw(3)
    >>> day = simulate_household(home, start=datetime(2024, 1, 8, tzinfo=UTC),
    ...                          end=datetime(2024, 1, 9, tzinfo=UTC), step_s=600)
    >>> day.power_w.shape, bool(day.power_w.min() > 0)
    ((144,), True)
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    if step_s <= 0 or end <= start:
        raise ValueError(f"need step_s > 0 and end > start, got step_s={step_s}, {start} .. {end}")
    clim = _climate(params.climate)
    behaviour = params.seed if seed is None else seed
    t0 = start.timestamp()
    n = -(-round((end - start).total_seconds()) // step_s)
    span_s = float(n * step_s)
    plan = plan_days(params, start, end, _stream(behaviour, 1))
    weather = synthesize_weather(clim, int(t0) - 86_400, int(t0 + span_s) + 86_400, seed=params.weather_seed)
    owned, pv_events = _loads(params, plan, clim, weather, behaviour, t0, span_s)
    appliances = {name: ap.render(ev, step_s=step_s, n=n) for name, ev in owned.items()}
    solar = ap.render(pv_events, step_s=step_s, n=n)
    net = sum(appliances.values(), np.zeros(n)) - solar
    ts = (int(t0) + step_s * np.arange(n)).astype(np.int64)
    return HouseholdTrace(
        ts=ts,
        power_w=np.maximum(net, 0.0),
        export_w=np.maximum(-net, 0.0),
        solar_w=solar,
        appliances=appliances,
        temperature_c=weather.temperature_at(ts + step_s / 2),
        occupied=_presence(plan, home=True, step_s=step_s, n=n),
        away=_presence(plan, home=False, step_s=step_s, n=n),
    )


def _presence(plan: ap.DayPlan, *, home: bool, step_s: int, n: int) -> BoolArray:
    """Someone home (``home=True``) or the household away, for at least half of each interval."""
    next_midnight = np.append(plan.midnight_s[1:], plan.midnight_s[-1] + 86_400)
    if not home:
        share = ap.render(ap.events(plan.midnight_s, next_midnight - plan.midnight_s, plan.away), step_s=step_s, n=n)
        return share >= 0.5
    present = (~plan.away).astype(np.float64)
    before = ap.events(plan.midnight_s, plan.out_start_s - plan.midnight_s, present)
    after = ap.events(plan.out_end_s, next_midnight - plan.out_end_s, present)
    return ap.render(ap.concat(before, after), step_s=step_s, n=n) >= 0.5

"""Synthetic outdoor weather and daylight for the household simulator, and what they do to a home.

Heating, air conditioning, lighting and rooftop solar all follow the weather,
so a home needs a temperature series and the sun's position. Both are made
here from a handful of climate numbers, not from a weather archive: the
simulator must run offline, for any span, identically for a given seed.

Temperature is a seasonal cosine, plus day-to-day anomalies that persist for a
few days (weather systems), plus a diurnal cycle that is flatter on cloudy
days. Daylight uses the standard solar declination and equation-of-time
approximations (accurate to a few minutes, ample for lights and PV). The
weather's effect on a home is here too: rooftop PV output and the heat a
thermostat needs to hold a setpoint in a one-node building model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_S = 86_400
HOUR_S = 3_600


@dataclass(frozen=True, slots=True, kw_only=True)
class Climate:
    """The numbers that make one region's weather and calendar.

    >>> CLIMATES["temperate_north"].tz
    'Europe/Paris'
    """

    name: str
    tz: str  # IANA zone of the homes: schedules follow local clocks
    latitude_deg: float
    longitude_deg: float
    mean_c: float  # annual mean outdoor temperature
    seasonal_amplitude_k: float  # half the gap between the warmest and coldest months
    warmest_doy: int  # day of year of the seasonal maximum
    diurnal_amplitude_k: float  # half the clear-sky day-night swing
    anomaly_sd_k: float  # spread of daily means around the seasonal normal
    anomaly_memory_days: float  # e-folding time of those anomalies
    cloudiness: float  # mean daily cloud fraction, 0..1
    offpeak_start_h: float  # local start of the cheap night tariff (heures creuses, controlled load)
    offpeak_hours: float
    holiday_months: tuple[int, ...]  # months in which families take their long holiday
    public_holidays: tuple[tuple[int, int], ...]  # (month, day) days off work for everyone

    @property
    def southern(self) -> bool:
        """True south of the equator, where winter is June to August."""
        return self.latitude_deg < 0


CLIMATES: dict[str, Climate] = {
    # Paris-Montsouris normals: January ~5 °C, July ~20.5 °C.
    "temperate_north": Climate(
        name="temperate_north",
        tz="Europe/Paris",
        latitude_deg=48.8,
        longitude_deg=2.3,
        mean_c=12.4,
        seasonal_amplitude_k=7.8,
        warmest_doy=205,
        diurnal_amplitude_k=4.0,
        anomaly_sd_k=3.0,
        anomaly_memory_days=3.0,
        cloudiness=0.6,
        offpeak_start_h=22.5,
        offpeak_hours=8.0,
        holiday_months=(7, 8),
        public_holidays=((1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)),
    ),
    # Sydney (Observatory Hill / western suburbs blend): January ~23.5 °C, July ~13 °C.
    "subtropical_south": Climate(
        name="subtropical_south",
        tz="Australia/Sydney",
        latitude_deg=-33.9,
        longitude_deg=151.2,
        mean_c=18.2,
        seasonal_amplitude_k=5.3,
        warmest_doy=22,
        diurnal_amplitude_k=3.8,
        anomaly_sd_k=2.3,
        anomaly_memory_days=2.5,
        cloudiness=0.4,
        offpeak_start_h=22.0,
        offpeak_hours=9.0,
        holiday_months=(12, 1),
        public_holidays=((1, 1), (1, 26), (4, 25), (12, 25), (12, 26)),
    ),
}


def climate(name: str) -> Climate:
    """The climate called ``name``; a clear error names the known ones.

    >>> climate("subtropical_south").southern
    True
    """
    try:
        return CLIMATES[name]
    except KeyError:
        raise ValueError(f"unknown climate {name!r}; known: {', '.join(sorted(CLIMATES))}") from None


@dataclass(frozen=True, slots=True)
class Weather:
    """Hourly weather over a span: ``temperature_c[i]`` is the mean of hour ``start_s + i*3600``.

    >>> w = synthesize_weather(CLIMATES["temperate_north"], 1_199_145_600, 1_199_232_000, seed=1)
    >>> w.temperature_c.shape, w.cloud_fraction.shape
    ((24,), (24,))
    """

    start_s: int
    temperature_c: FloatArray
    cloud_fraction: FloatArray  # 0 clear .. 1 overcast, constant within a day

    def temperature_at(self, t_s: npt.ArrayLike) -> FloatArray:
        """Temperature at epoch seconds ``t_s``, linear between hour centres."""
        hour_centres = self.start_s + HOUR_S * (np.arange(self.temperature_c.size) + 0.5)
        return np.interp(np.asarray(t_s, dtype=np.float64), hour_centres, self.temperature_c)

    def cloud_at(self, t_s: npt.ArrayLike) -> FloatArray:
        """Cloud fraction of the hour containing each epoch second of ``t_s``."""
        idx = (np.asarray(t_s, dtype=np.float64) - self.start_s) // HOUR_S
        return self.cloud_fraction[np.clip(idx.astype(np.int64), 0, self.cloud_fraction.size - 1)]


def day_of_year(t_s: npt.ArrayLike) -> IntArray:
    """Day of year (1..366) of the UTC date of each epoch second.

    >>> day_of_year([0, 86_400 * 40]).tolist()
    [1, 41]
    """
    days = (np.asarray(t_s, dtype=np.float64) // DAY_S).astype("datetime64[D]")
    doy: IntArray = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
    return doy


def _seasonal_c(clim: Climate, doy: FloatArray) -> FloatArray:
    phase = 2 * np.pi * (doy - clim.warmest_doy) / 365.25
    return clim.mean_c + clim.seasonal_amplitude_k * np.cos(phase)


def _daily_anomalies(clim: Climate, n_days: int, rng: np.random.Generator) -> FloatArray:
    # AR(1): a cold spell lasts days, which is what makes heating loads come in runs.
    phi = math.exp(-1.0 / clim.anomaly_memory_days)
    shocks = rng.normal(0.0, clim.anomaly_sd_k * math.sqrt(1 - phi * phi), n_days)
    anomalies = np.empty(n_days)
    level = rng.normal(0.0, clim.anomaly_sd_k)
    for i in range(n_days):
        level = phi * level + shocks[i]
        anomalies[i] = level
    return anomalies


def synthesize_weather(clim: Climate, start_s: int, end_s: int, *, seed: int) -> Weather:
    """Hourly temperature and cloud for ``[start_s, end_s)`` (epoch seconds), seeded.

    The first hour is ``start_s`` rounded down to a whole UTC hour; same seed,
    same span, same weather.

    >>> july = synthesize_weather(CLIMATES["temperate_north"], 1_214_870_400, 1_217_548_800, seed=0)
    >>> 15 < float(july.temperature_c.mean()) < 25  # Paris, July 2008
    True
    """
    first_hour = (start_s // HOUR_S) * HOUR_S
    n_hours = max(1, -(-(end_s - first_hour) // HOUR_S))
    hours = first_hour + HOUR_S * np.arange(n_hours, dtype=np.float64)
    n_days = n_hours // 24 + 3
    rng = np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, 0x3EA7])
    anomalies = _daily_anomalies(clim, n_days, rng)
    cloud_days = rng.beta(2 * clim.cloudiness, 2 * (1 - clim.cloudiness), n_days)
    day_idx = ((hours - first_hour) // DAY_S).astype(np.int64)
    # Anomalies interpolated between day centres so the series has no midnight steps.
    anomaly = np.interp((hours - first_hour) / DAY_S - 0.5, np.arange(n_days), anomalies)
    solar_hour = (hours / HOUR_S + clim.longitude_deg / 15.0) % 24
    # Minimum near dawn, maximum mid-afternoon; clouds flatten the swing.
    diurnal = np.cos(2 * np.pi * (solar_hour - 15.0) / 24.0)
    swing = clim.diurnal_amplitude_k * (1.2 - 0.7 * cloud_days[day_idx])
    temperature = (
        _seasonal_c(clim, day_of_year(hours).astype(np.float64))
        + anomaly
        + swing * diurnal
        + rng.normal(0.0, 0.3, n_hours)
    )
    return Weather(first_hour, temperature, cloud_days[day_idx])


def _declination_rad(doy: FloatArray) -> FloatArray:
    return np.asarray(np.radians(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.0), dtype=np.float64)


def _equation_of_time_h(doy: FloatArray) -> FloatArray:
    b = 2 * np.pi * (doy - 81) / 364.0
    return (9.87 * np.sin(2 * b) - 7.53 * np.cos(b) - 1.5 * np.sin(b)) / 60.0


def sun_times(clim: Climate, date_utc_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Sunrise and sunset (epoch seconds) for calendar dates given as their 00:00 UTC.

    Pass the LOCAL date's midnight as if it were UTC: solar noon is then placed
    on that date wherever the home is (Sydney's falls near 02:00 UTC).

    >>> rise, sunset = sun_times(CLIMATES["temperate_north"], [1_182_384_000])  # 2007-06-21
    >>> round(float(sunset[0] - rise[0]) / 3600, 1)  # Paris midsummer: 16 h 10 min
    16.2
    """
    date_s = np.asarray(date_utc_s, dtype=np.float64)
    doy = day_of_year(date_s).astype(np.float64)
    lat = math.radians(clim.latitude_deg)
    # -0.83° for refraction and the sun's radius: sunrise is the upper limb at the horizon.
    cos_h0 = (np.sin(np.radians(-0.83)) - math.sin(lat) * np.sin(_declination_rad(doy))) / (
        math.cos(lat) * np.cos(_declination_rad(doy))
    )
    half_day_h = np.degrees(np.arccos(np.clip(cos_h0, -1.0, 1.0))) / 15.0
    noon_utc_h = 12.0 - clim.longitude_deg / 15.0 - _equation_of_time_h(doy)
    return date_s + HOUR_S * (noon_utc_h - half_day_h), date_s + HOUR_S * (noon_utc_h + half_day_h)


def sun_elevation_sin(clim: Climate, t_s: npt.ArrayLike) -> FloatArray:
    """Sine of the sun's elevation at epoch seconds ``t_s`` (negative at night).

    >>> noon = 1_182_427_200 - 600  # 2007-06-21 11:50 UTC, solar noon in Paris
    >>> bool(sun_elevation_sin(CLIMATES["temperate_north"], [noon])[0] > 0.9)
    True
    """
    t = np.asarray(t_s, dtype=np.float64)
    doy = day_of_year(t).astype(np.float64)
    solar_h = (t % DAY_S) / HOUR_S + clim.longitude_deg / 15.0 + _equation_of_time_h(doy)
    hour_angle = np.radians(15.0 * (solar_h - 12.0))
    lat = math.radians(clim.latitude_deg)
    decl = _declination_rad(doy)
    return math.sin(lat) * np.sin(decl) + math.cos(lat) * np.cos(decl) * np.cos(hour_angle)


def pv_output_w(
    clim: Climate, weather: Weather, t_s: npt.ArrayLike, *, kwp: float, rng: np.random.Generator
) -> FloatArray:
    """Rooftop PV output (W) at epoch seconds ``t_s``: sun height, the day's cloud, passing clouds.

    >>> w = synthesize_weather(CLIMATES["subtropical_south"], 1_356_998_400, 1_357_084_800, seed=3)
    >>> out = pv_output_w(CLIMATES["subtropical_south"], w, [1_357_000_000, 1_357_040_000],
    ...                   kwp=3.0, rng=np.random.default_rng(0))
    >>> [bool(out[0] > 500), float(out[1])]  # Sydney: 11:46 local, then 22:53 local
    [True, 0.0]
    """
    t = np.asarray(t_s, dtype=np.float64)
    height = np.maximum(sun_elevation_sin(clim, t), 0.0)
    cloud = weather.cloud_at(t)
    # Overcast cuts output to ~30 %; on broken-cloud days output dips block by block.
    passing = 1.0 - cloud * rng.uniform(0.0, 0.7, t.size)
    return kwp * 800.0 * height**1.2 * (1.0 - 0.7 * cloud**2) * passing


def heat_to_hold_w(
    outdoor_c: FloatArray,
    setpoint_c: FloatArray,
    gains_w: FloatArray,
    *,
    ua_w_per_k: float,
    tau_h: float,
    max_w: float,
) -> FloatArray:
    """Hourly heat (W) a thermostat supplies to hold ``setpoint_c`` in a one-node building.

    The indoor temperature coasts down after a setback (no heat until it gets
    there) and the heater works at full power to recover: the night dip and
    morning peak of electrically heated homes. A loop, but 8,760 float steps a year.

    >>> heat = heat_to_hold_w(np.full(3, 5.0), np.array([20.0, 16.0, 20.0]), np.zeros(3),
    ...                       ua_w_per_k=100.0, tau_h=10.0, max_w=5000.0)
    >>> [round(float(w)) for w in heat]  # hold, coast, recover
    [1500, 0, 2850]
    """
    capacity_wh = ua_w_per_k * tau_h  # heat capacity, Wh per kelvin
    heat = np.empty(outdoor_c.size)
    indoor = float(setpoint_c[0])
    for i, (out, target, gain) in enumerate(
        zip(outdoor_c.tolist(), setpoint_c.tolist(), gains_w.tolist(), strict=True)
    ):
        needed = capacity_wh * (target - indoor) + ua_w_per_k * (indoor - out) - gain
        heat[i] = q = min(max(needed, 0.0), max_w)
        indoor += (q + gain - ua_w_per_k * (indoor - out)) / capacity_wh
    return heat

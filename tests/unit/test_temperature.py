"""Temperature-aware HVAC runaway: a cold snap is explained, a heater stuck on in mild weather is not."""

from __future__ import annotations

import numpy as np

from vatio.detect.base import DeviceSeries
from vatio.detect.temperature import TemperatureDetector

STEP = 1800
DAY = 86400
THRESHOLD = 3.0


def heated_home(days: int = 70, seed: int = 0, *, cooling: bool = False) -> tuple[DeviceSeries, np.ndarray]:
    """Weather systems of a few days plus a diurnal cycle; heating below 15 °C (or cooling above 24 °C)."""
    rng = np.random.default_rng(seed)
    ts = np.arange(0, days * DAY, STEP, dtype=np.int64)
    systems = np.repeat(rng.normal(0, 4, days // 3 + 1), 3 * DAY // STEP)[: len(ts)]
    temp = (26.0 if cooling else 9.0) + systems + 4 * np.sin(2 * np.pi * (ts % DAY) / DAY)
    hour = (ts % DAY) / 3600
    power = 200 + 400 * np.exp(-((hour - 19) ** 2) / 4) + rng.normal(0, 30, len(ts))
    power += 120 * (np.maximum(temp - 24, 0) if cooling else np.maximum(15 - temp, 0))
    power += np.where(rng.random(len(ts)) < 0.03, rng.uniform(300, 1500, len(ts)), 0.0)
    return DeviceSeries("h", ts, power, STEP, temperature_c=temp.copy()), temp


def test_without_temperature_it_scores_zero() -> None:
    series, _ = heated_home()
    bare = DeviceSeries("h", series.ts, series.power_w, STEP)
    out = TemperatureDetector().score_series(bare)
    assert np.all(out.score == 0.0)
    nan_temp = DeviceSeries("h", series.ts, series.power_w, STEP, temperature_c=np.full(len(series), np.nan))
    assert np.all(TemperatureDetector().score_series(nan_temp).score == 0.0)


def test_a_cold_snap_is_explained_by_the_temperature() -> None:
    series, temp = heated_home(seed=1)
    snap = slice(len(series) - 4 * 48, len(series))
    assert series.temperature_c is not None
    series.temperature_c[snap] -= 8.0  # four days 8 °C colder, and the heating answers
    series.power_w[snap] += 120 * (np.maximum(15 - series.temperature_c[snap], 0) - np.maximum(15 - temp[snap], 0))
    out = TemperatureDetector().score_series(series)
    assert out.score[snap].max() < THRESHOLD
    # The same extra load without the cold is a runaway.
    warm = DeviceSeries("h", series.ts, series.power_w, STEP, temperature_c=temp)
    assert TemperatureDetector().score_series(warm).score[snap].max() >= THRESHOLD


def test_a_heater_stuck_on_is_found_with_the_numbers() -> None:
    series, _ = heated_home(seed=2)
    start = len(series) - 2 * 48
    series.power_w[start:] += 2000.0
    out = TemperatureDetector().score_series(series)
    hit = start + 16  # eight hours in
    assert out.score[hit] >= THRESHOLD
    assert out.kind[hit] == "hvac_temperature"
    assert out.observed_w[hit] > out.high_w[hit] > out.expected_w[hit] > out.low_w[hit]
    assert series.ts[start] - 6 * 3600 <= out.since[hit] <= series.ts[hit]
    assert out.score[start - 48 : start].max() < THRESHOLD


def test_cooling_homes_and_ordinary_weeks_stay_quiet() -> None:
    for seed, cooling in ((3, True), (4, False)):
        series, _ = heated_home(seed=seed, cooling=cooling)
        out = TemperatureDetector().score_series(series)
        assert np.mean(out.score >= THRESHOLD) < 0.01
        assert np.all(out.score[: 14 * 48] == 0.0)  # no model before min_days


def test_the_model_learns_the_heating_slope() -> None:
    series, _ = heated_home(seed=5)
    det = TemperatureDetector()
    out = det.score_series(series)
    # Expected 24 h power follows the weather: colder days expect more.
    assert series.temperature_c is not None
    cold = series.temperature_c < np.nanquantile(series.temperature_c, 0.2)
    mild = series.temperature_c > np.nanquantile(series.temperature_c, 0.8)
    late = np.arange(len(series)) > 30 * 48
    assert np.nanmean(out.expected_w[cold & late]) > np.nanmean(out.expected_w[mild & late]) + 300.0


def test_causal_with_a_temperature_feed() -> None:
    series, temp = heated_home(days=40, seed=6)
    k = len(series) - 100
    prefix = DeviceSeries("h", series.ts[: k + 1], series.power_w[: k + 1], STEP, temperature_c=temp[: k + 1])
    full = TemperatureDetector().score_series(series).score
    assert full[k - 200 : k].max() > 0.0  # something is scored in the compared range
    assert np.array_equal(full[: k + 1], TemperatureDetector().score_series(prefix).score)

"""Forecast-residual detector: finds a lasting excess and a shortfall, stays quiet otherwise, learns no anomaly."""

from __future__ import annotations

import numpy as np

from vatio.detect.base import DeviceSeries
from vatio.detect.forecast import ForecastResidualDetector

STEP = 1800
DAY = 86400
THRESHOLD = 3.0


def home(days: int = 42, seed: int = 0, step: int = STEP) -> DeviceSeries:
    """Floor, a morning and an evening peak, busier weekends, random appliance runs."""
    rng = np.random.default_rng(seed)
    ts = np.arange(0, days * DAY, step, dtype=np.int64)
    hour = (ts % DAY) / 3600
    weekend = ((ts // DAY) % 7) >= 5
    power = 120 + rng.normal(0, 8, len(ts)) + np.where(weekend, 150 * np.exp(-((hour - 13) ** 2) / 8), 0.0)
    power += 500 * np.exp(-((hour - 19) ** 2) / 4) + 300 * np.exp(-((hour - 7.5) ** 2) / 1.5)
    power += np.where(rng.random(len(ts)) < 0.03, rng.uniform(300, 1200, len(ts)), 0.0)
    return DeviceSeries("d", ts, power, step)


def test_an_ordinary_home_rarely_crosses_the_threshold() -> None:
    for seed in (0, 1):
        out = ForecastResidualDetector().score_series(home(seed=seed))
        scored = out.score[14 * 48 :]
        assert np.mean(scored >= THRESHOLD) < 0.003  # about one slot in a thousand
        assert np.all(out.score[: 14 * 48] == 0.0)  # nothing before the model exists


def test_something_left_on_is_found_with_expected_band_and_since() -> None:
    series = home()
    start = len(series) - 48
    series.power_w[start : start + 24] += 800.0
    out = ForecastResidualDetector().score_series(series)
    hit = start + 10
    assert out.score[hit] >= THRESHOLD
    assert out.kind[hit] in {"forecast_high", "forecast_sustained_high"}
    assert out.observed_w[hit] > out.high_w[hit] > out.expected_w[hit] > out.low_w[hit]
    assert out.expected_w[hit] < series.power_w[hit] - 500.0  # the forecast did not follow the appliance
    assert series.ts[start] - 3 * 3600 <= out.since[hit] <= series.ts[hit]


def test_a_lasting_shortfall_is_forecast_low() -> None:
    series = home()
    start = len(series) - 96
    series.power_w[start:] *= 0.3  # a meter under-reading
    out = ForecastResidualDetector().score_series(series)
    assert out.score[start + 12 :].max() >= THRESHOLD
    assert "forecast_low" in set(out.kind[start + 12 :][out.score[start + 12 :] >= THRESHOLD])


def test_an_anomaly_is_not_learned_into_the_forecast() -> None:
    series = home(days=49)
    start = len(series) - 3 * 48
    series.power_w[start:] += 1000.0  # three days of a heater left on
    fc = ForecastResidualDetector().score_series(series)
    clean = ForecastResidualDetector().score_series(home(days=49))
    # Huberised updates: after three days the forecast has moved by well under the 1000 W step.
    drift = fc.expected_w[-1] - clean.expected_w[-1]
    assert drift < 400.0
    assert fc.score[start : start + 48].min() >= THRESHOLD - 1.5  # its first day flagged throughout
    assert fc.score[start + 6 : start + 48].max() >= THRESHOLD


def test_coarser_and_finer_meters_and_gaps() -> None:
    hourly = home(step=3600)
    hourly.power_w[-10:] += 2000.0
    assert ForecastResidualDetector().score_series(hourly).score[-1] >= THRESHOLD
    fine = home(days=30, step=900)
    keep = np.ones(len(fine), dtype=bool)
    keep[2000:2100] = False  # a day of rows absent
    gappy = DeviceSeries("d", fine.ts[keep], fine.power_w[keep], 900)
    out = ForecastResidualDetector().score_series(gappy)
    assert len(out.score) == keep.sum()
    assert np.isfinite(out.score).all()

"""The evaluation's reference detectors: causal, deterministic, and they see the obvious."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from vatio.detect.base import DeviceSeries, SeriesDetector
from vatio.eval.baselines import HourOfWeekMAD, PyODBaseline, RiverHalfSpaceTrees, StaticThreshold

STEP = 1800
DAYS = 35
STEP_START = 30 * 48 + 20  # day 30, 10:00 UTC
STEP_ROWS = 24  # twelve hours

FACTORIES: dict[str, Callable[[int], SeriesDetector]] = {
    "static_threshold": lambda seed: StaticThreshold(),
    "hour_of_week_mad": lambda seed: HourOfWeekMAD(),
    "river_hst": lambda seed: RiverHalfSpaceTrees(seed=seed),
    "pyod_iforest": lambda seed: PyODBaseline(model="iforest", seed=seed),
    "pyod_hbos": lambda seed: PyODBaseline(model="hbos", seed=seed),
}


def _household(seed: int = 3, *, with_step: bool = False) -> DeviceSeries:
    """Five weeks of a plausible home: baseload, an evening peak, noise."""
    rng = np.random.default_rng(seed)
    ts = np.arange(DAYS * 48, dtype=np.int64) * STEP + 1_700_000_000 // 86400 * 86400
    hour = (ts % 86400) / 3600
    power = 150 + 400 * np.exp(-(((hour - 19) / 2) ** 2)) + rng.gamma(2.0, 30.0, len(ts))
    if with_step:
        power[STEP_START : STEP_START + STEP_ROWS] += 1500.0
    return DeviceSeries("home-1", ts, power, STEP)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_scores_of_early_rows_ignore_later_rows(name: str) -> None:
    series = _household()
    before = FACTORIES[name](0).score_series(series).score
    rng = np.random.default_rng(99)
    for cut in (len(series) // 2 + 7, len(series) - 30):
        changed = series.power_w.copy()
        changed[cut + 1 :] = rng.uniform(0, 5000, len(series) - cut - 1)
        after = FACTORIES[name](0).score_series(DeviceSeries("home-1", series.ts, changed, STEP)).score
        np.testing.assert_array_equal(after[: cut + 1], before[: cut + 1])


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_same_seed_same_scores(name: str) -> None:
    series = _household()
    first = FACTORIES[name](7).score_series(series)
    second = FACTORIES[name](7).score_series(series)
    np.testing.assert_array_equal(first.score, second.score)
    assert len(first.score) == len(series)
    assert set(first.kind.tolist()) == {FACTORIES[name](7).name}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_an_obvious_step_scores_high(name: str) -> None:
    scores = FACTORIES[name](0).score_series(_household(with_step=True)).score
    inside = scores[STEP_START : STEP_START + STEP_ROWS]
    outside = np.delete(scores, np.arange(STEP_START, STEP_START + STEP_ROWS))
    # Higher than 99% of the ordinary rows the detector could score.
    assert np.nanmax(inside) > np.nanquantile(outside, 0.99)


def test_hour_of_week_band_contains_ordinary_rows() -> None:
    scores = HourOfWeekMAD().score_series(_household())
    scored = np.isfinite(scores.expected_w)
    assert scored[: 7 * 48].sum() == 0  # no past week yet
    inside = (scores.observed_w >= scores.low_w) & (scores.observed_w <= scores.high_w)
    assert inside[scored].mean() > 0.9


def test_since_marks_the_start_of_a_deviation() -> None:
    scores = HourOfWeekMAD().score_series(_household(with_step=True))
    series = _household(with_step=True)
    assert scores.since[STEP_START + 5] == series.ts[STEP_START]


def test_unknown_pyod_model_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown PyOD model"):
        PyODBaseline(model="lof")


def test_missing_readings_score_nan() -> None:
    series = _household()
    power = series.power_w.copy()
    power[-10:] = np.nan
    holed = DeviceSeries("home-1", series.ts, power, STEP)
    for name, factory in FACTORIES.items():
        scores = factory(0).score_series(holed).score
        assert np.isnan(scores[-10:]).all(), name

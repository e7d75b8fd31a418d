"""Daily-shape Isolation Forest: finds an unusual day, names the feature that drove it, stays quiet and causal."""

from __future__ import annotations

import numpy as np
import pytest

from vatio.detect.base import DeviceSeries
from vatio.detect.shapes import FEATURES, ShapeDetector, features, profiles

pytest.importorskip("sklearn")

STEP = 1800
DAY = 86400
THRESHOLD = 3.0


def home(days: int = 42, seed: int = 0) -> DeviceSeries:
    """Quiet nights near a 150 W floor, a morning and an evening peak, some appliance runs."""
    rng = np.random.default_rng(seed)
    ts = np.arange(0, days * DAY, STEP, dtype=np.int64)
    hour = (ts % DAY) / 3600
    power = 150 + rng.normal(0, 10, len(ts))
    power += 700 * np.exp(-((hour - 19) ** 2) / 4) + 300 * np.exp(-((hour - 7.5) ** 2) / 1.5)
    power += np.where(rng.random(len(ts)) < 0.02, rng.uniform(300, 800, len(ts)), 0.0)
    return DeviceSeries("d", ts, power, STEP)


def test_profiles_place_each_hour_at_its_hour_of_day() -> None:
    mean_w = np.arange(30.0)  # hour i has value i; the series starts at 05:00 UTC
    p = profiles(mean_w, first_hour=5)
    assert np.isnan(p[0]).sum() == 23
    assert p[0, 5] == 0.0
    assert p[29, 10] == 29.0  # hour 29 of the series is 10:00 UTC
    assert p[29, 11] == 6.0  # the day before's 11:00
    x = features(p[29:], quiet=np.array([0, 1, 2]))
    assert x.shape == (1, len(FEATURES))
    assert x[0, FEATURES.index("baseload")] == 6.0


def test_night_use_is_found_and_named_by_its_feature() -> None:
    series = home()
    night = (series.ts >= series.ts[-1] - DAY + 3600) & ((series.ts % DAY) / 3600 < 4)
    series.power_w[night] += 1500.0  # four hours of heavy use in the dead of night
    out = ShapeDetector().score_series(series)
    after = np.flatnonzero(night)[-1] + 1
    assert out.score[after] >= THRESHOLD
    assert out.kind[after] == "daily_shape"
    driver = str(out.driver[after])
    assert driver.startswith(("quiet-hours share", "power 00-03 h UTC", "power 03-06 h UTC")), driver
    assert "vs usual" in driver
    assert out.observed_w[after] > out.high_w[after] > out.expected_w[after]


def test_ordinary_days_stay_quiet_and_warm_up_scores_nothing() -> None:
    for seed in (1, 2):
        out = ShapeDetector().score_series(home(seed=seed))
        assert np.all(out.score[: 14 * 48] == 0.0)
        assert np.mean(out.score >= THRESHOLD) < 0.01


def test_a_later_anomaly_does_not_change_earlier_scores() -> None:
    series = home()
    changed = DeviceSeries("d", series.ts, series.power_w.copy(), STEP)
    changed.power_w[-48:] += 2000.0
    a, b = ShapeDetector().score_series(series), ShapeDetector().score_series(changed)
    assert np.array_equal(a.score[:-48], b.score[:-48])
    assert b.score[-1] > a.score[-1]


def test_the_missing_extra_is_named() -> None:
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    builtins.__import__ = no_sklearn  # type: ignore[assignment]
    try:
        with pytest.raises(ImportError, match=r"vatio\[eval\]"):
            ShapeDetector().score_series(home(days=20))
    finally:
        builtins.__import__ = real_import

"""The back-end tier: fitting seasonal models, and applying them reading by reading."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from vatio.detect.backend import SeasonalDetector
from vatio.detect.base import Threshold
from vatio.detect.seasonal_model import HOUR_S, SeasonalModel, fit_models, hourly_means, slot_of
from vatio.detect.stream import BatchVerdicts, Obs, ObsBatch

#: Monday 2025-01-06 00:00 UTC, in epoch hours.
FIRST_HOUR = 1_736_121_600 // HOUR_S
PROTECT = Threshold(1.0)


def home_hours(days: int, *, seed: int = 0, base_w: float = 150.0) -> np.ndarray:
    """Hourly mean power of a home: baseload, a morning and an evening peak, busier weekends, noise."""
    rng = np.random.default_rng(seed)
    hour = np.arange(days * 24)
    hod, dow = hour % 24, (hour // 24) % 7  # FIRST_HOUR is a Monday
    power = base_w + np.where((hod >= 7) & (hod < 9), 250.0, 0.0) + np.where((hod >= 18) & (hod < 22), 500.0, 0.0)
    power = power + np.where(dow >= 5, 120.0, 0.0) * ((hod >= 10) & (hod < 18))
    return np.asarray(power + rng.normal(0.0, 25.0, len(hour)).clip(-60, 60))


def readings(hour_means: np.ndarray, first_hour: int, *, per_hour: int = 12, seed: int = 1) -> ObsBatch:
    """Readings every 3600/per_hour s whose mean per hour is ``hour_means`` (plus zero-mean jitter)."""
    rng = np.random.default_rng(seed)
    step = HOUR_S / per_hour
    ts = first_hour * HOUR_S + step * np.arange(len(hour_means) * per_hour)
    jitter = rng.normal(0.0, 30.0, (len(hour_means), per_hour))
    power = (hour_means[:, None] + jitter - jitter.mean(axis=1, keepdims=True)).ravel()
    return ObsBatch.from_arrays(ts, seq=np.arange(len(ts)), power_w=power)


def fitted(days: int = 70, seed: int = 0) -> SeasonalModel:
    (result,) = fit_models(home_hours(days, seed=seed)[None, :], FIRST_HOUR)
    assert result.model is not None
    return result.model


def loop(det: SeasonalDetector, batch: ObsBatch, threshold: Threshold | None = PROTECT) -> BatchVerdicts:
    out = []
    for x in batch:
        v = det.score_one(x)
        det.learn_one(x, anomalous=threshold is not None and v.score >= threshold.value)
        out.append(v)
    cols = list(zip(*out, strict=True))
    return BatchVerdicts(*(np.array(c, dtype=object if i == 1 else np.float64) for i, c in enumerate(cols)))


def numbers(state: dict[str, object]) -> np.ndarray:
    """Every number of a state dict, flattened (None = NaN)."""
    out: list[float] = []
    for value in state.values():
        for v in value if isinstance(value, list) else [value]:
            out.extend([] if isinstance(v, str) else [np.nan if v is None else float(v)])  # type: ignore[arg-type]
    return np.array(out)


def assert_same(a: BatchVerdicts, b: BatchVerdicts) -> None:
    assert a.kind.tolist() == b.kind.tolist()
    for name in ("score", "expected", "low", "high", "observed"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, err_msg=name)


# --- fitting ------------------------------------------------------------------------------------


def test_fit_recovers_the_week_and_leaves_absences_out() -> None:
    hours = home_hours(70)
    hours[24 * 30 : 24 * 44] = 150.0  # two weeks away: baseload only
    hours[24 * 50 : 24 * 51] = 2500.0  # a day of a fault
    (result,) = fit_models(hours[None, :], FIRST_HOUR)
    model = result.model
    assert model is not None
    evening, night = slot_of(FIRST_HOUR + 19), slot_of(FIRST_HOUR + 3)  # Monday 19:00 and 03:00
    assert model.expected(slot=evening) == pytest.approx(650.0, abs=25.0)
    assert model.expected(slot=night) == pytest.approx(150.0, abs=25.0)
    assert model.spread_w[evening] < 60.0
    assert model.baseload_w == pytest.approx(150.0 - 35.0, abs=15.0)  # a day's second-lowest hour: below the mean
    assert result.metrics["days_excluded"] == pytest.approx(15.0)
    assert result.metrics["days_used"] == pytest.approx(55.0)
    assert 0.0 <= result.metrics["alert_rate"] < 0.01


def test_fit_is_vectorised_over_devices_and_refuses_short_histories() -> None:
    matrix = np.stack([home_hours(70, seed=1), home_hours(70, seed=2, base_w=400.0), np.full(70 * 24, np.nan)])
    matrix[2, -24 * 10 :] = 300.0  # ten days only
    results = fit_models(matrix, FIRST_HOUR + 5)  # not aligned to a day or a week
    assert results[0].model is not None
    assert results[1].model is not None
    assert results[1].model.baseload_w - results[0].model.baseload_w == pytest.approx(250.0, abs=30.0)
    assert results[2].model is None
    assert results[2].metrics["days_used"] == 9.0  # whole UTC days of 20 hours or more


def test_hourly_means_of_readings() -> None:
    batch = readings(np.array([100.0, 400.0, 250.0]), FIRST_HOUR)
    means = hourly_means(batch.ts, batch.power_w, FIRST_HOUR - 1, 5)
    np.testing.assert_allclose(means[1:4], [100.0, 400.0, 250.0])
    assert np.isnan(means[[0, 4]]).all()


def test_model_bytes_round_trip_and_size() -> None:
    model = fitted()
    data = model.to_bytes()
    assert len(data) <= 16 * 1024
    back = SeasonalModel.from_bytes(data)
    np.testing.assert_array_equal(back.season_w, model.season_w)
    np.testing.assert_array_equal(back.spread_w, model.spread_w)
    assert (back.level_w, back.baseload_w, back.baseload_spread_w) == (
        model.level_w, model.baseload_w, model.baseload_spread_w
    )  # fmt: skip
    with pytest.raises(ValueError, match="VSM1"):
        SeasonalModel.from_bytes(b"nonsense")


# --- streaming ----------------------------------------------------------------------------------


def test_a_normal_week_raises_nothing_and_a_left_on_load_is_caught() -> None:
    model = fitted()
    week = home_hours(77, seed=9)[-24 * 7 :]
    first = FIRST_HOUR + 70 * 24
    out = SeasonalDetector(model=model).score_batch(readings(week, first))
    assert np.max(out.score) < 1.0
    on = week.copy()
    on[24 * 2 + 1 :] += 900.0  # a heater left on from Wednesday 01:00
    out = SeasonalDetector(model=model).score_batch(readings(on, first))
    flagged = out.score >= 1.0
    first_flag = int(np.argmax(flagged))
    assert first_flag == (24 * 2 + 2) * 12  # judged when the hour completes: one hour late
    assert out.kind[first_flag] == "level_high"
    assert out.observed[first_flag] > out.high[first_flag]
    assert out.expected[first_flag] == pytest.approx(150.0, abs=30.0)
    assert "baseload_increase" in set(out.kind[flagged])  # a day later the always-on power is up too


def test_batch_path_equals_per_reading_path() -> None:
    model = fitted()
    hours = home_hours(84, seed=4)[-24 * 14 :]
    hours[100:130] += 1500.0
    hours[200:260] += 300.0
    data = readings(hours, FIRST_HOUR + 70 * 24, per_hour=6)
    power = data.power_w.copy()
    power[::37] = np.nan
    ts = data.ts.copy()
    ts[500], ts[900] = ts[400], np.nan  # a late reading and a broken clock
    data = ObsBatch.from_arrays(ts, seq=data.seq, power_w=power)
    for threshold in (PROTECT, Threshold(0.5), None):
        batched, single = SeasonalDetector(model=model), SeasonalDetector(model=model)
        got = batched.score_batch(data, threshold)
        assert_same(got, loop(single, data, threshold))
        np.testing.assert_allclose(numbers(batched.state_dict()), numbers(single.state_dict()), rtol=1e-9)
        assert np.count_nonzero(got.score >= 0.5) > 30
    pieces, det, at = [], SeasonalDetector(model=model), 0
    for size in (1, 5, 1, 700, 3, 1000, len(data) - 1710):
        pieces.append(det.score_batch(data.part(at, at + size)))
        at += size
    joined = BatchVerdicts(*(np.concatenate([getattr(p, f) for p in pieces]) for f in BatchVerdicts.__slots__))
    assert_same(joined, SeasonalDetector(model=model).score_batch(data))


def test_anomalous_hours_are_not_learned() -> None:
    model = fitted()
    hours = home_hours(77, seed=5)[-24 * 7 :]
    hours[24:72] += 2000.0
    data = readings(hours, FIRST_HOUR + 70 * 24)
    protected, unprotected = SeasonalDetector(model=model), SeasonalDetector(model=model)
    out = protected.score_batch(data)
    unprotected.score_batch(data, None)
    assert np.all(out.score[25 * 12 : 73 * 12] >= 1.0)
    assert np.all(out.expected[26 * 12 : 73 * 12 : 12] < 800.0)
    drift = abs(protected.state_dict()["level"] - model.level_w)
    assert drift < 10.0
    assert unprotected.state_dict()["level"] - model.level_w > 5 * drift + 15.0


def test_warm_up_without_a_model_and_in_the_first_hour() -> None:
    data = readings(np.full(48, 5000.0), FIRST_HOUR)
    assert np.all(SeasonalDetector().score_batch(data).score == 0.0)
    assert SeasonalDetector().warmup > len(data)
    out = SeasonalDetector(model=fitted()).score_batch(data)
    assert np.all(out.score[:12] == 0.0)  # no hour completed yet
    assert np.all(out.score[12:] >= 1.0)


def test_state_round_trips_give_the_same_future() -> None:
    model = fitted()
    hours = home_hours(77, seed=6)[-24 * 7 :]
    hours[90:] += 700.0
    data = readings(hours, FIRST_HOUR + 70 * 24)
    det = SeasonalDetector(model=model)
    det.score_batch(data.part(0, 1000))
    state = json.dumps(det.state_dict(), allow_nan=False)
    assert len(state) <= 16 * 1024
    restored = SeasonalDetector(model=model)
    restored.load_state(json.loads(state))
    clone = pickle.loads(pickle.dumps(det))
    rest = data.part(1000, len(data))
    expected = det.score_batch(rest)
    assert_same(restored.score_batch(rest), expected)
    assert_same(clone.score_batch(rest), expected)


def test_score_one_leaves_the_state_alone() -> None:
    det = SeasonalDetector(model=fitted())
    data = readings(home_hours(3), FIRST_HOUR)
    det.score_batch(data.part(0, 500))
    before = json.dumps(det.state_dict())
    for x in [*data.part(500, 520), Obs(np.inf, None, np.inf), Obs(float(data.ts[600]), None)]:
        det.score_one(x)
    assert json.dumps(det.state_dict()) == before


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="z_limit"):
        SeasonalDetector(z_limit=0.0)
    with pytest.raises(ValueError, match="alpha"):
        SeasonalDetector(alpha=1.5)

"""Energy-domain detectors and per-home calibration: each kind fires, explains itself, stays causal."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from vatio.detect.base import DeviceSeries
from vatio.detect.domain import DomainDetectors, causal_quantile, rolling_extreme, slotted
from vatio.detect.explain import explain
from vatio.detect.hourly import rolling_low, tail_rarity
from vatio.detect.quality import gaps
from vatio.detect.suite import VatioDetector
from vatio.eval.metrics import alert_episodes
from vatio.score import DEFAULT_THRESHOLD

STEP = 1800
DAY = 86400


def home(days: int = 42, seed: int = 0, step: int = STEP) -> DeviceSeries:
    """A home with a fridge-and-standby floor, busy mornings and evenings, random appliance runs."""
    rng = np.random.default_rng(seed)
    ts = np.arange(0, days * DAY, step, dtype=np.int64)
    hour = (ts % DAY) / 3600
    power = 120 + rng.normal(0, 6, len(ts))
    power += 500 * np.exp(-((hour - 19) ** 2) / 4) + 300 * np.exp(-((hour - 7.5) ** 2) / 1.5)
    power += np.where(rng.random(len(ts)) < 0.04, rng.uniform(500, 2000, len(ts)), 0.0)
    return DeviceSeries("d", ts, power, step)


def _last_days(series: DeviceSeries, days: float) -> np.ndarray:
    return np.asarray(series.ts >= series.ts[-1] + series.step_s - days * DAY)


def _flagged_kinds(series: DeviceSeries, detector: VatioDetector | None = None) -> tuple[set[str], np.ndarray]:
    scores = (detector or VatioDetector()).score_series(series)
    flagged = scores.score >= DEFAULT_THRESHOLD
    return set(scores.kind[flagged]), flagged


@pytest.mark.parametrize("seed", [0, 3])
def test_an_ordinary_home_stays_near_the_false_alarm_budget(seed: int) -> None:
    series = home(seed=seed)
    kinds, flagged = _flagged_kinds(series)
    episodes, _ = alert_episodes(series.ts, flagged, step_s=STEP, merge_gap_s=7200, max_episode_s=DAY)
    assert len(episodes) <= 2, (len(episodes), kinds)  # six weeks, four of them scored
    assert not kinds & {"vacancy", "tamper", "gap", "stuck_meter"}


def test_vacancy_is_found_and_explained_with_the_usual_band_and_the_observed_value() -> None:
    series = home()
    empty_w = float(np.percentile(series.power_w, 5))
    last = _last_days(series, 3)
    series.power_w[last] = np.minimum(
        series.power_w[last], empty_w * np.random.default_rng(1).uniform(0.8, 1, last.sum())
    )
    scores = VatioDetector().score_series(series)
    hits = np.flatnonzero((scores.score >= DEFAULT_THRESHOLD) & (scores.kind == "vacancy"))
    assert len(hits)
    assert last[hits].all()
    text = explain(scores, int(hits[-1]))
    assert text.startswith("vacancy: ")
    observed = float(text.split("observed ")[1].split(" W")[0])
    expected = float(text.split("expected ")[1].split(" W")[0])
    assert "band" in text
    assert "since" in text
    assert observed <= empty_w < expected, text


def test_tamper_is_found_and_explained() -> None:
    series = home()
    last = _last_days(series, 4)
    series.power_w[last] *= 0.3
    scores = VatioDetector().score_series(series)
    hits = np.flatnonzero((scores.score >= DEFAULT_THRESHOLD) & (scores.kind == "tamper"))
    assert len(hits)
    assert last[hits].all()
    text = explain(scores, int(hits[-1]))
    observed = float(text.split("observed ")[1].split(" W")[0])
    low = float(text.split("band ")[1].split("–")[0])
    assert text.startswith("tamper: ")
    assert observed < low, text


@pytest.mark.parametrize(
    ("kind", "start_hour", "hours", "added_w"),
    [("left_on", 10, 30, 800.0), ("baseload_drift", 9, 72, 150.0), ("night_use", 1, 3, 900.0)],
)
def test_each_domain_component_rises_where_its_anomaly_is(
    kind: str, start_hour: int, hours: int, added_w: float
) -> None:
    series = home(days=35)
    start = 34 * DAY + start_hour * 3600 - (DAY * 3 if hours > 24 else 0)
    inside = (series.ts >= start) & (series.ts < start + hours * 3600)
    before = home(days=35)
    series.power_w[inside] += added_w
    view, parts = DomainDetectors().components(series)
    _, clean = DomainDetectors().components(before)
    rows = view.row_slot[inside]
    assert parts[kind][0][rows].max() > 1.0
    assert parts[kind][0][rows].max() > 3 * clean[kind][0][rows].max()


def test_peak_demand_only_with_a_configured_limit() -> None:
    series = home()
    assert not DomainDetectors().peak(series).any()
    detector = VatioDetector(domain=DomainDetectors(peak_limit_w=1500.0))
    scores = detector.score_series(series)
    over = series.power_w > 1500
    assert over.any()
    assert (scores.kind[over] == "peak_demand").all()
    assert "demand limit" in explain(scores, int(np.flatnonzero(over)[0]))


def test_domain_components_are_causal_at_a_finer_step() -> None:
    series = home(days=30, step=900)
    k = len(series) - 37  # mid-slot: the next row shares its half-hour
    changed = DeviceSeries("d", series.ts, series.power_w.copy(), 900)
    changed.power_w[k + 1 :] = changed.power_w[k + 1 :] * 4 + 2000
    view, parts = DomainDetectors().components(series)
    _, after = DomainDetectors().components(changed)
    done = view.row_slot[: k + 1]
    done = done[done >= 0]
    for kind, (score, _) in parts.items():
        assert np.array_equal(score[done], after[kind][0][done]), kind
    assert view.slot_s == 1800


def test_slots_follow_a_coarser_meter() -> None:
    view = slotted(home(days=2, step=3600))
    assert view.slot_s == 3600
    assert view.per_day == 24
    assert view.row_slot.tolist() == list(range(48))


def test_rarity_means_the_same_in_a_small_and_a_large_home() -> None:
    raw = np.random.default_rng(2).exponential(1.0, 4000)
    small = tail_rarity(raw, window=1344, every=48, min_history=336)
    large = tail_rarity(raw * 1.0, window=1344, every=48, min_history=336)
    assert np.array_equal(small, large)
    # A value beyond everything of the past window is rarer than 1 in N, never unboundedly so.
    spiked = raw.copy()
    spiked[-1] = raw[-1345:-1].max() * 1.5
    value = tail_rarity(spiked, window=1344, every=48, min_history=336)[-1]
    assert np.log10(1344) < value < 8


def test_rarity_of_a_home_used_to_its_bursts_is_low() -> None:
    rng = np.random.default_rng(3)
    ordinary = np.where(rng.random(4000) < 0.05, rng.uniform(5, 15, 4000), 0.0)
    assert (tail_rarity(ordinary, window=1344, every=48, min_history=336) < DEFAULT_THRESHOLD).mean() > 0.995


def test_a_routine_hole_stops_alerting_once_learned() -> None:
    ts = np.arange(0, 20 * DAY, STEP, dtype=np.int64)
    keep = ~((ts % DAY >= 3 * 3600) & (ts % DAY < 5 * 3600))  # a 2 h upload window every night
    keep[(ts >= 15 * DAY) & (ts < 15 * DAY + 8 * 3600)] = False  # and one long outage
    series = DeviceSeries("d", ts[keep], np.full(keep.sum(), 200.0), STEP)
    score = gaps(series)
    hole_rows = np.flatnonzero(score > 0)
    assert (score[hole_rows[:3]] >= 1).all()
    routine = score[hole_rows[3:]]
    assert (routine < 1).sum() >= 10
    assert routine.max() >= 1  # the long outage still alerts


def test_vectorised_rolling_low_equals_nanquantile() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=2000)
    values[rng.random(2000) < 0.2] = np.nan
    for window, q in ((24, 0.05), (5, 0.5), (48, 0.0)):
        padded = np.concatenate((np.full(window - 1, np.nan), values))
        view = np.lib.stride_tricks.sliding_window_view(padded, window)
        expected = np.full(len(values), np.nan)
        enough = np.sum(~np.isnan(view), axis=1) >= window // 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected[enough] = np.nanquantile(view[enough], q, axis=1)
        assert np.allclose(rolling_low(values, window, q), expected, equal_nan=True)


def test_rolling_extreme_and_causal_quantile_look_back_only() -> None:
    values = np.arange(10.0)
    assert rolling_extreme(values, 3, np.nanmin).tolist()[2:] == [0, 1, 2, 3, 4, 5, 6, 7]
    quantile = causal_quantile(values, q=0.0, window=4, every=2)
    assert np.isnan(quantile[:2]).all()
    assert quantile[2:].tolist() == [0, 0, 0, 0, 2, 2, 4, 4]

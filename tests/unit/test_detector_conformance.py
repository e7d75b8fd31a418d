"""One conformance suite over every edge detector and the edge suite, then what each one catches.

The shared checks (after River's ``check_estimator``): pickle and state-dict
round trips, determinism, batch path equal to the per-reading loop with
anomaly protection, missing channels, warm-up, ``score_one`` leaving the state
alone, anomalies kept out of baselines.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pytest

from vatio.detect.backend import SeasonalDetector
from vatio.detect.base import DeviceSeries, SeriesDetector, Threshold
from vatio.detect.domain import DomainDetectors
from vatio.detect.edge import Cusum, DataQuality, EdgeSuite, EwmaChart, Limits, RateOfChange, RobustZ
from vatio.detect.forecast import ForecastResidualDetector
from vatio.detect.seasonal_model import SeasonalModel
from vatio.detect.shapes import ShapeDetector
from vatio.detect.stream import BatchVerdicts, Obs, ObsBatch, ScanDetector, StreamDetector, Verdict
from vatio.detect.suite import VatioDetector
from vatio.detect.temperature import TemperatureDetector

STEP = 10.0
T0 = 1_790_000_000.0
PROTECT = Threshold(1.0)


def _small() -> tuple[ScanDetector, ...]:
    return (
        Limits(),
        DataQuality(warmup=20),
        RobustZ(block=20, blocks=12, warmup=240, z_limit=20.0),
        EwmaChart(warmup=60, limit=4.0),
        Cusum(warmup=60, h=120.0),
        RateOfChange(block=20, blocks=12, warmup=60, min_rate_w_per_s=200.0),
    )


def _small_one(i: int) -> StreamDetector:
    return _small()[i]


FACTORIES: dict[str, Callable[[], StreamDetector]] = {
    **{cls().name: cls for cls in (Limits, DataQuality, RobustZ, EwmaChart, Cusum, RateOfChange)},
    **{f"{d.name}_small": partial(_small_one, i) for i, d in enumerate(_small()[1:], 1)},
    "edge_suite": EdgeSuite,
    "edge_suite_small": lambda: EdgeSuite(detectors=_small()),
    # The back-end tier with a flat model of these homes (~300 W an hour, baseload 180 W).
    "seasonal": lambda: SeasonalDetector(model=SeasonalModel(np.zeros(168), np.full(168, 40.0), 300.0, 180.0, 10.0)),
    "seasonal_unfitted": SeasonalDetector,
}
every_detector = pytest.mark.parametrize("make", FACTORIES.values(), ids=FACTORIES.keys())


def household(n: int = 6000, *, seed: int = 1, anomalies: bool = True, appliances: bool = True) -> ObsBatch:
    """A home at 10 s: baseload, a fridge cycling, appliance runs, noise; with planted faults."""
    rng = np.random.default_rng(seed)
    ts = T0 + STEP * np.arange(n) + rng.uniform(-0.3, 0.3, n)
    power = 180.0 + 60.0 * np.sin(2 * np.pi * np.arange(n) / 8640) + rng.normal(0.0, 6.0, n)
    power += np.where((np.arange(n) // 80) % 2 == 0, 110.0, 0.0)
    for _ in range(n // 700 if appliances else 0):
        at, length = int(rng.integers(0, n)), int(rng.integers(6, 120))
        power[at : at + length] += rng.choice([700.0, 1500.0, 2200.0])
    seq = np.arange(n, dtype=np.int64)
    voltage = 231.0 + rng.normal(0.0, 1.2, n)
    frequency = 50.0 + rng.normal(0.0, 0.02, n)
    if anomalies:
        power[3000:3002] += 18_000.0  # spike
        power[3400:4300] += 5000.0  # a level longer than relearn_after
        voltage[3100:3110] = 196.0
        frequency[3150:3153] = 49.2
        power[4400:4700] = power[4400]  # stuck for 50 min
        seq[4800] = seq[4799]
        ts[5000:] += 1800.0  # gap: 30 min of readings lost
        seq[5000:] += 180
        ts[5300:] += 900.0  # clock jump, sequence consecutive
        seq[5500], seq[5501] = seq[5501], seq[5500]
        ts[5600] -= 25.0
        power[rng.integers(0, n, 40)] = np.nan
    power = np.round(power, 1)
    energy = 2.0e6 + np.cumsum(np.nan_to_num(np.maximum(power, 0.0)) * STEP / 3600.0)
    if anomalies:
        energy[5200:] -= energy[5200] - 3.0
    return ObsBatch.from_arrays(
        ts, seq=seq, power_w=power, energy_wh=np.round(energy, 3), voltage_v=voltage, frequency_hz=frequency
    )


def loop(det: StreamDetector, batch: ObsBatch, threshold: Threshold | None = PROTECT) -> list[Verdict]:
    """The per-reading reference: score, decide, learn (protected unless ``threshold`` is None)."""
    out = []
    for x in batch:
        v = det.score_one(x)
        det.learn_one(x, anomalous=threshold is not None and bool(threshold.decide(np.array(v.score))))
        out.append(v)
    return out


def assert_same(a: BatchVerdicts, b: BatchVerdicts, *, tol: float = 1e-9) -> None:
    np.testing.assert_allclose(a.score, b.score, rtol=tol, atol=tol)
    assert a.kind.tolist() == b.kind.tolist()
    for name in ("expected", "low", "high", "observed"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=tol, atol=tol, err_msg=name)


def as_batch_verdicts(verdicts: list[Verdict]) -> BatchVerdicts:
    columns = zip(*verdicts, strict=True)
    return BatchVerdicts(*(np.array(c, dtype=object if i == 1 else np.float64) for i, c in enumerate(columns)))


# --- the shared checks -----------------------------------------------------------------------


@every_detector
def test_pickle_and_state_round_trips_give_the_same_future(make: Callable[[], StreamDetector]) -> None:
    data = household()
    first, rest = data.part(0, 3500), data.part(3500, len(data))
    det = make()
    det.score_batch(first)
    clone = pickle.loads(pickle.dumps(det))
    state = json.dumps(det.state_dict())
    assert len(state) <= 16 * 1024
    restored = make()
    restored.load_state(json.loads(state))
    expected = det.score_batch(rest)
    assert_same(clone.score_batch(rest), expected, tol=0.0)
    assert_same(restored.score_batch(rest), expected, tol=0.0)


@every_detector
def test_same_seed_same_scores(make: Callable[[], StreamDetector]) -> None:
    a, b = make().score_batch(household(seed=7)), make().score_batch(household(seed=7))
    assert_same(a, b, tol=0.0)
    assert not np.array_equal(household(seed=7).power_w, household(seed=8).power_w, equal_nan=True)


@every_detector
def test_batch_path_equals_per_reading_path_with_protection(make: Callable[[], StreamDetector]) -> None:
    data = household(seed=3)
    batch, one_by_one = make(), make()
    got = batch.score_batch(data, PROTECT)
    want = as_batch_verdicts(loop(one_by_one, data))
    assert_same(got, want)
    np.testing.assert_allclose(
        np.array([v for v in batch.state_dict().values() if isinstance(v, float)]),
        np.array([v for v in one_by_one.state_dict().values() if isinstance(v, float)]),
        rtol=1e-9,
    )


@pytest.mark.parametrize("name", [n for n in FACTORIES if n.endswith("_small") or n.startswith("edge")])
def test_the_equality_data_makes_protection_work(name: str) -> None:
    """The batch-equals-loop check above only means something where readings get flagged."""
    flagged = FACTORIES[name]().score_batch(household(seed=3)).score >= 1.0
    assert np.count_nonzero(flagged) > 0


@every_detector
def test_batch_path_in_pieces_and_unprotected(make: Callable[[], StreamDetector]) -> None:
    data = household(seed=4)
    whole = make().score_batch(data)
    pieces, det, at = [], make(), 0
    for size in (1, 7, 500, 2, 1800, 3690):
        pieces.append(det.score_batch(data.part(at, at + size)))
        at += size
    assert at == len(data)
    joined = BatchVerdicts(*(np.concatenate([getattr(p, f) for p in pieces]) for f in BatchVerdicts.__slots__))
    assert_same(joined, whole)
    unprotected = as_batch_verdicts(loop(make(), data, None))
    assert_same(make().score_batch(data, None), unprotected)


def calm(n: int = 4000, *, seed: int = 5) -> ObsBatch:
    """Baseload, fridge and noise only: nothing any detector should flag."""
    return household(n, seed=seed, anomalies=False, appliances=False)


@every_detector
@pytest.mark.parametrize("channel", ["voltage_v", "frequency_hz", "energy_wh", "power_w"])
def test_missing_channels_are_tolerated(make: Callable[[], StreamDetector], channel: str) -> None:
    data = calm()
    rng = np.random.default_rng(0)
    holes = getattr(data, channel).copy()
    holes[rng.random(len(holes)) < 0.3] = np.nan
    fields = {f: getattr(data, f) for f in ObsBatch.__slots__}
    for values in (holes, np.full(len(data), np.nan)):
        out = make().score_batch(ObsBatch(**{**fields, channel: values}))
        assert np.all(np.isfinite(out.score))
        assert not np.any(out.score >= 1.0), sorted(set(out.kind[out.score >= 1.0]))


@every_detector
def test_no_alerts_during_warmup(make: Callable[[], StreamDetector]) -> None:
    det = make()
    data = household(seed=6)
    fields = {f: getattr(data, f).copy() for f in ObsBatch.__slots__}
    fields["power_w"][5:8] += 20_000.0  # early faults: a spike, a duplicate, a counter reset
    fields["seq"][9] = fields["seq"][8]
    fields["energy_wh"][12:] -= 1000.0
    out = det.score_batch(ObsBatch(**fields))
    assert np.all(out.score[: det.warmup] == 0.0)
    assert set(out.kind[: det.warmup]) <= {"none"}


@every_detector
def test_score_one_does_not_change_state(make: Callable[[], StreamDetector]) -> None:
    det = make()
    data = household(seed=2)
    det.score_batch(data.part(0, 3050))
    before = (json.dumps(det.state_dict()), pickle.dumps(det))
    for x in [*data.part(3050, 3060), Obs(data.ts[3060], None), Obs(np.inf, -5, np.inf, -1.0, 0.0, 70.0)]:
        det.score_one(x)
    assert (json.dumps(det.state_dict()), pickle.dumps(det)) == before


def replaced(data: ObsBatch, **arrays: Any) -> ObsBatch:
    return ObsBatch(**{**{f: getattr(data, f) for f in ObsBatch.__slots__}, **arrays})


@pytest.mark.parametrize("name", ["robust_z_small", "ewma_small", "cusum_small"])
def test_anomalies_are_not_learned(name: str) -> None:
    data = calm(3000)
    power = data.power_w.copy()
    power[2000:2300] += 3000.0  # shorter than relearn_after
    out = FACTORIES[name]().score_batch(replaced(data, power_w=power))
    flagged = np.flatnonzero(out.score[2000:2300] >= 1.0) + 2000
    assert len(flagged) > 150
    first = flagged[0]
    assert np.all(out.score[first:2300] >= 1.0)  # once flagged, flagged to the end
    assert np.all(out.expected[first:2300] == out.expected[first])  # and the baseline stands still
    # Only what was learned before the first alarm moved it (CUSUM needs a few readings to alarm).
    assert abs(out.expected[first] - np.median(data.power_w[1500:2000])) < 1500.0


def test_interval_and_rate_baselines_are_not_learned_from_anomalies() -> None:
    data = calm(1000)
    ts = data.ts.copy()
    ts[600:700] = ts[600] + 300.0 * np.arange(100)  # a reading every 5 min, 29 lost in between: gaps
    seq = data.seq.copy()
    seq[600:700] = seq[600] + 30 * np.arange(100)
    out = DataQuality(warmup=20).score_batch(replaced(data, ts=ts, seq=seq))
    assert np.all(out.kind[601:700] == "gap")
    assert np.all(out.score[601:700] >= 1.0)
    assert np.all(out.expected[602:700] == out.expected[601])
    power = data.power_w.copy()
    power[600:700:2] += 9000.0  # a step up and down every reading
    det = RateOfChange(block=20, blocks=12, warmup=60, min_rate_w_per_s=200.0)
    out = det.score_batch(replaced(data, power_w=power))
    assert np.all(out.kind[600:700] == "spike")
    assert np.all(out.high[600:700] == out.high[600])


def test_a_lasting_level_is_relearned_after_relearn_after() -> None:
    data = calm(3000)
    power = data.power_w.copy()
    power[1500:] += 3000.0
    det = EwmaChart(warmup=60, limit=4.0, relearn_after=100)
    out = det.score_batch(replaced(data, power_w=power))
    assert np.all(out.score[1510:1600] >= 1.0)
    assert not np.any(out.score[2800:] >= 1.0)  # the new level is normal now
    assert out.expected[-1] > out.expected[1550] + 2000.0


# --- what each detector catches, and the numbers it gives ------------------------------------


def stream(power: float = 300.0, n: int = 400) -> list[Obs]:
    """A steady load with 5 W of noise, its counter, 230 V and 50 Hz."""
    noise = np.random.default_rng(0).normal(0.0, 5.0, n)
    return [Obs(T0 + STEP * i, i, round(power + noise[i], 1), 1e6 + i * 0.83, 230.0, 50.0) for i in range(n)]


D = TypeVar("D", bound=StreamDetector)


def fed(det: D, readings: list[Obs]) -> D:
    det.score_batch(ObsBatch.from_obs(readings))
    return det


def after(readings: list[Obs], **change: Any) -> Obs:
    """The reading that would come next, with ``change`` applied."""
    last = readings[-1]
    fields: dict[str, Any] = {"ts": last.ts + STEP, "seq": None if last.seq is None else last.seq + 1}
    return last._replace(**{**fields, **change})


def test_limits_over_power_sag_swell_frequency() -> None:
    det = Limits()
    x = Obs(T0, 1, 230.0, 1e6, 230.0, 50.0)
    assert det.score_one(x).score == 0.0
    v = det.score_one(x._replace(power_w=16_000.0))
    assert (v.kind, v.high, v.observed) == ("over_power", 14_490.0, 16_000.0)
    assert v.score == pytest.approx(16_000.0 / 14_490.0)
    v = det.score_one(x._replace(voltage_v=195.5))
    assert (v.kind, v.expected, v.low, v.high, v.observed) == ("voltage_sag", 230.0, 207.0, 253.0, 195.5)
    assert v.score == pytest.approx(1.0 + 11.5 / 23.0)
    v = det.score_one(x._replace(voltage_v=262.2))
    assert (v.kind, v.high, v.observed) == ("voltage_swell", 253.0, 262.2)
    v = det.score_one(x._replace(frequency_hz=49.2))
    assert (v.kind, v.expected, v.low, v.observed) == ("frequency", 50.0, 49.5, 49.2)
    assert v.score == pytest.approx(1.6)


def test_cusum_catches_a_level_shift_and_says_from_what() -> None:
    base = stream(300.0, 800)
    det = fed(Cusum(warmup=60, h=20.0), base)  # h = 20: ten readings of a 3 σ shift
    x, scores = base[-1], []
    for _ in range(40):
        x = after([x], power_w=420.0)
        v = det.score_one(x)
        det.learn_one(x, anomalous=v.score >= 1.0)
        scores.append(v.score)
    assert scores[0] < 1.0 <= scores[-1]
    assert v.kind == "level_shift"
    assert v.expected == pytest.approx(300.0, abs=10.0)  # moved by the readings before the alarm only
    assert v.high - v.expected == pytest.approx(v.expected - v.low)
    assert v.observed == 420.0
    assert v.observed > v.high


def test_robust_z_and_ewma_catch_a_jump() -> None:
    base = stream(300.0, 800)
    v = fed(RobustZ(block=20, blocks=12, warmup=240), base).score_one(after(base, power_w=4000.0))
    assert v.kind == "robust_z"
    assert v.observed == 4000.0
    assert v.observed > v.high
    assert v.expected == pytest.approx(300.0, abs=3.0)
    det, x = fed(EwmaChart(warmup=60), base), base[-1]
    for _ in range(10):
        x = after([x], power_w=1500.0)
        v = det.score_one(x)
        det.learn_one(x, anomalous=v.score >= 1.0)
    assert v.kind == "ewma"
    assert v.score >= 1.0
    assert v.observed > v.high
    assert v.expected == pytest.approx(300.0, abs=3.0)


def test_rate_of_change_catches_a_spike() -> None:
    base = stream(300.0, 400)
    det = fed(RateOfChange(warmup=120), base)
    v = det.score_one(after(base, power_w=20_300.0))
    assert v.kind == "spike"
    assert v.score >= 1.0
    assert v.observed == pytest.approx((20_300.0 - base[-1].power_w) / STEP)
    assert (v.expected, v.low, v.high) == (0.0, -800.0, 800.0)


def test_quality_catches_stuck_gap_skew_and_counter_faults() -> None:
    base = stream(300.0, 200)
    last = base[-1].seq
    assert last is not None
    det = fed(DataQuality(warmup=20, stuck_s=600.0), base)
    v = det.score_one(after(base, ts=base[-1].ts + 3600.0, seq=last + 360))
    assert (v.kind, v.observed) == ("gap", 3600.0)
    assert v.expected == pytest.approx(10.0)
    assert v.high == pytest.approx(60.0)
    v = det.score_one(after(base, ts=base[-1].ts + 900.0))
    assert (v.kind, v.observed) == ("clock_skew", 900.0)
    v = det.score_one(after(base, ts=base[-1].ts - 30.0))
    assert (v.kind, v.observed, v.low, v.score) == ("clock_skew", -30.0, -1.0, 30.0)
    v = det.score_one(after(base, seq=last))
    assert (v.kind, v.expected, v.observed) == ("duplicate_seq", last + 1, last)
    v = det.score_one(after(base, seq=last - 5))
    assert v.kind == "seq_out_of_order"
    last_e = base[-1].energy_wh
    v = det.score_one(after(base, energy_wh=12.0))
    assert (v.kind, v.expected, v.low, v.observed) == ("counter_reset", last_e, last_e - 1.0, 12.0)
    v = det.score_one(after(base, energy_wh=last_e + 500.0))
    assert v.kind == "counter_jump"
    assert v.high == pytest.approx(last_e + 50_000.0 * STEP / 3600.0 + 1.0)
    v = det.score_one(after(base, power_w=-40_000.0))
    assert (v.kind, v.low) == ("implausible", -30_000.0)
    stuck = [after(base, ts=base[-1].ts + STEP * (i + 1), seq=last + i + 1, power_w=333.3) for i in range(70)]
    v = fed(det, stuck[:-1]).score_one(stuck[-1])
    assert (v.kind, v.observed, v.high) == ("stuck", 690.0, 600.0)
    v = det.offline(stuck[-1].ts + 900.0)
    assert (v.kind, v.observed) == ("offline", 910.0)
    assert v.score > 1.0


def test_suite_names_the_worst_and_keeps_anomalies_out_of_every_baseline() -> None:
    base = stream(300.0, 600)
    suite = fed(EdgeSuite(detectors=_small()), base)
    v = suite.score_one(after(base, power_w=20_000.0, voltage_v=200.0))
    assert v.kind in {"over_power", "robust_z", "spike", "ewma"}
    assert v.score >= 1.0
    assert suite.score_one(after(base, power_w=300.0)).kind != "over_power"
    z = suite.detector("robust_z")
    before = {k: v for k, v in z.state_dict().items() if k != "streak"}
    suite.learn_one(after(base, power_w=300.0, voltage_v=150.0), anomalous=True)  # flagged by the limits only
    assert {k: v for k, v in z.state_dict().items() if k != "streak"} == before


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="warmup"):
        RobustZ(block=60, warmup=10)
    with pytest.raises(ValueError, match="alpha"):
        EwmaChart(alpha=1.5)
    with pytest.raises(ValueError, match="distinct names"):
        EdgeSuite(detectors=(Limits(), Limits()))


# -- batch series detectors (vatio score / vatio eval) -------------------------------

SERIES_FACTORIES: dict[str, Callable[[], SeriesDetector]] = {
    "vatio": VatioDetector,
    "vatio_all_components": lambda: VatioDetector(kinds=None),
    "vatio_peak_limit": lambda: VatioDetector(domain=DomainDetectors(peak_limit_w=2000.0)),
    "vatio_uncalibrated": lambda: VatioDetector(calibrate_q=None),
    "forecast": ForecastResidualDetector,
    "shapes": lambda: ShapeDetector(warmup_days=7, refit_days=7),
    "hvac_temperature": TemperatureDetector,
}
every_series_detector = pytest.mark.parametrize("make", SERIES_FACTORIES.values(), ids=SERIES_FACTORIES.keys())


def _series_home(days: int = 30, step: int = 1800) -> DeviceSeries:
    rng = np.random.default_rng(7)
    ts = np.arange(0, days * 86400, step, dtype=np.int64)
    hour = (ts % 86400) / 3600
    power = 150 + 400 * np.exp(-((hour - 19) ** 2) / 4) + rng.normal(0, 10, len(ts))
    power[-60:-20] += 900.0
    energy = power * step / 3600
    return DeviceSeries("d", ts, power, step, energy_wh=energy)


@every_series_detector
def test_series_detector_pickles_and_is_deterministic(make: Callable[[], SeriesDetector]) -> None:
    series = _series_home()
    a = make().score_series(series)
    b = pickle.loads(pickle.dumps(make())).score_series(series)
    assert np.array_equal(a.score, b.score)
    assert list(a.kind) == list(b.kind)
    assert len(a.score) == len(series)
    assert np.isfinite(a.score).all()


@every_series_detector
def test_series_detector_is_causal(make: Callable[[], SeriesDetector]) -> None:
    series = _series_home()
    k = len(series) - 200
    prefix = DeviceSeries("d", series.ts[: k + 1], series.power_w[: k + 1], series.step_s, series.energy_wh[: k + 1])  # type: ignore[index]
    assert np.array_equal(make().score_series(series).score[: k + 1], make().score_series(prefix).score)


@every_series_detector
@pytest.mark.parametrize("n", [0, 1, 5])
def test_series_detector_tolerates_short_series_and_missing_values(make: Callable[[], SeriesDetector], n: int) -> None:
    series = _series_home(days=8)
    series.power_w[100:140] = np.nan
    short = DeviceSeries("d", series.ts[:n], series.power_w[:n], series.step_s)
    assert len(make().score_series(short).score) == n
    assert np.isfinite(make().score_series(series).score).all()

"""The injector changes exactly what its labels say, on simulated and on real traces.

Outside every label span a trace must be byte-identical to its input (ts,
power, voltage, temperature, and every interval energy whose interval lies
outside the spans); inside, the change must be the kind's, of the label's
magnitude. Same seed, same result.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from vatio.model.anomaly import AnomalyKind, AnomalyLabel
from vatio.sim.anomalies import ADDED_LOAD, COUNTER_STEPS_PER_WH, SPECS
from vatio.sim.datasets import load
from vatio.sim.inject import MeterTrace, inject

K = AnomalyKind
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NO_DATA = f"real data folder {DATA} is absent"
STEP = 900
WH_TOLERANCE = 2.0 / COUNTER_STEPS_PER_WH  # two roundings to the counter's resolution


def synthetic_trace(days: int = 60, seed: int = 0, device_id: str = "sim-1") -> MeterTrace:
    """A home: 150 W baseload, a daily shape peaking in the evening, noise, a few unknown rows."""
    rng = np.random.default_rng(seed)
    n = days * 86_400 // STEP
    ts = 1_767_225_600 + np.arange(n, dtype=np.int64) * STEP  # 2026-01-01T00:00Z
    hour = (ts % 86_400) / 3600.0
    power = 150.0 + 400.0 * np.exp(-(((hour - 19.0) / 2.5) ** 2)) + rng.gamma(2.0, 60.0, n)
    power[700:712] = np.nan
    power[rng.choice(n, 5, replace=False)] = np.nan
    temperature = 8.0 + 5.0 * np.sin((hour - 9.0) / 24.0 * 2 * np.pi)
    return MeterTrace.from_intervals(
        device_id, ts, STEP, power_w=np.round(power, 1), temperature_c=temperature, tz="Europe/Paris"
    )


def rows(trace: MeterTrace, label: AnomalyLabel) -> tuple[int, int]:
    lo = (int(label.start.timestamp()) - int(trace.ts[0])) // trace.step_s
    hi = (int(label.end.timestamp()) - int(trace.ts[0])) // trace.step_s
    return lo, hi


def inside_any(trace: MeterTrace, labels: list[AnomalyLabel]) -> np.ndarray:
    inside = np.zeros(len(trace), dtype=bool)
    for label in labels:
        lo, hi = rows(trace, label)
        inside[lo:hi] = True
    return inside


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def assert_untouched_outside(before: MeterTrace, after: MeterTrace, labels: list[AnomalyLabel]) -> None:
    assert same_bytes(before.ts, after.ts)
    outside = ~inside_any(before, labels)
    for name in ("power_w", "voltage_v"):
        assert same_bytes(getattr(before, name)[outside], getattr(after, name)[outside]), name
    assert before.temperature_c is not None
    assert after.temperature_c is not None
    assert same_bytes(before.temperature_c, after.temperature_c)
    both_ends_outside = outside[1:] & outside[:-1]
    assert same_bytes(np.diff(before.energy_wh)[both_ends_outside], np.diff(after.energy_wh)[both_ends_outside]), (
        "interval energies outside the spans changed"
    )


def assert_labels_well_formed(trace: MeterTrace, labels: list[AnomalyLabel]) -> None:
    assert labels == sorted(labels, key=lambda label: label.start)
    last_hi = 0
    for label in labels:
        lo, hi = rows(trace, label)
        assert label.device_id == trace.device_id
        assert label.start.tzinfo is UTC
        assert label.start < label.end
        assert lo >= 1, "spans keep a clean row on each side"
        assert hi < len(trace), "spans keep a clean row on each side"
        assert lo > last_hi or last_hi == 0, "labels overlap or touch"
        last_hi = hi
        spec = SPECS[label.kind]
        steps = hi - lo
        if label.kind is K.CLOCK_SKEW:
            assert steps >= 3 * abs(label.magnitude) / trace.step_s
        else:
            assert math.ceil(spec.min_s / trace.step_s) <= steps or steps == 1
            assert steps * trace.step_s <= max(spec.max_s, trace.step_s) + trace.step_s / 2


def assert_kind_effect(before: MeterTrace, after: MeterTrace, label: AnomalyLabel) -> None:
    """Inside the span, the change is the kind's, of the label's magnitude."""
    lo, hi = rows(before, label)
    old, new = before.power_w[lo:hi], after.power_w[lo:hi]
    known = np.isfinite(old)
    added_wh = np.diff(after.energy_wh)[lo - 1 : hi - 1] - np.diff(before.energy_wh)[lo - 1 : hi - 1]
    counted = np.isfinite(added_wh)  # an interval after an unknown one has no counter delta
    m = label.magnitude
    if label.kind in {*ADDED_LOAD, K.TAMPER, K.VACANCY}:
        assert np.all(counted[1:] | ~(known[1:] & known[:-1])), "the counter follows the power"
        assert np.isnan(new[~known]).all()
    if label.kind in ADDED_LOAD:
        spec = SPECS[label.kind]
        assert spec.low <= m <= spec.high or label.kind is K.SPIKE
        np.testing.assert_allclose(new[known] - old[known], m, rtol=0, atol=1e-9)
        expected_wh = m * before.step_s / 3600.0
        np.testing.assert_allclose(added_wh[counted], expected_wh, rtol=0, atol=WH_TOLERANCE)
        assert same_bytes(after.voltage_v[lo:hi], before.voltage_v[lo:hi])
    if label.kind is K.NIGHT_USE:
        zone = ZoneInfo(before.tz)
        start, end = label.start.astimezone(zone), (label.end - timedelta(seconds=1)).astimezone(zone)
        assert start.date() == end.date()
        assert end.hour < 5
    elif label.kind is K.TAMPER:
        assert 0.1 <= m <= 0.6
        np.testing.assert_allclose(new[known], old[known] * m, rtol=1e-12)
        assert same_bytes(after.voltage_v[lo:hi], before.voltage_v[lo:hi]), "voltage stays normal"
        scaled_wh = (m - 1) * old[counted] * before.step_s / 3600
        np.testing.assert_allclose(added_wh[counted], scaled_wh, rtol=0, atol=WH_TOLERANCE)
    elif label.kind is K.VACANCY:
        assert np.all(new[known] <= m)
        assert np.all(new[known] <= old[known])
        occupied = max(1.5 * m + 20, 0.5 * float(np.nanmean(before.power_w)))
        assert np.nansum(old) / len(old) >= occupied, "a vacancy is planted in a normally occupied period"
        assert m <= np.nanpercentile(before.power_w, 5) + 0.1
    elif label.kind is K.STUCK:
        assert np.all(new == m)
        assert m == after.power_w[lo - 1]
        assert np.all(after.energy_wh[lo:hi] == after.energy_wh[lo - 1]), "counter frozen"
        assert np.all(after.voltage_v[lo:hi] == after.voltage_v[lo - 1])
    elif label.kind is K.GAP:
        assert m == (hi - lo) * before.step_s
        for values in (after.power_w, after.energy_wh, after.voltage_v):
            assert np.isnan(values[lo:hi]).all()
        series = after.to_series()
        assert not np.any((series.ts >= before.ts[lo]) & (series.ts < before.ts[hi]))
    elif label.kind is K.COUNTER_RESET:
        assert hi - lo == 1
        interval_wh = before.energy_wh[lo] - before.energy_wh[lo - 1]
        assert after.energy_wh[lo] == interval_wh, "the counter restarted from 0"
        assert after.energy_wh[lo] - after.energy_wh[lo - 1] == interval_wh - m < 0
        assert same_bytes(new, old)
    elif label.kind is K.CLOCK_SKEW:
        k = int(m) // before.step_s
        assert k != 0
        assert int(m) % before.step_s == 0
        for j in range(lo, hi):
            source = j - k
            for name in ("power_w", "voltage_v"):
                got = getattr(after, name)[j]
                if lo <= source < hi:
                    assert same_bytes(np.array(got), np.array(getattr(before, name)[source]))
                else:
                    assert math.isnan(got), "a slot the clock skipped carries no reading"


def check_all(before: MeterTrace, after: MeterTrace, labels: list[AnomalyLabel]) -> None:
    assert_labels_well_formed(before, labels)
    assert_untouched_outside(before, after, labels)
    for label in labels:
        assert_kind_effect(before, after, label)


@pytest.mark.parametrize("kind", list(AnomalyKind))
def test_each_kind_changes_exactly_its_span(kind: AnomalyKind) -> None:
    before = synthetic_trace()
    after, labels = inject(before, [kind], seed=11, per_kind=2)
    assert [label.kind for label in labels] == [kind, kind]
    check_all(before, after, labels)


def test_all_kinds_together_on_a_simulated_trace() -> None:
    before = synthetic_trace(days=90)
    after, labels = inject(before, list(AnomalyKind), seed=5)
    assert sorted(label.kind for label in labels) == sorted(AnomalyKind)
    check_all(before, after, labels)
    assert not np.array_equal(before.power_w, after.power_w, equal_nan=True)


def test_the_input_trace_is_not_modified() -> None:
    before = synthetic_trace()
    kept = before.copy()
    inject(before, list(AnomalyKind), seed=2)
    for name in ("ts", "power_w", "energy_wh", "voltage_v"):
        assert same_bytes(getattr(before, name), getattr(kept, name))


def test_same_seed_same_result_other_seed_other_result() -> None:
    trace = synthetic_trace()
    a, labels_a = inject(trace, list(AnomalyKind), seed=7)
    b, labels_b = inject(trace, list(AnomalyKind), seed=7)
    _, labels_c = inject(trace, list(AnomalyKind), seed=8)
    assert labels_a == labels_b
    for name in ("power_w", "energy_wh", "voltage_v"):
        assert same_bytes(getattr(a, name), getattr(b, name))
    assert labels_a != labels_c


def test_spans_avoid_unknown_data() -> None:
    trace = synthetic_trace()
    strict = {K.NIGHT_USE, K.SPIKE, K.STUCK, K.GAP, K.COUNTER_RESET, K.CLOCK_SKEW}
    for seed in range(5):
        _, labels = inject(trace, list(AnomalyKind), seed=seed)
        for label in labels:
            lo, hi = rows(trace, label)
            assert np.isfinite(trace.power_w[[lo - 1, lo, hi - 1, hi]]).all()
            if label.kind in strict:
                assert np.isfinite(trace.power_w[lo:hi]).all(), label.kind


def test_export_drops_gap_rows_and_shows_resets_as_negative_intervals() -> None:
    trace = synthetic_trace()
    after, labels = inject(trace, [K.GAP, K.COUNTER_RESET], seed=3)
    series = after.to_series()
    gap = next(label for label in labels if label.kind is K.GAP)
    reset = next(label for label in labels if label.kind is K.COUNTER_RESET)
    assert len(series) == int(after.present.sum()) < len(trace)
    assert series.energy_wh is not None
    after_gap = int(np.searchsorted(series.ts, int(gap.end.timestamp())))
    lo, hi = rows(trace, gap)
    assert series.energy_wh[after_gap] == trace.energy_wh[hi] - trace.energy_wh[lo - 1], "covers the gap"
    at_reset = int(np.searchsorted(series.ts, int(reset.start.timestamp())))
    assert series.energy_wh[at_reset] < -1e5


def test_overlap_is_allowed_when_asked() -> None:
    trace = synthetic_trace(days=20)
    _, labels = inject(trace, [K.BASELOAD], seed=1, per_kind=6, avoid_overlap=False)
    assert len(labels) == 6
    with pytest.raises(ValueError, match="no room"):
        inject(trace, [K.BASELOAD], seed=1, per_kind=6)


def test_trace_validation() -> None:
    with pytest.raises(ValueError, match="regular grid"):
        MeterTrace.from_intervals("m-1", np.array([0, 900, 2700]), 900, power_w=np.ones(3))
    with pytest.raises(ValueError, match="device id"):
        MeterTrace.from_intervals("m 1", np.array([0, 900]), 900, power_w=np.ones(2))


def test_counter_starts_at_a_per_device_offset() -> None:
    a, b = synthetic_trace(device_id="a"), synthetic_trace(device_id="b")
    assert a.energy_wh[0] != b.energy_wh[0]
    assert a.energy_wh[0] > 1e5
    assert same_bytes(np.diff(a.energy_wh), np.diff(b.energy_wh))


@pytest.mark.skipif(not DATA.is_dir(), reason=NO_DATA)
@pytest.mark.parametrize(
    ("file", "fmt", "device", "days"),
    [
        ("sgsc_households_halfhourly.csv.gz", "sgsc", "sgsc-10006414", 120),
        ("uci_household_minute_2007H1.csv.gz", "uci-minute", "uci-sceaux", 60),
        ("uci_household_hourly_2006_2010.csv.gz", "uci-hourly", "uci-sceaux", 365),
    ],
)
def test_all_kinds_on_real_data(file: str, fmt: str, device: str, days: int) -> None:
    trace = next(t for t in load(DATA / file, fmt) if t.device_id == device)
    before = trace.slice_rows(0, days * 86_400 // trace.step_s)
    before.temperature_c = np.zeros(len(before))
    after, labels = inject(before, list(AnomalyKind), seed=2026)
    assert sorted(label.kind for label in labels) == sorted(AnomalyKind)
    check_all(before, after, labels)
    assert datetime.fromtimestamp(int(before.ts[0]), UTC) <= labels[0].start

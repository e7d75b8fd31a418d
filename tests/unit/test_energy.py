"""Pure tests of interval energy, the 1-minute rollup and rollup helpers (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vatio.errors import ConfigError
from vatio.model import EnergyBucket, EnergyPeriod, Reading, Resolution, RollupRow
from vatio.model.instants import from_ms, to_ms
from vatio.store.energy import (
    DEFAULT_POLICY,
    MINUTE_MS,
    EnergyPolicy,
    FloatArray,
    IntArray,
    interval_energy_wh,
    minute_rollups,
)
from vatio.store.rollup import (
    dirty_ranges,
    energy_buckets,
    minute_window,
    resolution_seconds,
    tier_span,
    zone,
)

NAN = float("nan")
PARIS = ZoneInfo("Europe/Paris")


def ts(*seconds: float) -> IntArray:
    return np.array([round(s * 1000) for s in seconds], dtype=np.int64)


def floats(*values: float) -> FloatArray:
    return np.array(values, dtype=np.float64)


def nans(n: int) -> FloatArray:
    return np.full(n, np.nan)


# -- interval_energy_wh -------------------------------------------------------------


def test_no_readings_no_energy() -> None:
    assert interval_energy_wh(ts(), floats(), floats()).tolist() == []


def test_a_single_reading_closes_no_interval() -> None:
    assert interval_energy_wh(ts(0), floats(500.0), floats(1000.0)).tolist() == [0.0]
    assert interval_energy_wh(ts(0), floats(500.0), nans(1)).tolist() == [0.0]


def test_all_nan_power_without_counter_is_no_energy() -> None:
    assert interval_energy_wh(ts(0, 60, 120), nans(3), nans(3)).tolist() == [0.0, 0.0, 0.0]


def test_power_is_integrated_trapezoidally() -> None:
    # A linear ramp 0 -> 3600 W over two minutes: 30 Wh, then 90 Wh.
    energy = interval_energy_wh(ts(0, 60, 120), floats(0.0, 1800.0, 3600.0), nans(3))
    assert energy.tolist() == pytest.approx([0.0, 15.0, 45.0])


def test_a_missing_power_value_leaves_its_intervals_unknown() -> None:
    energy = interval_energy_wh(ts(0, 60, 120, 180), floats(600.0, NAN, 600.0, 600.0), nans(4))
    assert energy.tolist() == pytest.approx([0.0, 0.0, 0.0, 10.0])


def test_exported_power_is_not_counted_as_import() -> None:
    export = interval_energy_wh(ts(0, 60, 120), floats(-500.0, -500.0, -800.0), nans(3))
    assert export.tolist() == [0.0, 0.0, 0.0]
    # Back to importing: only the importing minute counts fully.
    mixed = interval_energy_wh(ts(0, 60, 120), floats(-500.0, 600.0, 600.0), nans(3))
    assert mixed[2] == pytest.approx(10.0)
    assert 0.0 <= mixed[1] <= 10.0


def test_counter_deltas_are_the_energy_and_power_is_ignored() -> None:
    energy = interval_energy_wh(ts(0, 60, 120), floats(9999.0, 9999.0, 9999.0), floats(100.0, 110.0, 125.0))
    assert energy.tolist() == [0.0, 10.0, 15.0]


def test_readings_without_counter_are_bridged_by_the_next_counter_reading() -> None:
    energy = interval_energy_wh(ts(0, 30, 60), floats(600.0, 600.0, 600.0), floats(100.0, NAN, 110.0))
    assert energy.tolist() == [0.0, 0.0, 10.0]
    assert energy.sum() == pytest.approx(10.0)


def test_a_small_new_counter_value_is_a_reset() -> None:
    # 5010 -> 3: the meter restarted from zero and has counted 3 Wh since.
    energy = interval_energy_wh(ts(0, 60, 120, 180), nans(4), floats(5000.0, 5010.0, 3.0, 13.0))
    assert energy.tolist() == [0.0, 10.0, 3.0, 10.0]


def test_a_large_drop_is_a_replacement_that_falls_back_to_power() -> None:
    # 5 MWh -> 3 MWh in a minute cannot have been counted from zero: power fills in.
    counter = floats(5_000_000.0, 5_000_010.0, 3_000_000.0, 3_000_010.0)
    energy = interval_energy_wh(ts(0, 60, 120, 180), floats(600.0, 600.0, 600.0, 600.0), counter)
    assert energy.tolist() == pytest.approx([0.0, 10.0, 10.0, 10.0])


def test_an_implausible_jump_up_falls_back_to_power() -> None:
    counter = floats(1000.0, 1010.0, 9_000_000.0, 9_000_010.0)
    energy = interval_energy_wh(ts(0, 60, 120, 180), floats(600.0, 600.0, 1200.0, 600.0), counter)
    assert energy.tolist() == pytest.approx([0.0, 10.0, 20.0, 10.0])


def test_a_replacement_without_power_counts_nothing() -> None:
    counter = floats(5_000_000.0, 5_000_010.0, 3_000_000.0, 3_000_010.0)
    energy = interval_energy_wh(ts(0, 60, 120, 180), nans(4), counter)
    assert energy.tolist() == [0.0, 10.0, 0.0, 10.0]


def test_reset_versus_replacement_depends_on_what_the_interval_could_hold() -> None:
    policy = EnergyPolicy(max_power_w=6000.0, slack_wh=0.0)  # at most 100 Wh a minute
    small = interval_energy_wh(ts(0, 60), floats(600.0, 600.0), floats(5000.0, 100.0), policy)
    large = interval_energy_wh(ts(0, 60), floats(600.0, 600.0), floats(5000.0, 101.0), policy)
    assert small.tolist() == [0.0, 100.0]  # counted since zero: a reset
    assert large.tolist() == [0.0, 10.0]  # could not have been: power instead


def test_power_gaps_beyond_the_limit_are_unknown() -> None:
    limit = DEFAULT_POLICY.max_integration_gap_s
    within = interval_energy_wh(ts(0, limit), floats(1200.0, 1200.0), nans(2))
    beyond = interval_energy_wh(ts(0, limit + 1), floats(1200.0, 1200.0), nans(2))
    assert within.tolist() == pytest.approx([0.0, 1200.0 * limit / 3600.0])
    assert beyond.tolist() == [0.0, 0.0]


def test_a_replacement_across_a_long_gap_counts_nothing() -> None:
    counter = floats(5_000_000.0, 12_000_000.0)
    energy = interval_energy_wh(ts(0, 3 * 3600), floats(1200.0, 1200.0), counter)
    assert energy.tolist() == [0.0, 0.0]


def test_a_counter_bridges_a_long_gap() -> None:
    # The counter knows what happened during three silent hours.
    energy = interval_energy_wh(ts(0, 3 * 3600), floats(NAN, NAN), floats(1000.0, 4600.0))
    assert energy.tolist() == [0.0, 3600.0]


# Monotone meters: per interval a duration and a power the policy deems plausible.
intervals = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=1800),
        st.floats(min_value=0.0, max_value=DEFAULT_POLICY.max_power_w),
        st.booleans(),
    ),
    min_size=1,
    max_size=60,
)


def monotone_meter(
    start_s: int, first_counter: float, steps: list[tuple[int, float, bool]]
) -> tuple[IntArray, FloatArray, FloatArray]:
    seconds, power, counter = [start_s], [NAN], [first_counter]
    for dt_s, watts, power_known in steps:
        seconds.append(seconds[-1] + dt_s)
        power.append(watts if power_known else NAN)
        counter.append(counter[-1] + watts * dt_s / 3600.0)
    return ts(*seconds), floats(*power), floats(*counter)


@settings(max_examples=200, deadline=None)
@given(
    start_s=st.integers(min_value=0, max_value=10**9),
    first_counter=st.floats(min_value=0.0, max_value=1e8),
    steps=intervals,
)
def test_monotone_counters_sum_to_their_difference(
    start_s: int, first_counter: float, steps: list[tuple[int, float, bool]]
) -> None:
    ts_ms, power, counter = monotone_meter(start_s, first_counter, steps)
    energy = interval_energy_wh(ts_ms, power, counter)
    assert energy[0] == 0.0
    assert (energy >= 0.0).all()
    assert energy.sum() == pytest.approx(counter[-1] - counter[0], rel=1e-9, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(
    first_counter=st.floats(min_value=1e6, max_value=1e8),
    steps=intervals,
    reset_after=st.sets(st.integers(min_value=0, max_value=59)),
)
def test_resets_right_after_a_reading_lose_no_energy(
    first_counter: float, steps: list[tuple[int, float, bool]], reset_after: set[int]
) -> None:
    # The meter restarts from 0 just after reading k: reading k+1 shows only its interval.
    seconds, counter, true_energy = [0], [first_counter], 0.0
    for k, (dt_s, watts, _) in enumerate(steps):
        delta = watts * dt_s / 3600.0
        true_energy += delta
        seconds.append(seconds[-1] + dt_s)
        restart = k in reset_after and counter[-1] > delta
        counter.append(delta if restart else counter[-1] + delta)
    energy = interval_energy_wh(ts(*seconds), nans(len(seconds)), floats(*counter))
    assert (energy >= 0.0).all()
    assert energy.sum() == pytest.approx(true_energy, rel=1e-9, abs=1e-6)


# -- minute_rollups -------------------------------------------------------------------


def test_no_readings_no_rows() -> None:
    assert minute_rollups("m", ts(), floats(), floats(), first_bucket_ms=0, last_bucket_ms=MINUTE_MS) == []


def test_a_single_reading_is_one_sample_and_no_energy() -> None:
    [row] = minute_rollups("m", ts(90), floats(250.0), floats(1000.0), first_bucket_ms=0, last_bucket_ms=MINUTE_MS)
    assert row == RollupRow("m", from_ms(MINUTE_MS), 1, 1, 250.0, 250.0, 250.0, 0.0)


def test_all_nan_power_gives_rows_without_power_statistics() -> None:
    rows = minute_rollups("m", ts(0, 30, 60), nans(3), nans(3), first_bucket_ms=0, last_bucket_ms=MINUTE_MS)
    assert [(r.samples, r.power_count, r.power_mean_w, r.power_min_w, r.power_max_w) for r in rows] == [
        (2, 0, None, None, None),
        (1, 0, None, None, None),
    ]
    assert [r.energy_wh for r in rows] == [0.0, 0.0]


def test_power_statistics_of_a_bucket() -> None:
    [row] = minute_rollups(
        "m", ts(0, 15, 30, 45), floats(100.0, NAN, 400.0, 250.0), nans(4), first_bucket_ms=0, last_bucket_ms=0
    )
    assert (row.samples, row.power_count, row.power_min_w, row.power_max_w) == (4, 3, 100.0, 400.0)
    assert row.power_mean_w == pytest.approx(250.0)


def test_an_interval_ending_on_a_boundary_belongs_to_the_bucket_before() -> None:
    rows = minute_rollups(
        "m", ts(30, 60, 90), nans(3), floats(0.0, 5.0, 12.0), first_bucket_ms=0, last_bucket_ms=MINUTE_MS
    )
    assert [(r.bucket, r.samples, r.energy_wh) for r in rows] == [
        (from_ms(0), 1, 5.0),  # (00:30, 01:00] ends at 01:00 exactly
        (from_ms(MINUTE_MS), 2, 7.0),
    ]


def test_the_predecessor_reading_is_neither_a_sample_nor_an_interval_in_range() -> None:
    rows = minute_rollups(
        "m",
        ts(-30, 30),
        floats(100.0, 100.0),
        floats(1000.0, 1004.0),
        first_bucket_ms=0,
        last_bucket_ms=0,
    )
    assert [(r.samples, r.power_count, r.energy_wh) for r in rows] == [(1, 1, 4.0)]


def test_negative_power_is_not_import_energy_in_rollups() -> None:
    rows = minute_rollups(
        "pv",
        ts(0, 20, 40, 60),
        floats(-900.0, -900.0, -900.0, -900.0),
        nans(4),
        first_bucket_ms=0,
        last_bucket_ms=0,
    )
    assert [(r.energy_wh, r.power_min_w) for r in rows] == [(0.0, -900.0)]


@settings(max_examples=150, deadline=None)
@given(
    start_s=st.integers(min_value=0, max_value=10**6),
    first_counter=st.floats(min_value=0.0, max_value=1e7),
    steps=intervals,
)
def test_minute_energies_sum_to_the_counter_difference(
    start_s: int, first_counter: float, steps: list[tuple[int, float, bool]]
) -> None:
    ts_ms, power, counter = monotone_meter(start_s, first_counter, steps)
    first = int(ts_ms[0]) - int(ts_ms[0]) % MINUTE_MS
    last = int(ts_ms[-1]) - int(ts_ms[-1]) % MINUTE_MS
    rows = minute_rollups("m", ts_ms, power, counter, first_bucket_ms=first, last_bucket_ms=last)
    assert sum(r.energy_wh for r in rows) == pytest.approx(counter[-1] - counter[0], rel=1e-9, abs=1e-6)
    assert sum(r.samples for r in rows) == len(ts_ms)
    assert all(r.energy_wh >= 0.0 for r in rows)


@settings(max_examples=150, deadline=None)
@given(
    first_counter=st.floats(min_value=0.0, max_value=1e7),
    steps=intervals,
    split_fraction=st.floats(min_value=0.0, max_value=1.0),
)
def test_two_adjacent_windows_equal_one_window(
    first_counter: float, steps: list[tuple[int, float, bool]], split_fraction: float
) -> None:
    """What an incremental refresh relies on: rows do not depend on where a window starts."""
    ts_ms, power, counter = monotone_meter(0, first_counter, steps)
    last = int(ts_ms[-1]) - int(ts_ms[-1]) % MINUTE_MS
    split = int(last * split_fraction) // MINUTE_MS * MINUTE_MS

    whole = minute_rollups("m", ts_ms, power, counter, first_bucket_ms=0, last_bucket_ms=last)
    # Left window: every reading up to the end of its last bucket (the split).
    left_n = int(np.searchsorted(ts_ms, split, side="right"))
    left = (
        minute_rollups(
            "m",
            ts_ms[:left_n],
            power[:left_n],
            counter[:left_n],
            first_bucket_ms=0,
            last_bucket_ms=split - MINUTE_MS,
        )
        if split
        else []
    )
    # Right window: the last reading before it, then everything after.
    right_from = max(int(np.searchsorted(ts_ms, split, side="left")) - 1, 0)
    right = minute_rollups(
        "m",
        ts_ms[right_from:],
        power[right_from:],
        counter[right_from:],
        first_bucket_ms=split,
        last_bucket_ms=last,
    )
    assert [_approx_row(r) for r in left + right] == [_approx_row(r) for r in whole]


def _approx_row(row: RollupRow) -> tuple[object, ...]:
    return (
        row.bucket,
        row.samples,
        row.power_count,
        pytest.approx(row.power_sum_w),
        row.power_min_w,
        row.power_max_w,
        pytest.approx(row.energy_wh, rel=1e-9, abs=1e-9),
    )


# -- rollup helpers ----------------------------------------------------------------------

T0 = datetime(2026, 3, 10, tzinfo=UTC)


def test_dirty_ranges_span_each_device() -> None:
    readings = [
        Reading("a", T0 + timedelta(minutes=5)),
        Reading("b", T0),
        Reading("a", T0 + timedelta(minutes=1)),
        Reading("a", T0 + timedelta(minutes=9)),
    ]
    assert dirty_ranges(readings) == {
        "a": (to_ms(T0 + timedelta(minutes=1)), to_ms(T0 + timedelta(minutes=9))),
        "b": (to_ms(T0), to_ms(T0)),
    }
    assert dirty_ranges([]) == {}


def test_the_minute_window_reaches_the_next_reading_and_the_bucket_before() -> None:
    late = 10 * MINUTE_MS + 30_000
    assert minute_window(late, late, None) == (9 * MINUTE_MS, 10 * MINUTE_MS)
    assert minute_window(late, late, 14 * MINUTE_MS + 1) == (9 * MINUTE_MS, 14 * MINUTE_MS)
    # A reading on a boundary: the interval ending there belongs to the bucket before.
    assert minute_window(10 * MINUTE_MS, 10 * MINUTE_MS, None)[0] == 9 * MINUTE_MS


def test_tier_span_covers_the_minute_window() -> None:
    assert tier_span(59 * MINUTE_MS, 61 * MINUTE_MS, 3600) == (0, 3600)
    assert tier_span(14 * MINUTE_MS, 14 * MINUTE_MS, 900) == (0, 0)


def test_resolution_seconds() -> None:
    assert [resolution_seconds(r) for r in (Resolution.MIN_1, Resolution.MIN_15, Resolution.HOUR_1)] == [
        60,
        900,
        3600,
    ]
    with pytest.raises(ConfigError):
        resolution_seconds(Resolution.RAW)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_an_unknown_time_zone_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError):
        zone(name)
    with pytest.raises(ConfigError):
        energy_buckets([], EnergyPeriod.DAY, name)


def hourly(start: datetime, hours: int, energy_wh: float = 100.0) -> list[RollupRow]:
    return [
        RollupRow("m", start + timedelta(hours=k), 60, 60, 60 * energy_wh, energy_wh, energy_wh, energy_wh)
        for k in range(hours)
    ]


def test_local_days_on_dst_changes() -> None:
    # Paris local midnight to midnight: 23 h in spring, 25 h in autumn.
    spring = hourly(datetime(2026, 3, 28, 23, tzinfo=UTC), 23)
    autumn = hourly(datetime(2026, 10, 24, 22, tzinfo=UTC), 25)
    assert energy_buckets(spring, EnergyPeriod.DAY, "Europe/Paris") == [
        EnergyBucket(datetime(2026, 3, 29, tzinfo=PARIS), 2300.0)
    ]
    [day] = energy_buckets(autumn, EnergyPeriod.DAY, "Europe/Paris")
    assert (day.start, day.energy_wh) == (datetime(2026, 10, 25, tzinfo=PARIS), 2500.0)


def test_local_hours_on_dst_changes_are_distinct() -> None:
    spring = energy_buckets(hourly(datetime(2026, 3, 28, 23, tzinfo=UTC), 23), EnergyPeriod.HOUR, "Europe/Paris")
    assert [b.energy_wh for b in spring] == [100.0] * 23
    autumn = energy_buckets(hourly(datetime(2026, 10, 24, 22, tzinfo=UTC), 25), EnergyPeriod.HOUR, "Europe/Paris")
    # 02:00 happens twice that night; each occurrence is its own hour.
    assert [b.energy_wh for b in autumn] == [100.0] * 25
    assert len({b.start.astimezone(UTC) for b in autumn}) == 25


def test_local_months() -> None:
    rows = hourly(datetime(2026, 1, 31, 20, tzinfo=UTC), 8)
    buckets = energy_buckets(rows, EnergyPeriod.MONTH, "Europe/Paris")
    assert [(b.start, b.energy_wh) for b in buckets] == [
        (datetime(2026, 1, 1, tzinfo=PARIS), 300.0),
        (datetime(2026, 2, 1, tzinfo=PARIS), 500.0),
    ]
    utc = energy_buckets(rows, EnergyPeriod.MONTH, "UTC")
    assert [b.energy_wh for b in utc] == [400.0, 400.0]

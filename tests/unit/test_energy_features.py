"""Comparison windows, baseload and peak demand on synthetic buckets with hand-computed answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vatio.energy.baseload import baseload
from vatio.energy.compare import ComparePeriod, change_pct, windows
from vatio.energy.peak import peak_demand
from vatio.model import SiteBucket

PARIS = ZoneInfo("Europe/Paris")
QUARTER = timedelta(minutes=15)


def quarters(start: datetime, powers: list[float], devices: int = 1) -> list[SiteBucket]:
    return [SiteBucket(start + k * QUARTER, devices, p, p / 4, 0.0) for k, p in enumerate(powers)]


# -- comparisons ---------------------------------------------------------------------------


def test_week_window_is_like_for_like_across_a_dst_change() -> None:
    # Sunday 29 March 2026, 12:00 in Paris: this week's window holds the spring-forward night.
    now = datetime(2026, 3, 29, 10, tzinfo=UTC)
    current, previous = windows(ComparePeriod.WEEK, now, PARIS)
    assert current.start == datetime(2026, 3, 23, tzinfo=PARIS)
    assert current.end == now
    assert previous.start == datetime(2026, 3, 16, tzinfo=PARIS)
    assert previous.end == datetime(2026, 3, 22, 12, tzinfo=PARIS)
    # The same wall-clock span; the current one is an hour shorter in real time
    # (aware datetimes of one zone subtract as wall clocks: compare in UTC).
    assert current.end.astimezone(UTC) - current.start.astimezone(UTC) == timedelta(hours=155)
    assert previous.end.astimezone(UTC) - previous.start.astimezone(UTC) == timedelta(hours=156)


def test_month_window_compares_with_the_same_month_last_year_and_clamps_29_february() -> None:
    now = datetime(2028, 2, 29, 18, tzinfo=UTC)  # 19:00 in Paris
    current, previous = windows(ComparePeriod.MONTH, now, PARIS)
    assert current.start == datetime(2028, 2, 1, tzinfo=PARIS)
    assert previous.start == datetime(2027, 2, 1, tzinfo=PARIS)
    assert previous.end == datetime(2027, 2, 28, 19, tzinfo=PARIS)


def test_change_pct() -> None:
    assert change_pct(30.0, 60.0) == -50.0
    assert change_pct(198.0, 24.0) == pytest.approx(725.0)
    assert change_pct(1.0, 0.0) is None


# -- baseload ------------------------------------------------------------------------------


def test_baseload_is_the_nearest_rank_5th_percentile_of_complete_buckets() -> None:
    # 100 complete buckets of 201..300 W: the 5th percentile by nearest rank is the 5th value, 205 W.
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    complete = quarters(t0, [300.0 - k for k in range(100)], devices=2)
    # Buckets where one of the two meters was silent read low, but are gaps, not baseload.
    gaps = quarters(t0 + 100 * QUARTER, [10.0] * 20, devices=1)
    result = baseload(complete + gaps, days=7)
    assert result.baseload_w == 205.0
    assert result.buckets == 100
    assert result.yearly_kwh == pytest.approx(205.0 * 8760 / 1000)
    assert "p5" in result.method


def test_baseload_without_power_data_is_unknown() -> None:
    result = baseload([], days=7)
    assert (result.baseload_w, result.yearly_kwh, result.buckets) == (None, None, 0)


# -- peak demand ---------------------------------------------------------------------------


def test_peak_demand_per_local_day_against_the_limit() -> None:
    # From 22:00 UTC on 2 Jan (23:00 in Paris): 8 quarters, the last 4 on 3 Jan local.
    t0 = datetime(2026, 1, 2, 22, tzinfo=UTC)
    powers = [1000.0, 3600.0, 2000.0, 3600.0, 500.0, 4200.0, 4100.0, 300.0]
    result = peak_demand(quarters(t0, powers), PARIS, limit_kw=4.0)
    assert result.peak_kw == 4.2
    assert result.at == t0 + 5 * QUARTER
    assert result.limit_kw == 4.0
    assert [(d.day, d.peak_kw, d.at, d.over_limit) for d in result.days] == [
        (date(2026, 1, 2), 3.6, t0 + QUARTER, False),  # the earliest of two equal peaks
        (date(2026, 1, 3), 4.2, t0 + 5 * QUARTER, True),
    ]


def test_peak_demand_of_energy_only_meters_uses_energy_times_four() -> None:
    t0 = datetime(2026, 1, 2, tzinfo=UTC)
    bucket = SiteBucket(t0, 0, None, 750.0, 0.0)  # 750 Wh in 15 minutes = 3 kW
    assert peak_demand([bucket], ZoneInfo("UTC"), None).peak_kw == 3.0


def test_peak_demand_without_data() -> None:
    result = peak_demand([], PARIS, 3.0)
    assert (result.peak_kw, result.at, result.days) == (None, None, [])

"""The Store contract, run against every backend (see ``store`` in conftest).

Expected values come from the physics of the synthetic data (power held over
each interval, a counter that integrates it), never from the code under test.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

import pytest

from vatio.errors import BatchRejectedError, ConfigError
from vatio.model import (
    DeadLetter,
    EnergyBucket,
    EnergyPeriod,
    Reading,
    Resolution,
    RollupRow,
    StoreStats,
    WriteBatch,
    WriteResult,
)
from vatio.store.base import Store, write_all

StoreFactory = Callable[[], Awaitable[Store]]

DAY0 = datetime(2026, 3, 10, tzinfo=UTC)  # an ordinary Tuesday, far from any DST change
PARIS = ZoneInfo("Europe/Paris")
TIERS: dict[Resolution, int] = {
    Resolution.MIN_1: 60,
    Resolution.MIN_15: 900,
    Resolution.HOUR_1: 3600,
    Resolution.DAY_1: 86400,
}
EMPTY_STATS = StoreStats(readings=0, devices=0, dead_letters=0, rollup_rows=0, pending_rollups=0)


def metered(
    device_id: str,
    start: datetime,
    *,
    step_s: int,
    count: int,
    power_w: Callable[[int], float] | float,
    counter_wh: float | None = 1_000_000.0,
) -> list[Reading]:
    """Readings of a meter whose ``i``-th power is held over the interval ending at reading ``i``.

    The counter (when given a start value) integrates exactly that power, so
    counter deltas and power agree.
    """
    readings = []
    counter = counter_wh
    for i in range(count):
        watts = power_w(i) if callable(power_w) else power_w
        if counter is not None and i:
            counter += watts * step_s / 3600.0
        readings.append(Reading(device_id, start + timedelta(seconds=i * step_s), i, power_w=watts, energy_wh=counter))
    return readings


async def refresh_all(store: Store) -> None:
    for _ in range(100):
        if await store.refresh_rollups() == 0:
            return
    pytest.fail("refresh_rollups never drained the dirty ranges")


async def all_tiers(store: Store, device_id: str, start: datetime, end: datetime) -> list[RollupRow]:
    rows: list[RollupRow] = []
    for resolution in TIERS:
        rows += await store.rollups(device_id, start, end, resolution)
    return rows


@dataclass
class Expected:
    samples: int = 0
    powers: list[float] = field(default_factory=list)
    energy_wh: float = 0.0


def physics_rollups(readings: Sequence[Reading], tier_s: int) -> dict[datetime, Expected]:
    """Independent rollup of ``metered`` data: power samples by start, energy by interval end."""
    ordered = sorted(readings, key=lambda r: r.ts)
    buckets: dict[datetime, Expected] = {}

    def bucket(second: int) -> Expected:
        start = datetime.fromtimestamp(second - second % tier_s, UTC)
        return buckets.setdefault(start, Expected())

    for i, reading in enumerate(ordered):
        second = int(reading.ts.timestamp())
        sample = bucket(second)
        sample.samples += 1
        if reading.power_w is not None:
            sample.powers.append(reading.power_w)
        if i:
            # The interval (previous, this] belongs to the bucket holding its end.
            counter, previous = reading.energy_wh, ordered[i - 1].energy_wh
            assert counter is not None
            assert previous is not None
            bucket(second - 1).energy_wh += counter - previous
    return buckets


def assert_rollups_match(rows: Sequence[RollupRow], expected: dict[datetime, Expected]) -> None:
    assert [row.bucket for row in rows] == sorted(expected)
    for row in rows:
        want = expected[row.bucket]
        powers = want.powers
        assert row.samples == want.samples, row.bucket
        assert row.power_count == len(powers), row.bucket
        assert row.energy_wh == pytest.approx(want.energy_wh, rel=1e-9, abs=1e-6), row.bucket
        if powers:
            assert row.power_mean_w == pytest.approx(sum(powers) / len(powers), rel=1e-12), row.bucket
            assert row.power_min_w == pytest.approx(min(powers)), row.bucket
            assert row.power_max_w == pytest.approx(max(powers)), row.bucket
        else:
            assert (row.power_min_w, row.power_max_w) == (None, None)


def rollup_key(row: RollupRow) -> tuple[object, ...]:
    return (
        row.bucket,
        row.samples,
        row.power_count,
        pytest.approx(row.power_sum_w, rel=1e-12),
        row.power_min_w,
        row.power_max_w,
        pytest.approx(row.energy_wh, rel=1e-9, abs=1e-9),
    )


# -- schema and stats ------------------------------------------------------------


async def test_migrate_is_idempotent_and_an_empty_store_counts_zero(store: Store) -> None:
    await store.migrate()
    await store.migrate()
    assert await store.stats() == EMPTY_STATS
    assert await store.list_devices() == []
    assert await store.dead_letters() == []
    assert await store.refresh_rollups() == 0


async def test_migrate_keeps_data(store: Store) -> None:
    await write_all(store, metered("m", DAY0, step_s=60, count=3, power_w=100.0), "home")
    await store.migrate()
    assert (await store.stats()).readings == 3


# -- idempotent writes -------------------------------------------------------------


async def test_the_same_batch_twice_is_stored_once(store: Store) -> None:
    readings = metered("plug-1", DAY0, step_s=10, count=10, power_w=50.0)
    first = await write_all(store, readings, "home")
    again = await write_all(store, readings, "home")
    assert first == WriteResult(inserted=10, duplicates=0, dead_letters=0)
    assert again == WriteResult(inserted=0, duplicates=10, dead_letters=0)
    assert (await store.stats()).readings == 10
    assert await store.readings("plug-1", DAY0, DAY0 + timedelta(days=1)) == readings


async def test_overlapping_batches_merge(store: Store) -> None:
    readings = metered("plug-1", DAY0, step_s=10, count=15, power_w=lambda i: 10.0 * i)
    await write_all(store, readings[:10], "home")
    result = await write_all(store, readings[5:], "home")
    assert result == WriteResult(inserted=5, duplicates=5, dead_letters=0)
    assert await store.readings("plug-1", DAY0, DAY0 + timedelta(days=1)) == readings


async def test_the_first_stored_value_wins(store: Store) -> None:
    ts = DAY0 + timedelta(hours=3)
    original = Reading("plug-1", ts, 7, power_w=100.0, energy_wh=1000.0)
    await write_all(store, [original], "home")
    redelivered = Reading("plug-1", ts, 8, power_w=999.0, energy_wh=5.0)
    newer = Reading("plug-1", ts + timedelta(seconds=1), 9, power_w=101.0, energy_wh=1000.1)
    result = await write_all(store, [redelivered, newer], "home")
    assert result == WriteResult(inserted=1, duplicates=1, dead_letters=0)
    assert await store.readings("plug-1", ts, ts + timedelta(minutes=1)) == [original, newer]


async def test_a_duplicate_inside_one_batch_keeps_the_first(store: Store) -> None:
    ts = DAY0 + timedelta(hours=3)
    first = Reading("plug-1", ts, 1, power_w=100.0)
    second = Reading("plug-1", ts, 2, power_w=999.0)
    later = Reading("plug-1", ts + timedelta(seconds=5), 3, power_w=100.0)
    result = await write_all(store, [first, second, later], "home")
    assert result == WriteResult(inserted=2, duplicates=1, dead_letters=0)
    assert await store.readings("plug-1", ts, ts + timedelta(minutes=1)) == [first, later]


# -- devices ---------------------------------------------------------------------


def sighting(readings: list[Reading], sites: dict[str, str], seen: dict[str, datetime]) -> WriteBatch:
    return WriteBatch(readings=readings, sites=sites, last_seen=seen)


async def test_sightings_create_devices_with_site_and_last_seen(store: Store) -> None:
    seen_a, seen_b = DAY0 + timedelta(seconds=31), DAY0 + timedelta(seconds=47)
    batch = sighting(
        [Reading("plug-a", DAY0, 1, power_w=5.0), Reading("meter-b", DAY0, 1, energy_wh=10.0)],
        {"plug-a": "home-1", "meter-b": "home-2"},
        {"plug-a": seen_a, "meter-b": seen_b},
    )
    await store.write(batch)

    devices = sorted(await store.list_devices(now=seen_b), key=lambda d: d.device_id)
    assert [(d.device_id, d.site_id, d.last_seen, d.first_seen) for d in devices] == [
        ("meter-b", "home-2", seen_b, seen_b),
        ("plug-a", "home-1", seen_a, seen_a),
    ]
    assert (await store.stats()).devices == 2
    assert await store.get_device("nobody") is None


async def test_last_seen_never_goes_backwards(store: Store) -> None:
    newest = DAY0 + timedelta(hours=2)
    await store.write(sighting([Reading("plug-a", newest, 9, power_w=1.0)], {"plug-a": "h"}, {"plug-a": newest}))
    older = DAY0 + timedelta(hours=1)
    await store.write(sighting([Reading("plug-a", older, 5, power_w=1.0)], {"plug-a": "h"}, {"plug-a": older}))
    device = await store.get_device("plug-a", now=newest)
    assert device is not None
    assert device.last_seen == newest

    later = newest + timedelta(minutes=3)
    await store.write(sighting([Reading("plug-a", later, 10, power_w=1.0)], {"plug-a": "h"}, {"plug-a": later}))
    device = await store.get_device("plug-a", now=later)
    assert device is not None
    assert device.last_seen == later


async def test_online_is_derived_from_freshness(store: Store) -> None:
    seen = DAY0 + timedelta(hours=5)
    await write_all(store, [Reading("plug-a", seen, 1, power_w=3.0)], "home")

    fresh = await store.get_device("plug-a", now=seen + timedelta(minutes=4))
    stale = await store.get_device("plug-a", now=seen + timedelta(minutes=6))
    assert fresh is not None
    assert stale is not None
    assert (fresh.online, stale.online) == (True, False)
    [listed] = await store.list_devices(now=seen + timedelta(minutes=6))
    assert not listed.online


async def test_set_device_status_records_firmware_and_online(store: Store) -> None:
    seen = DAY0 + timedelta(hours=5)
    await write_all(store, [Reading("plug-a", seen, 1, power_w=3.0)], "home")

    await store.set_device_status("plug-a", "home", online=False, firmware="1.4.2", at=seen)
    device = await store.get_device("plug-a", now=seen)
    assert device is not None
    assert (device.firmware, device.status_online, device.site_id) == ("1.4.2", False, "home")
    assert device.online  # freshness of data, not the self-report

    await store.set_device_status("plug-a", "home", online=True, firmware="1.5.0", at=seen)
    device = await store.get_device("plug-a", now=seen)
    assert device is not None
    assert (device.firmware, device.status_online) == ("1.5.0", True)


async def test_status_of_an_unknown_device_registers_it(store: Store) -> None:
    at = DAY0 + timedelta(hours=1)
    await store.set_device_status("plug-new", "home-9", online=True, firmware="2.0", at=at)
    device = await store.get_device("plug-new", now=at)
    assert device is not None
    assert (device.site_id, device.firmware, device.status_online) == ("home-9", "2.0", True)


# -- raw readings -----------------------------------------------------------------


async def test_readings_are_a_half_open_range_oldest_first(store: Store) -> None:
    mine = metered("plug-a", DAY0, step_s=60, count=10, power_w=lambda i: 100.0 + i)
    other = metered("plug-b", DAY0, step_s=60, count=10, power_w=7.0)
    shuffled = mine + other
    random.Random(4).shuffle(shuffled)
    await write_all(store, shuffled, "home")

    start, end = mine[2].ts, mine[7].ts
    assert await store.readings("plug-a", start, end) == mine[2:7]
    assert await store.readings("plug-a", start, end, limit=3) == mine[2:5]
    assert await store.readings("plug-a", end, end) == []
    assert await store.readings("plug-a", DAY0 - timedelta(days=1), DAY0) == []


async def test_readings_round_trip_every_field(store: Store) -> None:
    full = Reading(
        "meter-1",
        DAY0 + timedelta(seconds=1),
        41,
        power_w=123.4,
        energy_wh=100500.5,
        voltage_v=230.1,
        current_a=0.54,
        power_factor=0.98,
        frequency_hz=50.0,
        energy_export_wh=12.25,
    )
    counter_only = Reading("meter-1", DAY0 + timedelta(seconds=2), 42, energy_wh=100500.75)
    export = Reading("meter-1", DAY0 + timedelta(seconds=3), None, power_w=-350.0)
    await write_all(store, [full, counter_only, export], "home")
    assert await store.readings("meter-1", DAY0, DAY0 + timedelta(minutes=1)) == [full, counter_only, export]


# -- rollups -------------------------------------------------------------------


async def test_rollups_of_a_constant_load(store: Store) -> None:
    # 1200 W for a day; the counter grows 20 Wh a minute.
    readings = metered("heater", DAY0, step_s=60, count=24 * 60 + 1, power_w=1200.0)
    await write_all(store, readings, "home")
    assert (await store.stats()).pending_rollups > 0
    assert await store.refresh_rollups() > 0
    assert (await store.stats()).pending_rollups == 0
    assert await store.refresh_rollups() == 0

    day_end = DAY0 + timedelta(days=1)
    for resolution, width_s in TIERS.items():
        rows = await store.rollups("heater", DAY0, day_end, resolution)
        minutes = width_s // 60
        assert [r.bucket for r in rows] == [DAY0 + timedelta(seconds=k * width_s) for k in range(86400 // width_s)]
        for row in rows:
            assert row.energy_wh == pytest.approx(1200.0 * width_s / 3600.0)
            assert (row.samples, row.power_count) == (minutes, minutes)
            assert (row.power_mean_w, row.power_min_w, row.power_max_w) == (1200.0, 1200.0, 1200.0)

    hours = await store.rollups("heater", DAY0, day_end, Resolution.HOUR_1)
    assert [h.energy_wh for h in hours] == pytest.approx([1200.0] * 24)

    everything = await all_tiers(store, "heater", DAY0 - timedelta(days=1), DAY0 + timedelta(days=2))
    assert (await store.stats()).rollup_rows == len(everything)


async def test_rollups_follow_the_physics_of_a_varying_load(store: Store) -> None:
    def power(i: int) -> float:
        return 300.0 + 70.0 * (i % 13) + 500.0 * ((i // 180) % 2)

    start = DAY0 - timedelta(minutes=30)
    readings = metered("washer", start, step_s=20, count=26 * 180 + 7, power_w=power)
    await write_all(store, readings, "home")
    await refresh_all(store)

    window = (DAY0 - timedelta(days=1), DAY0 + timedelta(days=2))
    for resolution, width_s in TIERS.items():
        rows = await store.rollups("washer", *window, resolution)
        assert_rollups_match(rows, physics_rollups(readings, width_s))


async def test_rollup_range_selects_bucket_starts(store: Store) -> None:
    readings = metered("heater", DAY0, step_s=60, count=3 * 60 + 1, power_w=600.0)
    await write_all(store, readings, "home")
    await refresh_all(store)
    start = DAY0 + timedelta(hours=1)
    rows = await store.rollups("heater", start, start + timedelta(hours=1), Resolution.MIN_15)
    assert [r.bucket for r in rows] == [start + timedelta(minutes=15 * k) for k in range(4)]
    assert await store.rollups("nobody", DAY0, DAY0 + timedelta(days=1), Resolution.HOUR_1) == []


async def test_dirty_ranges_drain_in_bounded_steps(store: Store) -> None:
    days = [DAY0 + timedelta(days=k, hours=6) for k in range(4)]
    for day in days:
        await write_all(store, metered("heater", day, step_s=60, count=61, power_w=1200.0), "home")

    calls = []
    while (done := await store.refresh_rollups(max_ranges=1)) > 0:
        assert done == 1
        calls.append(done)
        assert len(calls) <= len(days), "refresh_rollups(max_ranges=1) does not converge"
    assert (await store.stats()).pending_rollups == 0

    for day in days:
        [hour] = await store.rollups("heater", day, day + timedelta(hours=1), Resolution.HOUR_1)
        assert hour.energy_wh == pytest.approx(1200.0)


async def test_late_and_out_of_order_data_equal_the_in_order_rollups(store: Store, store_factory: StoreFactory) -> None:
    # Readings every 5 minutes over hours 1 and 2 of the day, varying power.
    hour1 = DAY0 + timedelta(hours=1)
    readings = metered("oven", hour1, step_s=300, count=24, power_w=lambda i: 800.0 + 50.0 * (i % 5))
    hour2_at = 12
    # A reading from 01:31 that arrives last: 3000 W for one minute, then the
    # counter catches up with the 01:35 reading.
    base, following = readings[6], readings[7]
    assert base.ts == hour1 + timedelta(minutes=30)
    assert base.energy_wh is not None
    assert following.energy_wh is not None
    late_counter = base.energy_wh + 3000.0 / 60.0
    assert late_counter < following.energy_wh  # still a monotone counter
    late = Reading("oven", base.ts + timedelta(minutes=1), None, power_w=3000.0, energy_wh=late_counter)

    hour1_part = readings[:hour2_at]
    random.Random(7).shuffle(hour1_part)
    for part in (readings[hour2_at:], hour1_part, [late]):
        await write_all(store, part, "home")
        await refresh_all(store)

    in_order = await store_factory()
    everything = sorted([*readings, late], key=lambda r: r.ts)
    await write_all(in_order, everything, "home")
    await refresh_all(in_order)

    window = (DAY0, DAY0 + timedelta(days=1))
    got = await all_tiers(store, "oven", *window)
    want = await all_tiers(in_order, "oven", *window)
    assert [rollup_key(r) for r in got] == [rollup_key(r) for r in want]
    for resolution, width_s in TIERS.items():
        rows = await store.rollups("oven", *window, resolution)
        assert_rollups_match(rows, physics_rollups(everything, width_s))


async def test_a_sparse_counter_streamed_in_small_batches_gives_the_physical_energy(store: Store) -> None:
    # Power every minute, the counter only on every 5th reading (the wire contract
    # makes every measurement optional), delivered in order, a few readings at a time.
    readings = [
        r if r.seq is not None and r.seq % 5 == 0 else r._replace(energy_wh=None)
        for r in metered("p1-port", DAY0 - timedelta(hours=1), step_s=60, count=26 * 60 + 1, power_w=1200.0)
    ]
    for k in range(0, len(readings), 7):
        await write_all(store, readings[k : k + 7], "home")
        await refresh_all(store)

    hours = await store.rollups("p1-port", DAY0, DAY0 + timedelta(days=1), Resolution.HOUR_1)
    assert [h.energy_wh for h in hours] == pytest.approx([1200.0] * 24)
    [day] = await store.energy("p1-port", DAY0, DAY0 + timedelta(days=1), EnergyPeriod.DAY)
    assert day.energy_wh == pytest.approx(24 * 1200.0)


# -- energy queries ---------------------------------------------------------------


def nonzero(buckets: Sequence[EnergyBucket]) -> dict[datetime, float]:
    return {bucket.start: bucket.energy_wh for bucket in buckets if bucket.energy_wh}


async def constant_load(store: Store, start: datetime, hours: int, watts: float = 1200.0) -> None:
    await write_all(store, metered("heater", start, step_s=60, count=hours * 60 + 1, power_w=watts), "home")
    await refresh_all(store)


async def test_energy_by_hour_day_and_month_in_utc(store: Store) -> None:
    start = datetime(2026, 1, 31, 20, tzinfo=UTC)
    await constant_load(store, start, hours=8)
    query = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))

    hourly = await store.energy("heater", *query, EnergyPeriod.HOUR)
    assert nonzero(hourly) == {start + timedelta(hours=k): pytest.approx(1200.0) for k in range(8)}
    daily = await store.energy("heater", *query, EnergyPeriod.DAY)
    assert nonzero(daily) == {
        datetime(2026, 1, 31, tzinfo=UTC): pytest.approx(4 * 1200.0),
        datetime(2026, 2, 1, tzinfo=UTC): pytest.approx(4 * 1200.0),
    }
    monthly = await store.energy("heater", *query, EnergyPeriod.MONTH)
    assert nonzero(monthly) == {
        datetime(2026, 1, 1, tzinfo=UTC): pytest.approx(4 * 1200.0),
        datetime(2026, 2, 1, tzinfo=UTC): pytest.approx(4 * 1200.0),
    }
    assert sum(b.energy_wh for b in hourly) == pytest.approx(8 * 1200.0)


async def test_energy_months_follow_local_time(store: Store) -> None:
    # 20:00-04:00 UTC is 21:00-05:00 in Paris (UTC+1 in winter): 3 h in January, 5 h in February.
    await constant_load(store, datetime(2026, 1, 31, 20, tzinfo=UTC), hours=8)
    query = (datetime(2026, 1, 1, tzinfo=PARIS), datetime(2026, 3, 1, tzinfo=PARIS))
    monthly = await store.energy("heater", *query, EnergyPeriod.MONTH, tz="Europe/Paris")
    assert nonzero(monthly) == {
        datetime(2026, 1, 1, tzinfo=PARIS): pytest.approx(3 * 1200.0),
        datetime(2026, 2, 1, tzinfo=PARIS): pytest.approx(5 * 1200.0),
    }
    hourly = await store.energy("heater", *query, EnergyPeriod.HOUR, tz="Europe/Paris")
    assert min(nonzero(hourly)) == datetime(2026, 1, 31, 21, tzinfo=PARIS)


async def test_the_spring_dst_day_has_23_hours_of_energy(store: Store) -> None:
    await constant_load(store, datetime(2026, 3, 28, 21, tzinfo=UTC), hours=27)
    day = (datetime(2026, 3, 29, tzinfo=PARIS), datetime(2026, 3, 30, tzinfo=PARIS))

    [daily] = await store.energy("heater", *day, EnergyPeriod.DAY, tz="Europe/Paris")
    assert daily.start == datetime(2026, 3, 29, tzinfo=PARIS)
    assert daily.energy_wh == pytest.approx(23 * 1200.0)
    hourly = await store.energy("heater", *day, EnergyPeriod.HOUR, tz="Europe/Paris")
    assert [b.energy_wh for b in hourly] == pytest.approx([1200.0] * 23)
    assert len({b.start for b in hourly}) == 23


async def test_the_autumn_dst_day_has_25_distinct_hours(store: Store) -> None:
    await constant_load(store, datetime(2026, 10, 24, 20, tzinfo=UTC), hours=28)
    day = (datetime(2026, 10, 25, tzinfo=PARIS), datetime(2026, 10, 26, tzinfo=PARIS))

    [daily] = await store.energy("heater", *day, EnergyPeriod.DAY, tz="Europe/Paris")
    assert daily.energy_wh == pytest.approx(25 * 1200.0)
    hourly = await store.energy("heater", *day, EnergyPeriod.HOUR, tz="Europe/Paris")
    # 02:00 local happens twice (CEST, then CET): two buckets, two instants.
    assert [b.energy_wh for b in hourly] == pytest.approx([1200.0] * 25)
    assert len({b.start.astimezone(UTC) for b in hourly}) == 25


async def test_an_unknown_time_zone_is_a_config_error(store: Store) -> None:
    await constant_load(store, DAY0, hours=1)
    with pytest.raises(ConfigError):
        await store.energy("heater", DAY0, DAY0 + timedelta(days=1), EnergyPeriod.DAY, tz="Mars/Olympus_Mons")


async def test_rollups_limit_returns_the_first_buckets(store: Store) -> None:
    await write_all(store, metered("heater", DAY0, step_s=60, count=121, power_w=600.0), "home")
    await refresh_all(store)
    span = (DAY0, DAY0 + timedelta(hours=3))
    every = await store.rollups("heater", *span, Resolution.MIN_1)
    assert len(every) > 100
    assert await store.rollups("heater", *span, Resolution.MIN_1, limit=3) == every[:3]
    assert (
        await store.rollups("heater", *span, Resolution.HOUR_1, limit=1)
        == (await store.rollups("heater", *span, Resolution.HOUR_1))[:1]
    )


# -- retention ----------------------------------------------------------------


async def test_retention_drops_old_raw_readings_and_keeps_rollups(store: Store) -> None:
    readings = metered("heater", DAY0, step_s=300, count=3 * 288 + 1, power_w=lambda i: 900.0 + 10 * (i % 7))
    await write_all(store, readings, "home")
    await refresh_all(store)
    window = (DAY0 - timedelta(days=1), DAY0 + timedelta(days=4))
    before = await all_tiers(store, "heater", *window)

    now = DAY0 + timedelta(days=3, hours=12)
    cutoff = now - timedelta(days=2)
    result = await store.apply_retention(raw_days=2, now=now)
    old = [r for r in readings if r.ts < cutoff]
    assert result.cutoff == cutoff
    kept = await store.readings("heater", *window)
    assert kept == [r for r in readings if r.ts >= cutoff]
    assert kept[0].ts == cutoff  # exactly N days old is not older than N days
    assert (await store.stats()).readings == len(readings) - len(old)

    after = await all_tiers(store, "heater", *window)
    assert [rollup_key(r) for r in after] == [rollup_key(r) for r in before]

    # New data after retention rolls up without disturbing the buckets of earlier days.
    last_counter = readings[-1].energy_wh
    assert last_counter is not None
    more = metered("heater", now, step_s=300, count=13, power_w=1200.0, counter_wh=last_counter + 1000.0)
    await write_all(store, more, "home")
    await refresh_all(store)
    earlier_days = (window[0], readings[-1].ts)
    assert [rollup_key(r) for r in await all_tiers(store, "heater", *earlier_days)] == [
        rollup_key(r) for r in before if r.bucket < earlier_days[1]
    ]
    [hour] = await store.rollups("heater", now, now + timedelta(hours=1), Resolution.HOUR_1)
    assert hour.energy_wh == pytest.approx(1200.0)
    # Rows in dropped partitions count as deleted too.
    assert result.readings_deleted == len(old)


async def test_retention_before_refresh_does_not_wedge_the_rollups(store: Store) -> None:
    await write_all(store, metered("heater", DAY0, step_s=60, count=61, power_w=1200.0), "home")
    result = await store.apply_retention(raw_days=1, now=DAY0 + timedelta(days=10))
    assert (await store.stats()).readings == 0
    await refresh_all(store)
    assert await store.rollups("heater", DAY0, DAY0 + timedelta(days=1), Resolution.MIN_1) == []

    later = DAY0 + timedelta(days=10)
    await write_all(store, metered("heater", later, step_s=60, count=61, power_w=600.0), "home")
    await refresh_all(store)
    [hour] = await store.rollups("heater", later, later + timedelta(hours=1), Resolution.HOUR_1)
    assert hour.energy_wh == pytest.approx(600.0)
    assert result.readings_deleted == 61


async def test_a_write_older_than_retention_becomes_a_dead_letter_and_leaves_rollups_alone(store: Store) -> None:
    """Without this, the refresh would rebuild a trimmed day's buckets from the late reading alone."""
    readings = metered("heater", DAY0, step_s=300, count=3 * 288 + 1, power_w=900.0)
    await write_all(store, readings, "home")
    await refresh_all(store)
    window = (DAY0 - timedelta(days=1), DAY0 + timedelta(days=4))
    before = await all_tiers(store, "heater", *window)
    now = DAY0 + timedelta(days=3, hours=12)
    cutoff = (await store.apply_retention(raw_days=2, now=now)).cutoff

    late = Reading("heater", DAY0 + timedelta(hours=6, seconds=30), None, 5000.0, readings[72].energy_wh)
    fresh = Reading("heater", now, None, 1200.0)
    result = await write_all(store, [late, fresh], "home")
    assert (result.inserted, result.too_old, result.dead_letters) == (1, 1, 1)
    [letter] = await store.dead_letters()
    assert letter.topic == "store/home/heater"
    assert "older than raw retention" in letter.reason
    assert "5000.0" in letter.payload.decode()
    await refresh_all(store)
    assert [rollup_key(r) for r in await all_tiers(store, "heater", *window) if r.bucket < cutoff] == [
        rollup_key(r) for r in before if r.bucket < cutoff
    ]
    assert await store.readings("heater", DAY0, cutoff) == []

    # A longer retention set later does not move the cutoff back: those readings are gone.
    await store.apply_retention(raw_days=30, now=now)
    again = await write_all(store, [late], "home")
    assert (again.inserted, again.too_old) == (0, 1)


async def test_a_write_just_after_the_cutoff_that_follows_a_deleted_reading_is_refused(store: Store) -> None:
    """Its predecessor fell to retention: recomputing its range would take energy out of the buckets."""
    readings = metered("heater", DAY0, step_s=300, count=3 * 288 + 1, power_w=900.0)
    await write_all(store, readings, "home")
    await refresh_all(store)
    window = (DAY0, DAY0 + timedelta(days=4))
    tiers = (Resolution.MIN_1, Resolution.MIN_15, Resolution.HOUR_1, Resolution.DAY_1)

    async def by_tier() -> dict[Resolution, list[RollupRow]]:
        return {tier: await store.rollups("heater", *window, tier) for tier in tiers}

    before = await by_tier()
    # The cutoff falls between the readings of 12:00 and 12:05 (the first one kept).
    now = DAY0 + timedelta(days=3, hours=12, minutes=2, seconds=10)
    cutoff = (await store.apply_retention(raw_days=2, now=now)).cutoff
    first_kept = next(r for r in readings if r.ts >= cutoff)
    assert first_kept.ts == DAY0 + timedelta(days=1, hours=12, minutes=5)
    counter = first_kept.energy_wh
    assert counter is not None
    between = Reading("heater", cutoff + timedelta(seconds=20), None, 900.0, counter - 900.0 * 150 / 3600)
    after_kept = Reading("heater", first_kept.ts + timedelta(minutes=2), None, 900.0, counter + 900.0 * 120 / 3600)
    result = await write_all(store, [between, after_kept], "home")
    assert (result.inserted, result.too_old) == (1, 1)
    [letter] = await store.dead_letters()
    assert "whose previous reading retention deleted" in letter.reason
    await refresh_all(store)
    after = await by_tier()
    # Every tier keeps its energy (the reading after a kept one only splits an interval), and
    # the minutes up to the first kept reading are untouched.
    for tier in tiers:
        assert sum(r.energy_wh for r in after[tier]) == pytest.approx(sum(r.energy_wh for r in before[tier])), tier
    untouched = [rollup_key(r) for r in before[Resolution.MIN_1] if r.bucket < first_kept.ts]
    assert [rollup_key(r) for r in after[Resolution.MIN_1] if r.bucket < first_kept.ts] == untouched


# -- dead letters ----------------------------------------------------------------

UGLY_PAYLOADS = (
    b'{"v": 1, "device": "plug-7", "readings": [\x00]}',
    b"\xff\xfe\x00\x80 not utf-8 \xc3\x28 \x00\x00",
    bytes(range(256)),
    random.Random(1).randbytes(64 * 1024),
)


async def test_dead_letters_are_kept_byte_for_byte_newest_first(store: Store) -> None:
    received = [DAY0 + timedelta(seconds=k) for k in range(len(UGLY_PAYLOADS))]
    letters = [
        DeadLetter(received_at=at, topic=f"vatio/v1/home/plug-{k}/telemetry", reason=f"reason {k}", payload=p)
        for k, (at, p) in enumerate(zip(received, UGLY_PAYLOADS, strict=True))
    ]
    first = WriteBatch(
        readings=[Reading("plug-0", DAY0, 1, power_w=1.0)],
        sites={"plug-0": "home"},
        last_seen={"plug-0": DAY0},
        dead_letters=letters[:3],
    )
    assert await store.write(first) == WriteResult(inserted=1, duplicates=0, dead_letters=3)
    assert await store.write(WriteBatch(dead_letters=letters[3:])) == WriteResult(0, 0, 1)

    stored = await store.dead_letters()
    assert [(d.received_at, d.topic, d.reason, d.payload) for d in stored] == [
        (d.received_at, d.topic, d.reason, d.payload) for d in reversed(letters)
    ]
    assert all(type(d.payload) is bytes for d in stored)
    ids = {d.id for d in stored}
    assert len(ids) == len(letters)
    assert None not in ids
    assert [d.reason for d in await store.dead_letters(limit=2)] == ["reason 3", "reason 2"]
    assert (await store.stats()).dead_letters == len(letters)


# -- atomicity ---------------------------------------------------------------------


async def store_snapshot(store: Store) -> tuple[object, ...]:
    return (
        await store.stats(),
        await store.list_devices(now=DAY0),
        await store.dead_letters(),
        await store.readings("plug-ok", DAY0 - timedelta(days=1), DAY0 + timedelta(days=1)),
    )


def doomed_batch(readings: list[Reading], payload: bytes = b"\xff\x00") -> WriteBatch:
    return WriteBatch(
        readings=readings,
        sites={"plug-ok": "home-1", "plug-new": "home-2"},
        last_seen={"plug-ok": DAY0 + timedelta(hours=5), "plug-new": DAY0 + timedelta(hours=5)},
        dead_letters=[DeadLetter(received_at=DAY0, topic="vatio/v1/home/x/telemetry", reason="bad", payload=payload)],
    )


async def assert_failed_write_left_no_trace(store: Store, batch: WriteBatch) -> None:
    await write_all(store, metered("plug-ok", DAY0, step_s=60, count=5, power_w=100.0), "home-1")
    before = await store_snapshot(store)
    with pytest.raises(BatchRejectedError):
        await store.write(batch)
    assert await store_snapshot(store) == before
    assert await store.get_device("plug-new") is None
    assert await store.readings("plug-new", DAY0 - timedelta(days=1), DAY0 + timedelta(days=1)) == []

    # The store keeps working after the failure.
    good = metered("plug-new", DAY0, step_s=60, count=61, power_w=600.0)
    assert await write_all(store, good, "home-2") == WriteResult(inserted=61, duplicates=0, dead_letters=0)
    await refresh_all(store)
    [hour] = await store.rollups("plug-new", DAY0, DAY0 + timedelta(hours=1), Resolution.HOUR_1)
    assert hour.energy_wh == pytest.approx(600.0)


async def test_a_failed_write_stores_nothing_of_its_batch(store: Store) -> None:
    readings = [
        *metered("plug-new", DAY0, step_s=60, count=5, power_w=50.0),
        Reading("plug-ok", DAY0 + timedelta(hours=1), 99, power_w=100.0),
        Reading("plug-new", DAY0 + timedelta(hours=1), 99, power_w=cast(float, object())),
    ]
    await assert_failed_write_left_no_trace(store, doomed_batch(readings))


async def test_a_failing_dead_letter_rolls_back_readings_and_sightings(store: Store) -> None:
    readings = metered("plug-new", DAY0, step_s=60, count=5, power_w=50.0)
    await assert_failed_write_left_no_trace(store, doomed_batch(readings, payload=cast(bytes, object())))


async def test_a_non_numeric_measurement_is_rejected(store: Store) -> None:
    readings = [
        *metered("plug-new", DAY0, step_s=60, count=5, power_w=50.0),
        Reading("plug-new", DAY0 + timedelta(hours=1), 99, power_w=cast(float, "1200 W")),
    ]
    await assert_failed_write_left_no_trace(store, doomed_batch(readings))


async def test_last_reading_at_is_the_newest_measurement_whatever_the_hint(store: Store) -> None:
    measured = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    # Replayed a year and a half after it was measured: the device was *seen* now.
    readings = [Reading("replayed", measured - timedelta(days=k), 100 - k, power_w=50.0) for k in range(30)]
    batch = WriteBatch(readings=readings, sites={"replayed": "home"}, last_seen={"replayed": datetime.now(UTC)})
    await store.write(batch)
    device = await store.get_device("replayed")
    assert device is not None
    for hint in (None, device.last_seen, measured, measured - timedelta(days=400)):
        assert await store.last_reading_at("replayed", near=hint) == measured
    assert await store.last_reading_at("nobody") is None

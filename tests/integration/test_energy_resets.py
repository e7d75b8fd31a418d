"""A device whose counter resets mid-day gets correct daily energy (every backend).

Every scenario is a device drawing a known power; the expected daily energy
is power × time, and the counter misbehaviour must not move the day by more
than the energy of one reading interval, nor produce a negative bucket or a
spike.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from vatio.model import EnergyPeriod, Reading, Resolution
from vatio.store.base import Store, write_all

DAY = datetime(2026, 3, 10, tzinfo=UTC)
NEXT_DAY = DAY + timedelta(days=1)
WATTS = 1200.0
STEP = timedelta(minutes=1)
#: Energy of one reading interval at WATTS.
INTERVAL_WH = WATTS * STEP.total_seconds() / 3600.0
FULL_DAY_WH = WATTS * 24


def minute_instants(start: datetime, end: datetime) -> list[datetime]:
    """Every minute from ``start`` through ``end`` inclusive."""
    count = int((end - start) / STEP) + 1
    return [start + k * STEP for k in range(count)]


#: Readings from an hour before the day to an hour after it, so every interval of the day is closed.
AROUND_DAY = minute_instants(DAY - timedelta(hours=1), NEXT_DAY + timedelta(hours=1))


def counter_device(
    device_id: str, counter_at: Callable[[int, datetime], float], instants: list[datetime] = AROUND_DAY
) -> list[Reading]:
    """Constant WATTS, with the counter value of reading ``i`` at ``ts`` given by ``counter_at``."""
    return [Reading(device_id, ts, i, power_w=WATTS, energy_wh=counter_at(i, ts)) for i, ts in enumerate(instants)]


async def refresh_all(store: Store) -> None:
    for _ in range(100):
        if await store.refresh_rollups() == 0:
            return
    pytest.fail("refresh_rollups never drained the dirty ranges")


async def day_energy(store: Store, device_id: str, day: datetime = DAY) -> float:
    buckets = await store.energy(device_id, day, day + timedelta(days=1), EnergyPeriod.DAY)
    assert [b.start for b in buckets] == [day]
    return buckets[0].energy_wh


async def assert_no_negative_bucket_or_spike(store: Store, device_id: str) -> None:
    minutes = await store.rollups(device_id, DAY, NEXT_DAY, Resolution.MIN_1)
    assert minutes, "no 1-minute rollups at all"
    assert min(m.energy_wh for m in minutes) >= 0.0
    assert max(m.energy_wh for m in minutes) <= INTERVAL_WH + 1e-6
    hours = await store.rollups(device_id, DAY, NEXT_DAY, Resolution.HOUR_1)
    assert all(0.0 <= h.energy_wh <= WATTS + 1e-6 for h in hours)


async def store_day(store: Store, readings: list[Reading]) -> None:
    await write_all(store, readings, "home")
    await refresh_all(store)


RESET_AT = DAY + timedelta(hours=13, minutes=37)


def resets_at_1337(i: int, ts: datetime) -> float:
    """50 kWh counter growing 20 Wh a minute that restarts from 0 at 13:37."""
    if ts < RESET_AT:
        return 50_000.0 + INTERVAL_WH * i
    return INTERVAL_WH * ((ts - RESET_AT) // STEP)


async def test_a_counter_reset_mid_day_keeps_the_daily_energy(store: Store) -> None:
    await store_day(store, counter_device("plug", resets_at_1337))
    # The reset reading shows 0: the minute before it is the only energy the counter lost.
    assert await day_energy(store, "plug") == pytest.approx(FULL_DAY_WH, abs=INTERVAL_WH + 1e-6)
    await assert_no_negative_bucket_or_spike(store, "plug")
    [hour] = await store.rollups("plug", DAY + timedelta(hours=14), DAY + timedelta(hours=15), Resolution.HOUR_1)
    assert hour.energy_wh == pytest.approx(WATTS)


async def test_a_counter_only_reset_keeps_what_was_counted_since_zero(store: Store) -> None:
    # The meter restarted 24 s before the 13:37 reading and has counted 8 Wh since:
    # only the 12 Wh before the restart are lost to any reading of the counter.
    since_restart_wh = WATTS * 24 / 3600

    def counter(i: int, ts: datetime) -> float:
        if ts < RESET_AT:
            return 50_000.0 + INTERVAL_WH * i
        return since_restart_wh + INTERVAL_WH * ((ts - RESET_AT) // STEP)

    readings = [r._replace(power_w=None) for r in counter_device("meter", counter)]
    await store_day(store, readings)
    lost_wh = INTERVAL_WH - since_restart_wh
    assert await day_energy(store, "meter") == pytest.approx(FULL_DAY_WH - lost_wh)
    await assert_no_negative_bucket_or_spike(store, "meter")


async def test_a_reset_written_out_of_order_gives_the_same_day(store: Store) -> None:
    readings = counter_device("plug", resets_at_1337)
    chunks = [readings[k : k + 97] for k in range(0, len(readings), 97)]
    random.Random(13).shuffle(chunks)
    for chunk in chunks:
        await store_day(store, chunk)
    assert await day_energy(store, "plug") == pytest.approx(FULL_DAY_WH, abs=INTERVAL_WH + 1e-6)
    await assert_no_negative_bucket_or_spike(store, "plug")


@pytest.mark.parametrize(
    ("new_counter_wh", "exact"),
    [
        pytest.param(12.0, False, id="new-meter-reads-12"),
        pytest.param(3_000_000.0, True, id="lower-large-value"),
        pytest.param(9_000_000.0, True, id="higher-large-value"),
    ],
)
async def test_a_meter_replacement_keeps_the_daily_energy(store: Store, new_counter_wh: float, exact: bool) -> None:
    replaced_at = DAY + timedelta(hours=9, minutes=12)

    def counter(i: int, ts: datetime) -> float:
        if ts < replaced_at:
            return 5_000_000.0 - INTERVAL_WH * ((replaced_at - ts) // STEP - 1)
        return new_counter_wh + INTERVAL_WH * ((ts - replaced_at) // STEP)

    readings = counter_device("meter", counter)
    assert readings[0].energy_wh is not None
    await store_day(store, readings)
    energy = await day_energy(store, "meter")
    assert energy == pytest.approx(FULL_DAY_WH, abs=INTERVAL_WH + 1e-6)
    if exact:
        # The counter says nothing for that interval; integrated power fills it in exactly.
        assert energy == pytest.approx(FULL_DAY_WH)
    await assert_no_negative_bucket_or_spike(store, "meter")


async def test_a_single_zero_glitch_makes_no_spike(store: Store) -> None:
    glitch_at = DAY + timedelta(hours=9, minutes=15)

    def counter(i: int, ts: datetime) -> float:
        return 0.0 if ts == glitch_at else 1_234_567.0 + INTERVAL_WH * i

    await store_day(store, counter_device("meter", counter))
    assert await day_energy(store, "meter") == pytest.approx(FULL_DAY_WH, abs=INTERVAL_WH + 1e-6)
    await assert_no_negative_bucket_or_spike(store, "meter")


async def test_a_power_only_device_gets_integrated_energy(store: Store) -> None:
    readings = [Reading("plug", ts, i, power_w=WATTS) for i, ts in enumerate(AROUND_DAY)]
    await store_day(store, readings)
    assert await day_energy(store, "plug") == pytest.approx(FULL_DAY_WH)
    await assert_no_negative_bucket_or_spike(store, "plug")


async def test_a_gap_in_power_only_data_counts_as_unknown(store: Store) -> None:
    gap_start, gap_end = DAY + timedelta(hours=10), DAY + timedelta(hours=13)
    readings = [
        Reading("plug", ts, i, power_w=WATTS) for i, ts in enumerate(AROUND_DAY) if not gap_start < ts < gap_end
    ]
    await store_day(store, readings)
    # No energy is invented for the three silent hours.
    assert await day_energy(store, "plug") == pytest.approx(WATTS * (24 - 3))
    hours = await store.rollups("plug", gap_start, gap_end, Resolution.HOUR_1)
    assert sum(h.energy_wh for h in hours) == pytest.approx(0.0)
    await assert_no_negative_bucket_or_spike(store, "plug")


async def test_the_interval_ending_at_midnight_belongs_to_the_previous_day(store: Store) -> None:
    # Counter readings every 10 minutes; each interval has its own energy.
    ticks = [NEXT_DAY + timedelta(minutes=m) for m in (-20, -10, 0, 10, 20)]
    deltas = [0.0, 11.0, 13.0, 17.0, 19.0]  # energy of the interval ending at each tick
    counters = [10_000.0 + sum(deltas[: k + 1]) for k in range(len(ticks))]
    await store_day(store, [Reading("meter", ts, None, energy_wh=c) for ts, c in zip(ticks, counters, strict=True)])
    assert await day_energy(store, "meter", DAY) == pytest.approx(11.0 + 13.0)
    assert await day_energy(store, "meter", NEXT_DAY) == pytest.approx(17.0 + 19.0)


async def test_a_power_only_interval_ending_at_midnight_belongs_to_the_previous_day(store: Store) -> None:
    # 600 W until midnight, 2400 W from 00:05: a linear ramp in between.
    ticks = [NEXT_DAY + timedelta(minutes=m) for m in (-5, 0, 5, 10)]
    powers = [600.0, 600.0, 2400.0, 2400.0]
    await store_day(store, [Reading("plug", ts, None, power_w=p) for ts, p in zip(ticks, powers, strict=True)])
    five_minutes_h = 5 / 60
    assert await day_energy(store, "plug", DAY) == pytest.approx(600.0 * five_minutes_h)
    assert await day_energy(store, "plug", NEXT_DAY) == pytest.approx((1500.0 + 2400.0) * five_minutes_h)


@pytest.mark.parametrize("late_first", [False, True])
async def test_an_outage_longer_than_the_counter_reach_still_counts_its_energy(store: Store, late_first: bool) -> None:
    """Three days without readings: the counter's advance lands in the day the meter came back.

    The rollup refresh looks for neighbours within a day first; the outage is
    longer, so this proves the unbounded fall-back still finds them, whichever
    side of the outage is written first.
    """
    before = counter_device(
        "outage", lambda i, ts: 1000.0 + i * INTERVAL_WH, minute_instants(DAY, DAY + timedelta(hours=1))
    )
    back_at = DAY + timedelta(days=3, hours=1)
    last_wh = before[-1].energy_wh
    assert last_wh is not None
    resumed_wh = last_wh + 5000.0
    after = [
        Reading("outage", back_at + k * STEP, 1000 + k, power_w=WATTS, energy_wh=resumed_wh + k * INTERVAL_WH)
        for k in range(60)
    ]
    for part in (after, before) if late_first else (before, after):
        await write_all(store, part, "home")
        await refresh_all(store)
    back_day = datetime(back_at.year, back_at.month, back_at.day, tzinfo=UTC)
    # The day of return holds the 5 kWh the counter advanced during the outage, plus its own hour.
    assert await day_energy(store, "outage", back_day) == pytest.approx(5000.0 + 59 * INTERVAL_WH)
    assert await day_energy(store, "outage", DAY) == pytest.approx(60 * INTERVAL_WH)

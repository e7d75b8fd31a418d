"""Reading series from PostgreSQL: raw readings, rollups, energy, and the rollup refresh.

Mixed into :class:`~vatio.store.postgres.PostgresStore` (needs ``_get_pool``
and ``policy``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import numpy as np

from vatio.model import EnergyBucket, EnergyPeriod, Reading, Resolution, RollupRow
from vatio.model.instants import from_ms, to_ms
from vatio.store.energy import EnergyPolicy, minute_rollups
from vatio.store.postgres_common import COLS, unavailable_as_error
from vatio.store.rollup import (
    COUNTER_REACH_MS,
    DERIVED_TIERS,
    energy_buckets,
    local_date_buckets,
    minute_window,
    resolution_seconds,
    tier_span,
    zone,
)

#: The smallest tier (seconds) the partial covering index ``rollups_coarse`` holds.
COARSE_TIER = 900


def _tier_is(resolution: Resolution) -> str:
    """``tier = N`` with N written into the SQL, not bound.

    A bound ``$1`` lets PostgreSQL switch to a generic plan after five runs, and a
    generic plan cannot prove ``tier >= 900``, so it would never use the partial
    index. N is an ``int`` from a fixed table, never user text.
    """
    return f"tier = {int(resolution_seconds(resolution))}"


def rollups_sql(resolution: Resolution) -> str:
    """One device's rollup rows of a tier in ``[$2, $3)``, ``$1`` the device (append a LIMIT at will)."""
    return (
        "SELECT device_id, bucket, samples, power_count, power_sum, power_min, power_max, "
        f"energy_wh FROM rollups WHERE {_tier_is(resolution)} AND device_id = $1 AND bucket >= $2 "
        "AND bucket < $3 ORDER BY bucket"
    )


#: One device's energy in ``[$2, $3)`` by local ``$4`` (day, month…) in zone ``$5``,
#: summed from the hourly rows by the local date each starts on, in bucket order
#: as ``energy_buckets`` sums: a year is 365 rows to send, not 8,760.
LOCAL_ENERGY_SQL = (
    "SELECT date_trunc($4, bucket AT TIME ZONE $5)::date, sum(energy_wh ORDER BY bucket) "
    f"FROM rollups WHERE {_tier_is(Resolution.HOUR_1)} AND device_id = $1 AND bucket >= $2 "
    "AND bucket < $3 GROUP BY 1 ORDER BY 1"
)


class PostgresSeriesMixin:
    policy: EnergyPolicy

    async def _get_pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    async def last_reading_at(self, device_id: str, *, near: datetime | None = None) -> datetime | None:
        pool = await self._get_pool()
        latest = "SELECT max(ts) FROM readings WHERE device_id = $1"
        if near is not None:
            # Readings are at most a day ahead of when they arrive (the ingest guard): looking
            # around the hint first plans a few daily partitions, not the whole year.
            found = await pool.fetchval(latest + " AND ts >= $2", device_id, near - timedelta(days=2))
            if found is not None:
                return found  # type: ignore[no-any-return]
        return await pool.fetchval(latest, device_id)  # type: ignore[no-any-return]

    async def readings(
        self, device_id: str, start: datetime, end: datetime, *, limit: int | None = None
    ) -> list[Reading]:
        pool = await self._get_pool()
        if limit is None:
            return await _readings_in(pool, device_id, start, end, None)
        # The first `limit` readings of a long range mostly lie in its first days, and
        # planning a query over a year of daily partitions takes longer than running
        # it: windows that double from one day plan a few partitions each.
        found: list[Reading] = []
        lo, width = start, timedelta(days=1)
        while lo < end and len(found) < limit:
            hi = min(end, lo + width)
            found += await _readings_in(pool, device_id, lo, hi, limit - len(found))
            lo, width = hi, width * 2
        return found

    async def rollups(
        self, device_id: str, start: datetime, end: datetime, resolution: Resolution, *, limit: int | None = None
    ) -> list[RollupRow]:
        pool = await self._get_pool()
        rows = await pool.fetch(rollups_sql(resolution) + " LIMIT $4", device_id, start, end, limit)
        return [RollupRow(*row) for row in rows]

    async def energy(
        self,
        device_id: str,
        start: datetime,
        end: datetime,
        period: EnergyPeriod,
        *,
        tz: str = "UTC",
    ) -> list[EnergyBucket]:
        if period is EnergyPeriod.HOUR:
            return energy_buckets(await self.rollups(device_id, start, end, Resolution.HOUR_1), period, tz)
        zone(tz)  # an unknown zone is a ConfigError before PostgreSQL sees the name
        pool = await self._get_pool()
        try:
            totals = await pool.fetch(LOCAL_ENERGY_SQL, device_id, start, end, period.value, tz)
        except asyncpg.InvalidParameterValueError:
            # A zone Python's tz database knows and this server's does not.
            return energy_buckets(await self.rollups(device_id, start, end, Resolution.HOUR_1), period, tz)
        return local_date_buckets(totals, tz)

    # -- rollups --------------------------------------------------------------
    async def refresh_rollups(self, *, max_ranges: int = 1000) -> int:
        pool = await self._get_pool()
        async with unavailable_as_error(), pool.acquire() as conn, conn.transaction():
            # SKIP LOCKED lets several workers drain the queue without blocking each other.
            ranges = await conn.fetch(
                "WITH claimed AS (DELETE FROM rollup_dirty WHERE id IN (SELECT id FROM rollup_dirty "
                "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING device_id, start_ms, end_ms) "
                "SELECT device_id, min(start_ms) AS lo, max(end_ms) AS hi FROM claimed "
                "GROUP BY device_id, start_ms / 86400000",
                max_ranges,
            )
            for device_id, lo, hi in ranges:
                await self._recompute(conn, device_id, lo, hi)
        return len(ranges)

    async def _recompute(self, conn: asyncpg.Connection, device_id: str, start_ms: int, end_ms: int) -> None:
        # Two workers recomputing the same device would interleave delete and insert.
        await conn.execute("SELECT pg_advisory_xact_lock(7203, hashtext($1))", device_id)
        end = from_ms(end_ms)
        reach = timedelta(milliseconds=COUNTER_REACH_MS)
        # Lookups bounded by the counter's reach plan a few daily partitions, not
        # every partition of the year; the unbounded ones run only when the
        # bounded ones find nothing (after an outage longer than the reach).
        nexts = await conn.fetchrow(
            "SELECT (SELECT min(ts) FROM readings WHERE device_id = $1 AND ts > $2 AND ts <= $3), "
            "(SELECT min(ts) FROM readings WHERE device_id = $1 AND ts > $2 AND ts <= $3 "
            "AND energy_wh IS NOT NULL)",
            device_id,
            end,
            end + reach,
        )
        next_any, next_counter = nexts
        if next_any is None:
            next_any = await conn.fetchval(
                "SELECT min(ts) FROM readings WHERE device_id = $1 AND ts > $2", device_id, end
            )
        first, last = minute_window(
            start_ms, end_ms, *(None if t is None else to_ms(t) for t in (next_any, next_counter))
        )
        window_start, window_end = from_ms(first), from_ms(last + 60_000)
        # The predecessor, and the last counter reading within reach, so a
        # window without counter readings still knows the device has a counter.
        rows = await conn.fetch(
            "(SELECT ts, power_w, energy_wh, energy_export_wh FROM readings WHERE device_id = $1 AND ts < $2 "
            "AND ts >= $4 AND energy_wh IS NOT NULL ORDER BY ts DESC LIMIT 1) UNION "
            "(SELECT ts, power_w, energy_wh, energy_export_wh FROM readings WHERE device_id = $1 AND ts < $2 "
            "AND ts >= $4 ORDER BY ts DESC LIMIT 1) UNION ALL (SELECT ts, power_w, energy_wh, energy_export_wh "
            "FROM readings WHERE device_id = $1 AND ts >= $2 AND ts <= $3) ORDER BY 1",
            device_id,
            window_start,
            window_end,
            window_start - reach,
        )
        if not rows or rows[0][0] >= window_start:
            # No predecessor within reach: the latest one, however old, still
            # carries the counter across the outage.
            rows = [
                *await conn.fetch(
                    "SELECT ts, power_w, energy_wh, energy_export_wh FROM readings WHERE device_id = $1 "
                    "AND ts < $2 ORDER BY ts DESC LIMIT 1",
                    device_id,
                    window_start,
                ),
                *rows,
            ]
        ts = np.array([to_ms(r[0]) for r in rows], dtype=np.int64)
        values = np.array([(r[1], r[2], r[3]) for r in rows], dtype=np.float64).reshape(-1, 3)
        minute = minute_rollups(
            device_id,
            ts,
            values[:, 0],
            values[:, 1],
            first_bucket_ms=first,
            last_bucket_ms=last,
            policy=self.policy,
            export_wh=values[:, 2],
        )
        await conn.execute(
            "DELETE FROM rollups WHERE tier = 60 AND device_id = $1 AND bucket >= $2 AND bucket <= $3",
            device_id,
            window_start,
            from_ms(last),
        )
        await conn.copy_records_to_table(
            "rollups",
            records=[
                (
                    60,
                    device_id,
                    r.bucket,
                    r.samples,
                    r.power_count,
                    r.power_sum_w,
                    r.power_min_w,
                    r.power_max_w,
                    r.energy_wh,
                    r.energy_export_wh,
                )
                for r in minute
            ],
        )
        for tier in DERIVED_TIERS:
            lo, hi = tier_span(first, last, tier)
            await conn.execute(
                "DELETE FROM rollups WHERE tier = $1 AND device_id = $2 AND bucket >= $3 AND bucket <= $4",
                tier,
                device_id,
                from_ms(lo * 1000),
                from_ms(hi * 1000),
            )
            await conn.execute(
                "INSERT INTO rollups SELECT $1::integer, device_id, "
                "date_bin(make_interval(secs => $1::integer), bucket, timestamptz '1970-01-01 00:00+00') "
                "AS b, "
                "sum(samples), sum(power_count), sum(power_sum), min(power_min), max(power_max), "
                "sum(energy_wh), sum(energy_export_wh) FROM rollups WHERE tier = 60 AND device_id = $2 "
                "AND bucket >= $3 AND bucket < $4 GROUP BY device_id, b",
                tier,
                device_id,
                from_ms(lo * 1000),
                from_ms((hi + tier) * 1000),
            )


async def _readings_in(
    pool: asyncpg.Pool, device_id: str, start: datetime, end: datetime, limit: int | None
) -> list[Reading]:
    rows = await pool.fetch(
        f"SELECT {COLS} FROM readings WHERE device_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4",
        device_id,
        start,
        end,
        limit,
    )
    return [Reading(*row) for row in rows]

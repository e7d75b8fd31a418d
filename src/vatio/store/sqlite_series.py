"""Reading series from SQLite: raw readings, rollups, energy, and the rollup refresh.

Mixed into :class:`~vatio.store.sqlite.SqliteStore` (needs ``_run``, ``_db``
and ``policy``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from vatio.model import EnergyBucket, EnergyPeriod, Reading, Resolution, RollupRow
from vatio.model.instants import from_ms, to_ms
from vatio.store.energy import EnergyPolicy, minute_rollups
from vatio.store.rollup import (
    COUNTER_REACH_MS,
    DERIVED_TIERS,
    energy_buckets,
    minute_window,
    resolution_seconds,
    tier_span,
)

T = TypeVar("T")

#: The readings table's columns: a stored row is a ``Reading`` (``Reading(*row)``).
READING_COLUMNS = ", ".join(Reading._fields)


class SqliteSeriesMixin:
    policy: EnergyPolicy

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def _db(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def last_reading_at(self, device_id: str, *, near: datetime | None = None) -> datetime | None:
        def _query() -> int | None:
            row = self._db().execute("SELECT max(ts) FROM readings WHERE device_id = ?", (device_id,)).fetchone()
            return None if row is None else row[0]

        ms = await self._run(_query)
        return None if ms is None else from_ms(ms)

    async def readings(
        self, device_id: str, start: datetime, end: datetime, *, limit: int | None = None
    ) -> list[Reading]:
        def _query() -> list[Reading]:
            sql = f"SELECT {READING_COLUMNS} FROM readings WHERE device_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
            params: tuple[Any, ...] = (device_id, to_ms(start), to_ms(end))
            if limit is not None:
                sql += " LIMIT ?"
                params += (limit,)
            return [Reading(row[0], from_ms(row[1]), *row[2:]) for row in self._db().execute(sql, params)]

        return await self._run(_query)

    async def rollups(
        self, device_id: str, start: datetime, end: datetime, resolution: Resolution, *, limit: int | None = None
    ) -> list[RollupRow]:
        tier = resolution_seconds(resolution)
        lo, hi = to_ms(start) // 1000, -(-to_ms(end) // 1000)

        def _query() -> list[RollupRow]:
            cursor = self._db().execute(
                "SELECT bucket, samples, power_count, power_sum, power_min, power_max, energy_wh "
                "FROM rollups WHERE tier = ? AND device_id = ? AND bucket >= ? AND bucket < ? "
                "ORDER BY bucket LIMIT ?",
                (tier, device_id, lo, hi, -1 if limit is None else limit),
            )
            return [RollupRow(device_id, from_ms(row[0] * 1000), *row[1:]) for row in cursor]

        return await self._run(_query)

    async def energy(
        self,
        device_id: str,
        start: datetime,
        end: datetime,
        period: EnergyPeriod,
        *,
        tz: str = "UTC",
    ) -> list[EnergyBucket]:
        rows = await self.rollups(device_id, start, end, Resolution.HOUR_1)
        return energy_buckets(rows, period, tz)

    # -- rollups --------------------------------------------------------------
    async def refresh_rollups(self, *, max_ranges: int = 1000) -> int:
        return await self._run(self._refresh_rollups, max_ranges)

    def _refresh_rollups(self, max_ranges: int) -> int:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            top = db.execute("SELECT id FROM rollup_dirty ORDER BY id LIMIT 1 OFFSET ?", (max_ranges - 1,)).fetchone()
            limit_id = top[0] if top else db.execute("SELECT max(id) FROM rollup_dirty").fetchone()[0]
            if limit_id is None:
                db.execute("COMMIT")
                return 0
            # One range per device and day keeps a single late reading from
            # widening today's range back to last month.
            ranges = db.execute(
                "SELECT device_id, min(start_ms), max(end_ms) FROM rollup_dirty WHERE id <= ? "
                "GROUP BY device_id, start_ms / 86400000",
                (limit_id,),
            ).fetchall()
            for device_id, start_ms, end_ms in ranges:
                self._recompute(db, device_id, start_ms, end_ms)
            db.execute("DELETE FROM rollup_dirty WHERE id <= ?", (limit_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(ranges)

    def _recompute(self, db: sqlite3.Connection, device_id: str, start_ms: int, end_ms: int) -> None:
        def one(sql: str, *params: int) -> Any:
            return db.execute(sql, (device_id, *params)).fetchone()[0]

        first, last = minute_window(
            start_ms,
            end_ms,
            one("SELECT min(ts) FROM readings WHERE device_id = ? AND ts > ?", end_ms),
            one(
                "SELECT min(ts) FROM readings WHERE device_id = ? AND ts > ? AND ts <= ? AND energy_wh IS NOT NULL",
                end_ms,
                end_ms + COUNTER_REACH_MS,
            ),
        )
        cols = "ts, power_w, energy_wh, energy_export_wh"
        before = f"SELECT {cols} FROM readings WHERE device_id = ? AND ts < ?"
        # The predecessor, and the last counter reading within reach, so a
        # window without counter readings still knows the device has a counter.
        predecessors = db.execute(
            f"{before} AND ts >= ? AND energy_wh IS NOT NULL ORDER BY ts DESC LIMIT 1",
            (device_id, first, first - COUNTER_REACH_MS),
        ).fetchall()
        predecessors += db.execute(f"{before} ORDER BY ts DESC LIMIT 1", (device_id, first)).fetchall()
        rows = (
            sorted(set(predecessors))
            + db.execute(
                f"SELECT {cols} FROM readings WHERE device_id = ? AND ts >= ? AND ts <= ? ORDER BY ts",
                (device_id, first, last + 60_000),
            ).fetchall()
        )
        data = np.array(rows, dtype=np.float64).reshape(-1, 4)
        minute = minute_rollups(
            device_id,
            data[:, 0].astype(np.int64),
            data[:, 1],
            data[:, 2],
            first_bucket_ms=first,
            last_bucket_ms=last,
            policy=self.policy,
            export_wh=data[:, 3],
        )
        db.execute(
            "DELETE FROM rollups WHERE tier = 60 AND device_id = ? AND bucket >= ? AND bucket <= ?",
            (device_id, first // 1000, last // 1000),
        )
        db.executemany(
            "INSERT INTO rollups VALUES (60, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    device_id,
                    to_ms(r.bucket) // 1000,
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
            db.execute(
                "DELETE FROM rollups WHERE tier = ? AND device_id = ? AND bucket >= ? AND bucket <= ?",
                (tier, device_id, lo, hi),
            )
            db.execute(
                "INSERT INTO rollups SELECT ?, device_id, bucket - bucket % ? AS b, sum(samples), "
                "sum(power_count), sum(power_sum), min(power_min), max(power_max), sum(energy_wh), "
                "sum(energy_export_wh) FROM rollups WHERE tier = 60 AND device_id = ? AND bucket >= ? AND bucket < ? "
                "GROUP BY b",
                (tier, tier, device_id, lo, hi + tier),
            )

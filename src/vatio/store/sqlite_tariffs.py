"""Sites, tariffs with effective dates and their schedules in SQLite (migration 4)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from vatio.errors import NotFoundError
from vatio.model import Resolution, Site, SiteBucket, Tariff
from vatio.model.instants import from_ms, to_ms
from vatio.store.rollup import resolution_seconds
from vatio.store.tariffs_sql import (
    DELETE_TARIFF,
    SELECT_SITES,
    SELECT_TARIFFS,
    SQLITE_DEVICES,
    SQLITE_HOURS,
    UPSERT_SITE,
    UPSERT_TARIFF,
    migration,
    qmarks,
    site_bucket_from_row,
    site_from_row,
    site_params,
    site_rollups_sql,
    tariff_from_row,
    tariff_params,
)

T = TypeVar("T")

MIGRATION: list[str] = migration(real="REAL", serial="INTEGER PRIMARY KEY AUTOINCREMENT", day="TEXT")


class SqliteTariffsMixin:
    """Mixed into :class:`~vatio.store.sqlite.SqliteStore` (needs ``_run`` and ``_db``)."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def _db(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def put_site(self, site: Site) -> Site:
        await self._run(lambda: self._db().execute(qmarks(UPSERT_SITE), site_params(site)))
        return site

    async def get_site(self, site_id: str) -> Site | None:
        def _query() -> list[Any]:
            return self._db().execute(qmarks(SELECT_SITES + " WHERE site_id = $1"), (site_id,)).fetchall()

        rows = await self._run(_query)
        return site_from_row(rows[0]) if rows else None

    async def list_sites(self) -> list[Site]:
        rows = await self._run(lambda: self._db().execute(SELECT_SITES + " ORDER BY site_id").fetchall())
        return [site_from_row(row) for row in rows]

    async def put_tariff(self, site_id: str, tariff: Tariff) -> Tariff:
        def _upsert() -> int:
            row = self._db().execute(qmarks(UPSERT_TARIFF), tariff_params(site_id, tariff, date.isoformat)).fetchone()
            return int(row[0])

        tariff_id = await self._run(_upsert)
        return next(t for t in await self.tariffs(site_id) if t.id == tariff_id)

    async def tariffs(self, site_id: str) -> list[Tariff]:
        rows = await self._run(lambda: self._db().execute(qmarks(SELECT_TARIFFS), (site_id,)).fetchall())
        return [tariff_from_row(row) for row in rows]

    async def delete_tariff(self, site_id: str, tariff_id: int) -> None:
        cursor = await self._run(lambda: self._db().execute(qmarks(DELETE_TARIFF), (site_id, tariff_id)))
        if cursor.rowcount == 0:
            raise NotFoundError("tariff", f"{site_id}/{tariff_id}")

    async def site_rollups(
        self,
        site_id: str,
        start: datetime,
        end: datetime,
        resolution: Resolution,
        devices: Sequence[str] | None = None,
        *,
        utc_hours: Collection[int] | None = None,
    ) -> list[SiteBucket]:
        tier = resolution_seconds(resolution)
        lo, hi = to_ms(start) // 1000, -(-to_ms(end) // 1000)
        sql = qmarks(site_rollups_sql(devices, SQLITE_DEVICES, hours=utc_hours, hour_filter=SQLITE_HOURS))
        params: tuple[Any, ...] = (site_id, tier, lo, hi) + (() if devices is None else (json.dumps(list(devices)),))
        if utc_hours is not None:
            params += (json.dumps(sorted(utc_hours)),)

        def _query() -> list[Any]:
            return self._db().execute(sql, params).fetchall()

        return [site_bucket_from_row(row, from_ms(row[0] * 1000)) for row in await self._run(_query)]

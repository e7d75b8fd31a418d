"""Sites, tariffs with effective dates and their schedules in PostgreSQL (migration 4)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from vatio.errors import NotFoundError
from vatio.model import Resolution, Site, SiteBucket, Tariff
from vatio.store.postgres_series import COARSE_TIER
from vatio.store.rollup import resolution_seconds
from vatio.store.tariffs_sql import (
    DELETE_TARIFF,
    POSTGRES_DEVICES,
    POSTGRES_HOURS,
    SELECT_SITES,
    SELECT_TARIFFS,
    UPSERT_SITE,
    UPSERT_TARIFF,
    migration,
    site_bucket_from_row,
    site_from_row,
    site_params,
    site_rollups_sql,
    tariff_from_row,
    tariff_params,
)


def site_rollups_postgres_sql(devices: Sequence[str] | None, tier: int, hours: Collection[int] | None = None) -> str:
    """:func:`~vatio.store.tariffs_sql.site_rollups_sql` for PostgreSQL, ``tier`` bound as ``$2``.

    For a coarse tier ``tier >= 900`` is written out too, so that a generic plan can still
    prove the partial index ``rollups_coarse`` applies.
    """
    hint = f" AND r.tier >= {COARSE_TIER}" if tier >= COARSE_TIER else ""
    return site_rollups_sql(devices, POSTGRES_DEVICES, hint, hours=hours, hour_filter=POSTGRES_HOURS)


MIGRATION: list[str] = migration(real="double precision", serial="bigserial PRIMARY KEY", day="date")


def _same(day: date) -> date:
    return day


class PostgresTariffsMixin:
    """Mixed into :class:`~vatio.store.postgres.PostgresStore` (needs ``_get_pool``)."""

    async def _get_pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    async def put_site(self, site: Site) -> Site:
        pool = await self._get_pool()
        await pool.execute(UPSERT_SITE, *site_params(site))
        return site

    async def get_site(self, site_id: str) -> Site | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(SELECT_SITES + " WHERE site_id = $1", site_id)
        return site_from_row(row) if row else None

    async def list_sites(self) -> list[Site]:
        pool = await self._get_pool()
        return [site_from_row(row) for row in await pool.fetch(SELECT_SITES + " ORDER BY site_id")]

    async def put_tariff(self, site_id: str, tariff: Tariff) -> Tariff:
        pool = await self._get_pool()
        tariff_id = await pool.fetchval(UPSERT_TARIFF, *tariff_params(site_id, tariff, _same))
        return next(t for t in await self.tariffs(site_id) if t.id == tariff_id)

    async def tariffs(self, site_id: str) -> list[Tariff]:
        pool = await self._get_pool()
        return [tariff_from_row(row) for row in await pool.fetch(SELECT_TARIFFS, site_id)]

    async def delete_tariff(self, site_id: str, tariff_id: int) -> None:
        pool = await self._get_pool()
        status = await pool.execute(DELETE_TARIFF, site_id, tariff_id)
        if status.endswith(" 0"):
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
        pool = await self._get_pool()
        extra: tuple[Any, ...] = () if devices is None else (list(devices),)
        if utc_hours is not None:
            extra += (sorted(utc_hours),)
        tier = resolution_seconds(resolution)
        sql = site_rollups_postgres_sql(devices, tier, utc_hours)
        rows = await pool.fetch(sql, site_id, tier, start, end, *extra)
        return [site_bucket_from_row(row, row[0]) for row in rows]

"""SQL and row mapping shared by the SQLite and PostgreSQL site and tariff mixins (migration 4).

Statements are written once with ``$n`` placeholders (PostgreSQL's); SQLite
gets them through :func:`qmarks`. Rates are kept as a JSON document: a tariff
is read and written whole, never queried by rate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from typing import Any

from vatio.model import Rate, Site, SiteBucket, Tariff


def migration(*, real: str, serial: str, day: str) -> list[str]:
    """Migration 4: site settings, tariffs, and the export energy of every rollup bucket."""
    return [
        f"""CREATE TABLE sites (
            site_id TEXT PRIMARY KEY, name TEXT, tz TEXT NOT NULL, currency TEXT NOT NULL,
            peak_limit_kw {real}, main_meters TEXT NOT NULL DEFAULT '[]')""",
        f"""CREATE TABLE tariffs (
            id {serial}, site_id TEXT NOT NULL, name TEXT NOT NULL, currency TEXT NOT NULL,
            effective_from {day} NOT NULL, standing_charge_per_day {real} NOT NULL,
            export_price_per_kwh {real}, rates TEXT NOT NULL,
            UNIQUE (site_id, effective_from))""",
        f"ALTER TABLE rollups ADD COLUMN energy_export_wh {real} NOT NULL DEFAULT 0",
    ]


SITE_COLUMNS = "site_id, name, tz, currency, peak_limit_kw, main_meters"
TARIFF_COLUMNS = "id, name, currency, effective_from, standing_charge_per_day, export_price_per_kwh, rates"

UPSERT_SITE = (
    f"INSERT INTO sites ({SITE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (site_id) DO UPDATE SET "
    "name = excluded.name, tz = excluded.tz, currency = excluded.currency, peak_limit_kw = excluded.peak_limit_kw, "
    "main_meters = excluded.main_meters"
)
SELECT_SITES = f"SELECT {SITE_COLUMNS} FROM sites"
# A tariff re-posted for the same start date replaces the old one in place: costs follow it.
UPSERT_TARIFF = (
    "INSERT INTO tariffs (site_id, name, currency, effective_from, standing_charge_per_day, "
    "export_price_per_kwh, rates) VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT (site_id, effective_from) DO UPDATE SET name = excluded.name, currency = excluded.currency, "
    "standing_charge_per_day = excluded.standing_charge_per_day, "
    "export_price_per_kwh = excluded.export_price_per_kwh, rates = excluded.rates RETURNING id"
)
SELECT_TARIFFS = f"SELECT {TARIFF_COLUMNS} FROM tariffs WHERE site_id = $1 ORDER BY effective_from"
DELETE_TARIFF = "DELETE FROM tariffs WHERE site_id = $1 AND id = $2"
# Per bucket: how many devices reported power, the sum of their mean powers, and energy sums.
SITE_ROLLUPS = (
    "SELECT r.bucket, sum(CASE WHEN r.power_count > 0 THEN 1 ELSE 0 END), "
    "sum(CASE WHEN r.power_count > 0 THEN r.power_sum / r.power_count END), "
    "sum(r.energy_wh), sum(r.energy_export_wh) "
    "FROM rollups r JOIN devices d ON d.device_id = r.device_id "
    "WHERE d.site_id = $1 AND r.tier = $2{tier_hint} AND r.bucket >= $3 AND r.bucket < $4{devices}{hours} "
    "GROUP BY r.bucket ORDER BY r.bucket"
)
#: The device filter of :data:`SITE_ROLLUPS` when only some devices count (a site's main meters):
#: ``$5`` is a JSON array of ids in SQLite, a text array in PostgreSQL.
SQLITE_DEVICES = " AND r.device_id IN (SELECT value FROM json_each($5))"
POSTGRES_DEVICES = " AND r.device_id = ANY($5::text[])"
#: The UTC hour-of-day filter of :data:`SITE_ROLLUPS` (``{n}``: its parameter, the last one):
#: a JSON array of hours in SQLite (buckets in epoch seconds), an int array in PostgreSQL.
SQLITE_HOURS = " AND (r.bucket / 3600) % 24 IN (SELECT value FROM json_each(${n}))"
POSTGRES_HOURS = " AND extract(hour FROM r.bucket AT TIME ZONE 'UTC')::int = ANY(${n}::int[])"


def site_rollups_sql(
    devices: Sequence[str] | None,
    device_filter: str,
    tier_hint: str = "",
    *,
    hours: Collection[int] | None = None,
    hour_filter: str = "",
) -> str:
    """:data:`SITE_ROLLUPS` over every device of the site (``devices`` ``None``) or only over ``devices``.

    ``tier_hint`` is extra SQL on the bound tier (PostgreSQL's partial index, see postgres_tariffs).
    With ``hours``, only buckets starting in those UTC hours of the day, by ``hour_filter``.

    >>> "json_each" in site_rollups_sql(["m"], SQLITE_DEVICES), "{" in site_rollups_sql(None, SQLITE_DEVICES)
    (True, False)
    >>> site_rollups_sql(None, POSTGRES_DEVICES, hours=[23], hour_filter=POSTGRES_HOURS).count("$5::int[]")
    1
    """
    last = 5 if devices is None else 6
    return SITE_ROLLUPS.format(
        devices="" if devices is None else device_filter,
        tier_hint=tier_hint,
        hours="" if hours is None else hour_filter.replace("{n}", str(last)),
    )


def qmarks(sql: str) -> str:
    """The statement with SQLite's ``?`` placeholders (each ``$n`` is used once, in order).

    >>> qmarks("DELETE FROM tariffs WHERE site_id = $1 AND id = $2")
    'DELETE FROM tariffs WHERE site_id = ? AND id = ?'
    """
    return re.sub(r"\$\d+", "?", sql)


def site_params(site: Site) -> tuple[Any, ...]:
    return (site.site_id, site.name, site.tz, site.currency, site.peak_limit_kw, json.dumps(list(site.main_meters)))


def site_from_row(row: Sequence[Any]) -> Site:
    return Site(
        site_id=row[0],
        name=row[1],
        tz=row[2],
        currency=row[3],
        peak_limit_kw=row[4],
        main_meters=tuple(json.loads(row[5] or "[]")),
    )


def rates_json(rates: Sequence[Rate]) -> str:
    return json.dumps(
        [{"days": list(r.days), "start": r.start, "end": r.end, "price_per_kwh": r.price_per_kwh} for r in rates]
    )


def tariff_params(site_id: str, tariff: Tariff, day: Callable[[date], Any]) -> tuple[Any, ...]:
    return (
        site_id,
        tariff.name,
        tariff.currency,
        day(tariff.effective_from),
        tariff.standing_charge_per_day,
        tariff.export_price_per_kwh,
        rates_json(tariff.rates),
    )


def tariff_from_row(row: Sequence[Any]) -> Tariff:
    effective = row[3] if isinstance(row[3], date) else date.fromisoformat(row[3])
    rates = tuple(
        Rate(days=tuple(r["days"]), start=r["start"], end=r["end"], price_per_kwh=r["price_per_kwh"])
        for r in json.loads(row[6])
    )
    return Tariff(
        id=int(row[0]),
        name=row[1],
        currency=row[2],
        effective_from=effective,
        standing_charge_per_day=row[4],
        export_price_per_kwh=row[5],
        rates=rates,
    )


def site_bucket_from_row(row: Sequence[Any], bucket: datetime) -> SiteBucket:
    return SiteBucket(
        bucket=bucket,
        devices=int(row[1]),
        power_w=None if row[2] is None else float(row[2]),
        import_wh=float(row[3]),
        export_wh=float(row[4]),
    )

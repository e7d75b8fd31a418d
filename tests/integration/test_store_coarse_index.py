"""The device page's long reads use the covering index of the coarse rollup tiers.

A year of one device's daily or hourly rollups lies on one heap page per day; on
a cold cache that was 168 ms at p95 in ``vatio bench api-queries``. Migration 5
adds ``rollups_coarse`` so those reads are index-only scans of a few contiguous
pages. The plans are checked under ``force_generic_plan`` too, because asyncpg
prepares statements and PostgreSQL moves to a generic plan after five runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from vatio.model import Resolution
from vatio.store import open_store
from vatio.store.postgres_series import LOCAL_ENERGY_SQL, rollups_sql
from vatio.store.postgres_tariffs import site_rollups_postgres_sql

pytestmark = pytest.mark.integration

START = datetime(2025, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 1, tzinfo=UTC)

# 20 devices × 400 days of 1d, 1h and 15m rows, inserted a day at a time for all
# devices as the rollup refresh writes them (so each device's rows are scattered).
FILL = """
INSERT INTO rollups (tier, device_id, bucket, samples, power_count, power_sum,
                     power_min, power_max, energy_wh, energy_export_wh)
SELECT t.tier, 'd' || dev, day + (k * t.tier) * interval '1 second', 1, 1, 100.0, 1.0, 2.0, 3.0, 0.0
FROM generate_series(timestamptz '2025-01-01', timestamptz '2026-02-04', interval '1 day') AS day,
     (VALUES (86400, 1), (3600, 24), (900, 96)) AS t(tier, n),
     generate_series(0, 19) AS dev,
     generate_series(0, 95) AS k
WHERE k < t.n
ORDER BY day, dev
"""


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


def _literal(value: object) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return f"'{{{','.join(map(str, value))}}}'"
    assert isinstance(value, str)
    assert "'" not in value
    return f"'{value}'"


async def _scans(conn: asyncpg.Connection, sql: str, *args: object) -> list[tuple[str, str]]:
    """The scans of ``sql``'s plan as a server-side prepared statement, under this session's plan_cache_mode.

    (EXPLAIN of a query with bound parameters plans it for those values: never generic.)
    """
    await conn.execute(f"PREPARE q AS {sql}")
    try:
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE q({', '.join(map(_literal, args))})")
    finally:
        await conn.execute("DEALLOCATE q")
    plan = json.loads(raw)[0]["Plan"]
    return [(n["Node Type"], n.get("Index Name", "")) for n in _nodes(plan) if "Scan" in n["Node Type"]]


async def test_year_reads_are_index_only_scans_of_the_coarse_index(fresh_pg_url: str) -> None:
    store = open_store(fresh_pg_url)
    await store.migrate()
    await store.close()
    conn = await asyncpg.connect(fresh_pg_url)
    try:
        await conn.execute(FILL)
        await conn.execute(
            "INSERT INTO devices (device_id, site_id, first_seen, last_seen) "
            "SELECT 'd' || k, CASE WHEN k < 2 THEN 's' ELSE 'other' END, now(), now() FROM generate_series(0, 19) k"
        )
        await conn.execute("VACUUM (ANALYZE) rollups")  # what autovacuum does after a refresh
        year = ("d7", START, END)
        for mode in ("auto", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            for resolution in (Resolution.DAY_1, Resolution.HOUR_1, Resolution.MIN_15):
                scans = await _scans(conn, rollups_sql(resolution), *year)
                assert scans == [("Index Only Scan", "rollups_coarse")], (mode, resolution, scans)
            scans = await _scans(conn, LOCAL_ENERGY_SQL, *year, "day", "Europe/Paris")
            assert scans == [("Index Only Scan", "rollups_coarse")], (mode, scans)
            # A site's hourly rollups (costs): the tier is bound there, and `tier >= 900` written out.
            scans = await _scans(conn, site_rollups_postgres_sql(None, 3600), "s", 3600, START, END)
            assert ("Index Only Scan", "rollups_coarse") in scans, (mode, scans)
            # ... and its quarters of the hours a tariff boundary splits (Economy 7).
            split = site_rollups_postgres_sql(None, 900, [0, 7])
            scans = await _scans(conn, split, "s", 900, START, END, [0, 7])
            assert ("Index Only Scan", "rollups_coarse") in scans, (mode, scans)
        # And the answer is the stored one: 365 daily rows of d7, 8,760 hours summed by day.
        assert len(await conn.fetch(rollups_sql(Resolution.DAY_1), *year)) == 365
        days = await conn.fetch(LOCAL_ENERGY_SQL, *year, "day", "UTC")
        assert len(days) == 365
        assert {row[1] for row in days} == {72.0}
    finally:
        await conn.close()

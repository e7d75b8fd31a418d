"""The API query benchmark's load and query path on a tiny data set, and the energy query it times.

`bench/api_queries.py` is run end to end (store write path, rollup refresh, a
real `vatio api` process, HTTP requests) on 2 devices x 3 days; only the shape
and counts of its JSON are checked, never timings. The PostgreSQL energy query
sums days and months in the database: it must give exactly what the
backend-neutral ``energy_buckets`` gives from the same hourly rollups, DST
nights and half-hour zones included.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from vatio.model import EnergyPeriod, Reading, Resolution
from vatio.store.base import write_all
from vatio.store.postgres import PostgresStore
from vatio.store.rollup import energy_buckets

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench" / "api_queries.py"
QUERIES = (
    "energy_year_daily",
    "history_year",
    "history_week",
    "energy_month_hourly",
    "site_cost_year_whole_hour",
    "site_cost_year_economy_7",
)


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vatio_bench_api_queries", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_loads_rolls_up_and_times_every_query(fresh_pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "api_queries.json"
    argv = ["--devices", "2", "--days", "3", "--db", fresh_pg_url, "--requests", "6", "--warmup", "1"]
    bench = load_bench()
    assert bench.main([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())

    assert (result["devices"], result["days"], result["target_p95_ms"]) == (2, 3, 100.0)
    write, rollups = result["load"]["write"], result["load"]["rollups"]
    assert write["readings"] == 2 * 3 * 1440
    assert rollups["dirty_ranges"] >= 2 * 3
    # 1-minute rows for every minute, plus the 15-minute, hourly and daily tiers.
    assert rollups["rollup_rows"] >= 2 * 3 * (1440 + 96 + 24 + 1) - 2 * (1 + 1 + 1 + 1)
    assert result["storage"]["readings_bytes"] > 0
    assert set(result["queries"]) == set(QUERIES)
    for name in QUERIES:
        query = result["queries"][name]
        assert query["requests"] == 6
        assert 0 < query["p50_ms"] <= query["p95_ms"] <= query["p99_ms"] <= query["max_ms"]
    assert result["queries"]["energy_year_daily"]["items_median"] == 3  # the 3 local days that have data
    # A site's costs: every local day of the range is priced (the standing charge is due without data).
    for name in ("site_cost_year_whole_hour", "site_cost_year_economy_7"):
        assert result["queries"][name]["items_median"] == 3, name
    assert result["queries"]["energy_month_hourly"]["items_median"] >= 3 * 24 - 1

    # A second run against the same database reuses the data instead of loading it again.
    again = asyncio.run(bench.prepare(fresh_pg_url, bench.parse_args(argv), reusable=True))
    assert again["readings_reused"] is True
    assert (again["write"], again["rollups"]) == (write, rollups)


ZONES = ("UTC", "Europe/Paris", "Asia/Kolkata", "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Chatham")


async def test_postgres_day_and_month_energy_equal_energy_buckets(fresh_pg_url: str) -> None:
    store = PostgresStore(fresh_pg_url)
    await store.migrate()
    rng = random.Random(7)
    # Across the October DST night in Europe and the month boundary, with a jagged load.
    start = datetime(2026, 10, 20, tzinfo=UTC)
    counter = 0.0
    readings = []
    for minute in range(14 * 24 * 60 // 5):
        counter += rng.uniform(0.0, 200.0)
        readings.append(Reading("jagged", start + timedelta(minutes=5 * minute), minute, energy_wh=counter))
    await write_all(store, readings, "home")
    while await store.refresh_rollups():
        pass
    try:
        span = (start, start + timedelta(days=14))
        hourly = await store.rollups("jagged", *span, Resolution.HOUR_1)
        for tz in ZONES:
            for period in (EnergyPeriod.DAY, EnergyPeriod.MONTH):
                assert await store.energy("jagged", *span, period, tz=tz) == energy_buckets(hourly, period, tz), tz
    finally:
        await store.close()


async def test_postgres_readings_with_a_limit_over_many_daily_partitions(fresh_pg_url: str) -> None:
    store = PostgresStore(fresh_pg_url)
    await store.migrate()
    start = datetime(2026, 1, 1, 7, 30, tzinfo=UTC)
    # Sparse: every 5 hours for 40 days, then a 10-day gap and a last reading.
    stored = [Reading("sparse", start + timedelta(hours=5 * k), k, power_w=float(k)) for k in range(192)]
    stored.append(Reading("sparse", start + timedelta(days=50), 192, power_w=1.0))
    await write_all(store, stored, "home")
    try:
        lo, hi = start + timedelta(hours=1), start + timedelta(days=60)
        in_range = [r for r in stored if lo <= r.ts < hi]
        for limit in (1, 4, 5, 50, 190, 191, 192, 1000):
            assert await store.readings("sparse", lo, hi, limit=limit) == in_range[:limit], limit
        assert await store.readings("sparse", lo, hi) == in_range
        assert await store.readings("sparse", hi, hi + timedelta(days=400), limit=10) == []
    finally:
        await store.close()

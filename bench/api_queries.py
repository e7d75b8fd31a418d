"""`vatio bench api-queries`: API read latency on PostgreSQL over a year of 1-minute data.

Method: a PostgreSQL database of its own (kept as ``vatio_bench_api`` with
``--reuse``, so re-runs skip the load) is filled with ``--days`` of 1-minute
readings for ``--devices`` meters through the store's own write path
(``store.write(WriteBatch)``: binary COPY, one batch per UTC day for all
devices), then rollups are computed with the store's own ``refresh_rollups``;
both are timed. The API then runs as its own process (``vatio api``, uvicorn)
and an HTTP client times, for random devices and one request at a time after a
warm-up: the one-year daily energy in Europe/Paris, the device page's history
query for a year and for a week (``/history?points=2000``), and a month of
hourly energy. Then a year of a site's daily costs (its two meters summed and
priced), first under a whole-hour time-of-use tariff, then under Economy 7
(cheap 00:30-07:30, whose boundary hours are priced from 15-minute rollups);
the tariffs are set through the API. Prints JSON with p50/p95/p99 per query.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import numpy as np

from vatio.model import Reading, WriteBatch
from vatio.store.postgres import PostgresStore
from vatio.testing import PG_ADMIN_URL, create_database, drop_database, free_port, wait_port

RESULTS = Path(__file__).resolve().parent / "results" / "api_queries.json"
REUSE_DB = "vatio_bench_api"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
TZ = "Europe/Paris"
TARGET_MS = 100.0
HISTORY_POINTS = 2000
#: A few devices get their counter reset (meter swap, firmware reset): the store must detect it.
RESET_FRACTION = 0.1


# -- data -----------------------------------------------------------------------------
class Fleet:
    """Per-device parameters and running state of the synthetic meters (reproducible from ``seed``)."""

    # A plain class: `vatio bench` loads this file without registering it in sys.modules, which dataclasses need.
    def __init__(self, devices: int, days: int, seed: int) -> None:
        self.devices, self.days, self.seed = devices, days, seed
        rng = np.random.default_rng(seed)
        self.ids = [f"meter-{d:04d}" for d in range(self.devices)]
        self.sites = {device: f"home-{d // 2:04d}" for d, device in enumerate(self.ids)}
        self.base_w = rng.uniform(60.0, 400.0, self.devices)
        self.peak_w = rng.uniform(300.0, 2500.0, self.devices)
        # Meters report on their own second of the minute, not all on :00.
        self.phase_s = rng.integers(0, 60, self.devices)
        self.counter_wh = rng.uniform(0.0, 5e6, self.devices)
        resets = rng.random(self.devices) < RESET_FRACTION
        self.reset_minute = np.where(resets, rng.integers(1440, max(1441, self.days * 1440), self.devices), -1)
        self.rng = rng

    def day(self, index: int) -> list[Reading]:
        """All devices' readings of UTC day ``index``, device by device, in time order."""
        minutes = np.arange(1440)
        hour = minutes / 60.0
        # Household shape: night base load, morning and evening peaks, random appliance bursts.
        shape = np.exp(-(((hour - 7.5) / 1.2) ** 2)) + 1.4 * np.exp(-(((hour - 19.5) / 2.0) ** 2))
        power = self.base_w[:, None] + self.peak_w[:, None] * shape[None, :]
        power *= self.rng.uniform(0.85, 1.15, (self.devices, 1440))
        bursts = self.rng.random((self.devices, 1440)) < 0.01
        power += np.where(bursts, self.rng.uniform(1000.0, 3000.0, (self.devices, 1440)), 0.0)
        counter = self.counter_wh[:, None] + np.cumsum(power / 60.0, axis=1)
        for r in np.flatnonzero(self.reset_minute // 1440 == index).tolist():
            at = int(self.reset_minute[r] % 1440)
            counter[r, at:] -= counter[r, at] - power[r, at] / 60.0
        self.counter_wh = counter[:, -1].copy()
        volts = self.rng.normal(230.0, 2.0, (self.devices, 1440)).round(1)
        start = YEAR_START + timedelta(days=index)
        stamps: dict[int, list[datetime]] = {}
        readings: list[Reading] = []
        for d, device in enumerate(self.ids):
            phase = int(self.phase_s[d])
            if phase not in stamps:
                stamps[phase] = [start + timedelta(seconds=60 * m + phase) for m in range(1440)]
            seq0 = index * 1440
            readings += [
                Reading(device, ts, seq0 + m, p, e, v)
                for m, (ts, p, e, v) in enumerate(
                    zip(
                        stamps[phase],
                        power[d].round(1).tolist(),
                        counter[d].round(3).tolist(),
                        volts[d].tolist(),
                        strict=True,
                    )
                )
            ]
        return readings

    def batch(self, index: int) -> WriteBatch:
        readings = self.day(index)
        end = YEAR_START + timedelta(days=index + 1)
        return WriteBatch(readings=readings, sites=dict(self.sites), last_seen=dict.fromkeys(self.ids, end))


async def write_all(store: PostgresStore, fleet: Fleet) -> dict[str, Any]:
    """Write every day through ``store.write`` (one batch per UTC day, all devices); timed."""
    generate_s = write_s = 0.0
    rows = 0
    for index in range(fleet.days):
        t0 = time.perf_counter()
        batch = fleet.batch(index)
        t1 = time.perf_counter()
        result = await store.write(batch)
        write_s += time.perf_counter() - t1
        generate_s += t1 - t0
        rows += result.inserted
    return {
        "readings": rows,
        "write_s": round(write_s, 1),
        "generate_s": round(generate_s, 1),
        "readings_per_s": round(rows / write_s),
    }


async def refresh_all(store: PostgresStore, readings: int) -> dict[str, Any]:
    """Drain the rollup queue with the store's own ``refresh_rollups``; timed."""
    t0 = time.perf_counter()
    ranges = 0
    while done := await store.refresh_rollups():
        ranges += done
    seconds = time.perf_counter() - t0
    stats = await store.stats()
    return {
        "seconds": round(seconds, 1),
        "dirty_ranges": ranges,
        "rollup_rows": stats.rollup_rows,
        "readings_per_s": round(readings / seconds) if seconds else None,
    }


async def prepare(url: str, args: argparse.Namespace, *, reusable: bool) -> dict[str, Any]:
    """Bring ``url`` to this data set with every rollup computed; the load report.

    A reusable database keeps its readings when it holds exactly this many,
    and its rollups when none is dirty: a re-run (or one interrupted after the
    write phase) redoes only what is missing. Phase reports are kept in the
    bench's own table ``bench_load`` so a re-run can quote them.
    """
    expected = args.devices * args.days * 1440
    count = await _count(url) if reusable else 0
    if count not in (0, expected):
        if args.db:
            raise SystemExit(f"{args.db} is unreachable or holds another data set; give an empty database")
        await _recreate(REUSE_DB)
        count = 0
    store = PostgresStore(url, max_connections=2)
    try:
        await store.migrate()
        reports = await _reports(url)
        if count != expected:
            reports = {"write": await write_all(store, Fleet(args.devices, args.days, args.seed))}
            await _save(url, "write", reports["write"])
        if args.load_only:
            return reports
        if "rollups" not in reports or (await store.stats()).pending_rollups:
            reports["rollups"] = await refresh_all(store, expected)
            await _save(url, "rollups", reports["rollups"])
            reports.pop("vacuum", None)
        if "vacuum" not in reports:
            reports["vacuum"] = await vacuum(url)
            await _save(url, "vacuum", reports["vacuum"])
    finally:
        await store.close()
    reports["readings_reused"] = count == expected
    return reports


async def vacuum(url: str) -> dict[str, Any]:
    """``VACUUM (ANALYZE) rollups``: what autovacuum does after a bulk refresh; timed.

    It marks the freshly written pages all-visible, which the index-only scans of
    ``rollups_coarse`` need to skip the heap. Done here so a run does not depend on
    when autovacuum happens to get to the table.
    """
    t0 = time.perf_counter()
    async with _connect(url) as conn:
        await conn.execute("VACUUM (ANALYZE) rollups")
    return {"seconds": round(time.perf_counter() - t0, 1)}


def drop_caches() -> None:
    """Restart this machine's PostgreSQL and empty the OS page cache (Debian, root).

    For ``--cold``: the next queries read their pages from disk, as the first
    reads of a device's year do on a server whose memory holds other data. It
    restarts the local ``main`` cluster, ending every session on it: use on a
    benchmark machine only.
    """
    # This machine's newest cluster (by number: "9.6" < "16"), whichever database the run uses.
    version = max((p.name for p in Path("/etc/postgresql").iterdir()), key=lambda v: tuple(map(int, v.split("."))))
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")
    wait_port(5432, timeout_s=30.0)


@contextlib.asynccontextmanager
async def _connect(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def _reports(url: str) -> dict[str, Any]:
    async with _connect(url) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_load (phase text PRIMARY KEY, report text NOT NULL)")
        return {row["phase"]: json.loads(row["report"]) for row in await conn.fetch("SELECT * FROM bench_load")}


async def _save(url: str, phase: str, report: dict[str, Any]) -> None:
    async with _connect(url) as conn:
        sql = "INSERT INTO bench_load VALUES ($1, $2) ON CONFLICT (phase) DO UPDATE SET report = excluded.report"
        await conn.execute(sql, phase, json.dumps(report))


async def _count(url: str) -> int | None:
    """Readings in ``url``, or None when the database does not exist."""
    try:
        async with _connect(url) as conn:
            if await conn.fetchval("SELECT to_regclass('readings') IS NULL"):
                return 0
            return int(await conn.fetchval("SELECT count(*) FROM readings"))
    except (OSError, asyncpg.InvalidCatalogNameError):
        return None


async def _recreate(name: str) -> None:
    async with _connect(PG_ADMIN_URL) as conn:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")


async def database_size(url: str) -> dict[str, int]:
    async with _connect(url) as conn:
        row = await conn.fetchrow(
            "SELECT pg_database_size(current_database()), "
            "(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'readings'::regclass), "
            "pg_total_relation_size('rollups')"
        )
    assert row is not None
    return {"database_bytes": int(row[0]), "readings_bytes": int(row[1]), "rollups_bytes": int(row[2])}


# -- queries --------------------------------------------------------------------------
def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


QueryFactory = Callable[[random.Random], tuple[str, dict[str, str]]]


def by_local_day(days: int) -> dict[str, str]:
    """Query parameters: daily buckets over ``days`` local days of :data:`TZ` from the data's first."""
    tz = ZoneInfo(TZ)
    start, end = (datetime.combine(YEAR_START.date() + timedelta(days=k), dt_time(), tzinfo=tz) for k in (0, days))
    return {"bucket": "day", "start": start.isoformat(), "end": end.isoformat(), "tz": TZ}


def query_set(devices: list[str], days: int) -> dict[str, QueryFactory]:
    """Per query kind, a function drawing (path, params) for a random device and period."""
    end = YEAR_START + timedelta(days=days)

    def history(span_days: int) -> QueryFactory:
        def draw(rng: random.Random) -> tuple[str, dict[str, str]]:
            device = rng.choice(devices)
            lo = YEAR_START + timedelta(days=rng.randrange(max(1, days - span_days + 1)))
            hi = min(end, lo + timedelta(days=span_days))
            span = {"start": _iso(lo), "end": _iso(hi)}
            return f"/api/v1/devices/{device}/history", {**span, "points": str(HISTORY_POINTS)}

        return draw

    def year_energy(rng: random.Random) -> tuple[str, dict[str, str]]:
        return f"/api/v1/devices/{rng.choice(devices)}/energy", by_local_day(days)

    def month_hourly(rng: random.Random) -> tuple[str, dict[str, str]]:
        lo = YEAR_START + timedelta(days=rng.randrange(max(1, days - 30 + 1)))
        params = {"bucket": "hour", "start": _iso(lo), "end": _iso(min(end, lo + timedelta(days=30))), "tz": TZ}
        return f"/api/v1/devices/{rng.choice(devices)}/energy", params

    return {
        "energy_year_daily": year_energy,
        "history_year": history(365),
        "history_week": history(7),
        "energy_month_hourly": month_hourly,
    }


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list: ``percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0``."""
    rank = max(1, int(np.ceil(q * len(sorted_ms))))
    return sorted_ms[rank - 1]


def measure(client: httpx.Client, draw: QueryFactory, *, requests: int, warmup: int, seed: int) -> dict[str, Any]:
    """Time ``requests`` sequential requests after ``warmup`` untimed ones; every answer must be 200."""
    rng = random.Random(seed)
    timings: list[float] = []
    items: list[int] = []
    resolutions: Counter[str] = Counter()
    for i in range(warmup + requests):
        path, params = draw(rng)
        t0 = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = (time.perf_counter() - t0) * 1000.0
        if response.status_code != 200:
            raise SystemExit(f"{path} {params}: HTTP {response.status_code} {response.text[:300]}")
        if i >= warmup:
            timings.append(elapsed)
            body = response.json()
            # /energy and /readings answer "items", /history "points" (plus its resolution).
            items.append(len(body.get("items", body.get("points", []))))
            resolutions[body.get("resolution", body.get("bucket", ""))] += 1
    timings.sort()
    return {
        "requests": len(timings),
        "items_median": int(statistics.median(items)),
        "resolutions": dict(resolutions),
        "p50_ms": round(percentile(timings, 0.50), 2),
        "p95_ms": round(percentile(timings, 0.95), 2),
        "p99_ms": round(percentile(timings, 0.99), 2),
        "max_ms": round(timings[-1], 2),
        "meets_target": percentile(timings, 0.95) < TARGET_MS,
    }


class ApiServer:
    """``vatio api`` as its own process on a free port."""

    def __init__(self, db: str) -> None:
        self.db = db

    def __enter__(self) -> str:
        self.port = free_port()
        command = [sys.executable, "-m", "vatio.cli", "api", "--db", self.db, "--port", str(self.port)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, timeout_s=30.0)
        except TimeoutError:
            self.__exit__()
            raise
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


#: The site cost queries, each with the local hours of its cheap rate: whole hours, then Economy 7.
TARIFFS = {"site_cost_year_whole_hour": ("23:00", "07:00"), "site_cost_year_economy_7": ("00:30", "07:30")}


def set_tariff(client: httpx.Client, sites: list[str], cheap: tuple[str, str]) -> None:
    """Give every site (Paris time) a two-rate tariff, cheap over ``cheap``, from before the data."""
    rates = [
        {"days": list(range(7)), "start": cheap[0], "end": cheap[1], "price_per_kwh": 0.15},
        {"days": list(range(7)), "start": cheap[1], "end": cheap[0], "price_per_kwh": 0.30},
    ]
    body = {"name": "-".join(cheap), "currency": "EUR", "effective_from": "2024-01-01", "standing_charge_per_day": 0.5}
    for site in sites:
        client.put(f"/api/v1/sites/{site}", json={"tz": TZ, "currency": "EUR"}).raise_for_status()
        # The same effective date replaces the previous phase's tariff.
        client.post(f"/api/v1/sites/{site}/tariffs", json={**body, "rates": rates}).raise_for_status()


def site_cost_year(sites: list[str], days: int) -> QueryFactory:
    def draw(rng: random.Random) -> tuple[str, dict[str, str]]:
        return f"/api/v1/sites/{rng.choice(sites)}/energy", by_local_day(days)

    return draw


def run_queries(url: str, args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet(args.devices, 1, args.seed)
    sites = sorted(set(fleet.sites.values()))
    with ApiServer(url) as base, httpx.Client(base_url=base, timeout=60.0) as client:
        paths = client.get("/openapi.json").json()["paths"]
        if "/api/v1/devices/{device_id}/history" not in paths:
            raise SystemExit("the API has no /history endpoint (src/vatio/api/routers/history.py)")
        draws = list(query_set(fleet.ids, args.days).items())
        results = {
            name: measure(client, draw, requests=args.requests, warmup=args.warmup, seed=args.seed + k)
            for k, (name, draw) in enumerate(draws)
        }
        for k, (name, cheap) in enumerate(TARIFFS.items(), start=len(draws)):
            set_tariff(client, sites, cheap)
            draw = site_cost_year(sites, args.days)
            results[name] = measure(client, draw, requests=args.requests, warmup=args.warmup, seed=args.seed + k)
        return results


# -- main -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vatio bench api-queries", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--db", help="use this database (loaded unless it already holds the data)")
    parser.add_argument("--reuse", action="store_true", help=f"keep the data in database {REUSE_DB} between runs")
    parser.add_argument("--load-only", action="store_true", help="write the readings, skip rollups and queries")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per query kind")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON result")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="restart PostgreSQL and drop the OS page cache before the queries (Debian, root)",
    )
    args = parser.parse_args(argv)
    for name in ("devices", "days", "requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reusable = bool(args.db or args.reuse)
    reuse_url = args.db or PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{REUSE_DB}"
    url = reuse_url if reusable else asyncio.run(create_database("vatio_bench_api"))
    try:
        loaded = asyncio.run(prepare(url, args, reusable=reusable))
        if args.load_only:
            print(json.dumps(loaded, indent=2))
            return 0
        sizes = asyncio.run(database_size(url))
        if args.cold:
            drop_caches()
        queries = run_queries(url, args)
    finally:
        if not reusable:
            asyncio.run(drop_database(url))
    result = {
        "benchmark": "api_queries",
        "devices": args.devices,
        "days": args.days,
        "tz": TZ,
        "target_p95_ms": TARGET_MS,
        "cold": args.cold,
        "load": loaded,
        "storage": sizes,
        "queries": queries,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

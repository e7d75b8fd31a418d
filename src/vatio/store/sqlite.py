"""Embedded SQLite backend: one file, WAL mode, zero set-up.

sqlite3 is synchronous, so every call runs on one dedicated thread that owns
the connection; the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from vatio.errors import BatchRejectedError, StoreError, StoreUnavailableError
from vatio.model import (
    DeadLetter,
    Device,
    StoreStats,
    WriteBatch,
    WriteResult,
)
from vatio.model.instants import from_ms, to_ms, utcnow
from vatio.store.base import ONLINE_WINDOW, RetentionResult
from vatio.store.energy import DEFAULT_POLICY, EnergyPolicy
from vatio.store.late import REACH, Neighbours, near_cutoff, refuse_late
from vatio.store.rollup import (
    dirty_ranges,
)
from vatio.store.sqlite_alerts import MIGRATION as ALERTS_MIGRATION
from vatio.store.sqlite_alerts import SqliteAlertsMixin
from vatio.store.sqlite_detection import MIGRATION as DETECTION_MIGRATION
from vatio.store.sqlite_detection import SqliteDetectionMixin
from vatio.store.sqlite_series import READING_COLUMNS, SqliteSeriesMixin
from vatio.store.sqlite_tariffs import MIGRATION as TARIFFS_MIGRATION
from vatio.store.sqlite_tariffs import SqliteTariffsMixin

T = TypeVar("T")

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE devices (
            device_id TEXT PRIMARY KEY, site_id TEXT NOT NULL,
            first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
            status_online INTEGER, firmware TEXT, status_at INTEGER)""",
        "CREATE INDEX devices_site ON devices(site_id)",
        """CREATE TABLE readings (
            device_id TEXT NOT NULL, ts INTEGER NOT NULL, seq INTEGER,
            power_w REAL, energy_wh REAL, voltage_v REAL, current_a REAL,
            power_factor REAL, frequency_hz REAL, energy_export_wh REAL,
            PRIMARY KEY (device_id, ts)) STRICT, WITHOUT ROWID""",
        "CREATE INDEX readings_ts ON readings(ts)",
        """CREATE TABLE rollups (
            tier INTEGER NOT NULL, device_id TEXT NOT NULL, bucket INTEGER NOT NULL,
            samples INTEGER NOT NULL, power_count INTEGER NOT NULL, power_sum REAL NOT NULL,
            power_min REAL, power_max REAL, energy_wh REAL NOT NULL,
            PRIMARY KEY (tier, device_id, bucket)) STRICT, WITHOUT ROWID""",
        """CREATE TABLE rollup_dirty (
            id INTEGER PRIMARY KEY, device_id TEXT NOT NULL,
            start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL)""",
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT, received_at INTEGER NOT NULL,
            topic TEXT NOT NULL, reason TEXT NOT NULL, payload BLOB NOT NULL)""",
    ],
    DETECTION_MIGRATION,
    ALERTS_MIGRATION,
    TARIFFS_MIGRATION,
    # 5: the newest raw-retention cutoff applied; writes refuse readings older than it.
    ["CREATE TABLE raw_retention (only_row INTEGER PRIMARY KEY CHECK (only_row = 1), cutoff INTEGER NOT NULL)"],
]


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite:///:memory:``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise StoreError(f"not a SQLite URL: {url!r} (expected sqlite:///path/vatio.db)")
    path = url[len(prefix) :]
    if not path:
        raise StoreError(f"SQLite URL has no path: {url!r}")
    return path


class SqliteStore(SqliteSeriesMixin, SqliteDetectionMixin, SqliteAlertsMixin, SqliteTariffsMixin):
    """The embedded :class:`~vatio.store.base.Store`.

    >>> import asyncio
    >>> async def demo() -> int:
    ...     store = SqliteStore("sqlite:///:memory:")
    ...     await store.migrate()
    ...     stats = await store.stats()
    ...     await store.close()
    ...     return stats.readings
    >>> asyncio.run(demo())
    0
    """

    def __init__(self, url: str, *, policy: EnergyPolicy = DEFAULT_POLICY) -> None:
        self.url = url
        self.policy = policy
        self._path = path_from_url(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vatio-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:
            # Locked, busy, disk full: the same call may succeed later.
            raise StoreUnavailableError(f"SQLite unavailable: {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                if self._path != ":memory:":
                    Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open {self._path}: {exc}") from exc
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        return self._conn

    # -- schema ---------------------------------------------------------------
    async def migrate(self) -> None:
        await self._run(self._migrate)

    def _migrate(self) -> None:
        db = self._db()
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] or 0
        for version, statements in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            db.execute("BEGIN IMMEDIATE")
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?)", (version,))
            db.execute("COMMIT")

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(_close)
        self._executor.shutdown(wait=True)

    # -- writes ---------------------------------------------------------------
    async def write(self, batch: WriteBatch) -> WriteResult:
        return await self._run(self._write, batch)

    def _write(self, batch: WriteBatch) -> WriteResult:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT cutoff FROM raw_retention").fetchone()
            cutoff = None if row is None else from_ms(row[0])
            batch, too_old = refuse_late(batch, cutoff, _neighbours(db, batch, cutoff), utcnow())
            rows = [(r.device_id, to_ms(r.ts), *r[2:]) for r in batch.readings]
            before = db.total_changes
            db.executemany(
                f"INSERT OR IGNORE INTO readings ({READING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            inserted = db.total_changes - before
            db.executemany(
                "INSERT INTO devices (device_id, site_id, first_seen, last_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET site_id = excluded.site_id, "
                "last_seen = max(last_seen, excluded.last_seen)",
                [
                    (device, site, to_ms(batch.last_seen[device]), to_ms(batch.last_seen[device]))
                    for device, site in batch.sites.items()
                ],
            )
            if inserted:
                db.executemany(
                    "INSERT INTO rollup_dirty (device_id, start_ms, end_ms) VALUES (?, ?, ?)",
                    [(d, lo, hi) for d, (lo, hi) in dirty_ranges(batch.readings).items()],
                )
            db.executemany(
                "INSERT INTO dead_letters (received_at, topic, reason, payload) VALUES (?, ?, ?, ?)",
                [(to_ms(d.received_at), d.topic, d.reason, d.payload) for d in batch.dead_letters],
            )
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            db.execute("ROLLBACK")
            raise StoreUnavailableError(f"SQLite busy or unwritable: {exc}") from exc
        except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError) as exc:
            db.execute("ROLLBACK")
            raise BatchRejectedError(f"batch rejected by SQLite: {exc}") from exc
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return WriteResult(
            inserted=inserted,
            duplicates=len(rows) - inserted,
            dead_letters=len(batch.dead_letters),
            too_old=too_old,
        )

    async def set_device_status(
        self, device_id: str, site_id: str, *, online: bool, firmware: str | None, at: datetime
    ) -> None:
        ms = to_ms(at)

        def _set() -> None:
            self._db().execute(
                "INSERT INTO devices (device_id, site_id, first_seen, last_seen, status_online, "
                "firmware, status_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(device_id) DO UPDATE SET status_online = excluded.status_online, "
                "firmware = coalesce(excluded.firmware, firmware), status_at = excluded.status_at",
                (device_id, site_id, ms, ms, int(online), firmware, ms),
            )

        await self._run(_set)

    # -- devices --------------------------------------------------------------
    async def list_devices(self, *, now: datetime | None = None) -> list[Device]:
        rows = await self._run(self._device_rows, None)
        return [_device(row, now or utcnow()) for row in rows]

    async def get_device(self, device_id: str, *, now: datetime | None = None) -> Device | None:
        rows = await self._run(self._device_rows, device_id)
        return _device(rows[0], now or utcnow()) if rows else None

    def _device_rows(self, device_id: str | None) -> list[tuple[Any, ...]]:
        sql = "SELECT device_id, site_id, first_seen, last_seen, firmware, status_online FROM devices"
        if device_id is None:
            return self._db().execute(sql + " ORDER BY site_id, device_id").fetchall()
        return self._db().execute(sql + " WHERE device_id = ?", (device_id,)).fetchall()

    # -- queries --------------------------------------------------------------
    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        def _query() -> list[DeadLetter]:
            cursor = self._db().execute(
                "SELECT id, received_at, topic, reason, payload FROM dead_letters ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            return [
                DeadLetter(received_at=from_ms(r[1]), topic=r[2], reason=r[3], payload=r[4], id=r[0]) for r in cursor
            ]

        return await self._run(_query)

    async def stats(self) -> StoreStats:
        def _query() -> StoreStats:
            db = self._db()

            def count(table: str) -> int:
                return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

            return StoreStats(
                readings=count("readings"),
                devices=count("devices"),
                dead_letters=count("dead_letters"),
                rollup_rows=count("rollups"),
                pending_rollups=count("rollup_dirty"),
            )

        return await self._run(_query)

    # -- retention ------------------------------------------------------------
    async def apply_retention(self, *, raw_days: int, now: datetime | None = None) -> RetentionResult:
        cutoff = (now or utcnow()) - timedelta(days=raw_days)

        def _delete() -> int:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO raw_retention (only_row, cutoff) VALUES (1, ?) "
                    "ON CONFLICT (only_row) DO UPDATE SET cutoff = max(cutoff, excluded.cutoff)",
                    (to_ms(cutoff),),
                )
                deleted = db.execute("DELETE FROM readings WHERE ts < ?", (to_ms(cutoff),)).rowcount
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return deleted

        deleted = await self._run(_delete)
        return RetentionResult(readings_deleted=deleted, partitions_dropped=0, cutoff=cutoff)


def _neighbours(db: sqlite3.Connection, batch: WriteBatch, cutoff: datetime | None) -> dict[str, Neighbours]:
    """For :func:`~vatio.store.late.refuse_late`: each device's data just around the cutoff."""
    devices = near_cutoff(batch, cutoff)
    if not devices or cutoff is None:
        return {}
    found = {}
    lo, at, hi = to_ms(cutoff - REACH), to_ms(cutoff), to_ms(cutoff + REACH)
    for device in devices:
        (last,) = db.execute(
            "SELECT max(bucket) FROM rollups WHERE tier = 60 AND device_id = ? AND bucket >= ? AND bucket < ?",
            (device, lo // 1000, at // 1000),  # buckets are epoch seconds
        ).fetchone()
        (first,) = db.execute(
            "SELECT min(ts) FROM readings WHERE device_id = ? AND ts >= ? AND ts < ?", (device, at, hi)
        ).fetchone()
        found[device] = Neighbours(
            None if last is None else from_ms(last * 1000), None if first is None else from_ms(first)
        )
    return found


def _device(row: tuple[Any, ...], now: datetime) -> Device:
    last_seen = from_ms(row[3])
    return Device(
        device_id=row[0],
        site_id=row[1],
        first_seen=from_ms(row[2]),
        last_seen=last_seen,
        online=now - last_seen <= ONLINE_WINDOW,
        firmware=row[4],
        status_online=None if row[5] is None else bool(row[5]),
    )

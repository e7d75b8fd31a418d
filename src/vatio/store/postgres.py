"""PostgreSQL backend: time-partitioned readings, binary COPY writes.

Readings live in a natively range-partitioned table, one partition per UTC
day, created ahead of time and on demand; retention drops whole partitions.
The write path COPYs straight into ``readings`` (the fast path: no duplicate
in the batch); a unique violation, which only redeliveries cause, rolls back
to a savepoint and merges through a staging table with ``ON CONFLICT DO
NOTHING``. The schema keeps to what TimescaleDB can later convert
(``create_hypertable`` on ``readings.ts``), without depending on it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from vatio.errors import BatchRejectedError, StoreUnavailableError
from vatio.model import (
    DeadLetter,
    Device,
    Reading,
    StoreStats,
    WriteBatch,
    WriteResult,
)
from vatio.model.instants import utcnow
from vatio.store.base import ONLINE_WINDOW, RetentionResult, redact
from vatio.store.energy import DEFAULT_POLICY, EnergyPolicy
from vatio.store.late import REACH, Neighbours, near_cutoff, refuse_late
from vatio.store.postgres_alerts import MIGRATION as ALERTS_MIGRATION
from vatio.store.postgres_alerts import PostgresAlertsMixin
from vatio.store.postgres_common import COLS, READING_COLUMNS, unavailable_as_error
from vatio.store.postgres_detection import MIGRATION as DETECTION_MIGRATION
from vatio.store.postgres_detection import PostgresDetectionMixin
from vatio.store.postgres_series import COARSE_TIER, PostgresSeriesMixin
from vatio.store.postgres_tariffs import MIGRATION as TARIFFS_MIGRATION
from vatio.store.postgres_tariffs import PostgresTariffsMixin
from vatio.store.rollup import (
    dirty_ranges,
)

log = logging.getLogger(__name__)

_PARTITION = re.compile(r"^readings_p(\d{8})$")
#: Advisory lock (session-level) held by whoever runs the migrations.
MIGRATION_LOCK = 7201
#: Tries of ``migrate`` when an older migrator deadlocks with a concurrent index build.
MIGRATE_ATTEMPTS = 5
#: Advisory lock serialising partition creation and retention.
PARTITION_LOCK = 7202
#: Advisory lock of retention (exclusive) against writes (shared); taken before PARTITION_LOCK.
RETENTION_LOCK = 7203
#: Partitions created ahead of today by ``migrate`` and ``maintain``.
DAYS_AHEAD = 7


@dataclass(frozen=True, slots=True)
class ConcurrentIndex:
    """A migration step built with ``CREATE INDEX CONCURRENTLY``, outside any transaction.

    A plain ``CREATE INDEX`` on a table that already holds a utility's rollups
    blocks every rollup write until it is built; this does not. A build that
    was interrupted leaves an invalid index behind: it is dropped and rebuilt.
    """

    name: str
    #: What follows ``CREATE INDEX CONCURRENTLY <name> ON``.
    definition: str

    @property
    def create(self) -> str:
        return f"CREATE INDEX CONCURRENTLY {self.name} ON {self.definition}"


MIGRATIONS: list[list[str] | list[ConcurrentIndex]] = [
    [
        """CREATE TABLE devices (
            device_id text PRIMARY KEY, site_id text NOT NULL,
            first_seen timestamptz NOT NULL, last_seen timestamptz NOT NULL,
            status_online boolean, firmware text, status_at timestamptz)""",
        "CREATE INDEX devices_site ON devices (site_id)",
        """CREATE TABLE readings (
            device_id text NOT NULL, ts timestamptz NOT NULL, seq bigint,
            power_w double precision, energy_wh double precision, voltage_v double precision,
            current_a double precision, power_factor double precision,
            frequency_hz double precision, energy_export_wh double precision,
            PRIMARY KEY (device_id, ts)) PARTITION BY RANGE (ts)""",
        """CREATE TABLE rollups (
            tier integer NOT NULL, device_id text NOT NULL, bucket timestamptz NOT NULL,
            samples integer NOT NULL, power_count integer NOT NULL,
            power_sum double precision NOT NULL, power_min double precision,
            power_max double precision, energy_wh double precision NOT NULL,
            PRIMARY KEY (tier, device_id, bucket))""",
        """CREATE TABLE rollup_dirty (
            id bigserial PRIMARY KEY, device_id text NOT NULL,
            start_ms bigint NOT NULL, end_ms bigint NOT NULL)""",
        """CREATE TABLE dead_letters (
            id bigserial PRIMARY KEY, received_at timestamptz NOT NULL,
            topic text NOT NULL, reason text NOT NULL, payload bytea NOT NULL)""",
    ],
    DETECTION_MIGRATION,
    ALERTS_MIGRATION,
    TARIFFS_MIGRATION,
    # 5: the coarse tiers in (device, bucket) order with their values, so a year of
    # a device's days or hours is read from a few contiguous index pages by an
    # index-only scan instead of one scattered heap page per day (cold cache: the
    # year of daily rows read 271 pages from disk). The 1-minute tier stays out:
    # it is 90 % of the rows and is read a day or a week at a time.
    [
        ConcurrentIndex(
            "rollups_coarse",
            f"""rollups (tier, device_id, bucket)
            INCLUDE (samples, power_count, power_sum, power_min, power_max, energy_wh, energy_export_wh)
            WHERE tier >= {COARSE_TIER}""",
        )
    ],
    # 6: the newest raw-retention cutoff applied (null: none yet); writes refuse readings older
    # than it (see vatio.store.late).
    [
        "CREATE TABLE raw_retention (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), cutoff timestamptz)",
        "INSERT INTO raw_retention (cutoff) VALUES (NULL)",
    ],
]


def _partition_name(day: date) -> str:
    return f"readings_p{day:%Y%m%d}"


async def _apply(conn: asyncpg.Connection, version: int, steps: list[str] | list[ConcurrentIndex]) -> None:
    """Migration ``version``: its statements and its record in one transaction, or its indexes one by one."""
    statements = [step for step in steps if isinstance(step, str)]
    indexes = [step for step in steps if isinstance(step, ConcurrentIndex)]
    assert not (statements and indexes), "a migration is all statements or all concurrent indexes"
    if statements:
        async with conn.transaction():
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version VALUES ($1)", version)
        return
    for index in indexes:
        valid = await conn.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", index.name)
        if valid is False:  # an earlier build was interrupted
            await conn.execute(f"DROP INDEX CONCURRENTLY {index.name}")
        if valid is not True:
            await conn.execute(index.create)
    await conn.execute("INSERT INTO schema_version VALUES ($1)", version)


async def _migrate_locked(conn: asyncpg.Connection) -> None:
    # Two services starting together must not both run the migrations. The lock is the
    # session's, not a transaction's: an index built concurrently cannot be in one. It is
    # polled, not waited for: CREATE INDEX CONCURRENTLY waits for every open transaction,
    # a blocked pg_advisory_lock() included, which would deadlock the two.
    while not await conn.fetchval(f"SELECT pg_try_advisory_lock({MIGRATION_LOCK})"):
        await asyncio.sleep(0.1)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        for version, steps in enumerate(MIGRATIONS, start=1):
            if version > current:
                await _apply(conn, version, steps)
    finally:
        # A broken connection has lost its session, and the lock with it.
        if not conn.is_closed():
            await conn.execute(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")


class PostgresStore(PostgresSeriesMixin, PostgresDetectionMixin, PostgresAlertsMixin, PostgresTariffsMixin):
    """The production :class:`~vatio.store.base.Store` on PostgreSQL 15+."""

    def __init__(
        self,
        url: str,
        *,
        policy: EnergyPolicy = DEFAULT_POLICY,
        min_connections: int = 1,
        max_connections: int = 4,
    ) -> None:
        self.url = url
        self.policy = policy
        self.min_connections = min_connections
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._partitions: set[date] = set()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=self.min_connections, max_size=self.max_connections
                )
            except (OSError, asyncpg.PostgresError) as exc:
                raise StoreUnavailableError(f"cannot connect to PostgreSQL at {redact(self.url)}: {exc}") from exc
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- schema ---------------------------------------------------------------
    async def migrate(self) -> None:
        pool = await self._get_pool()
        for attempt in range(MIGRATE_ATTEMPTS):
            try:
                async with pool.acquire() as conn:
                    await _migrate_locked(conn)
                break
            except asyncpg.DeadlockDetectedError:
                # An index build waited for a transaction that waited for our lock: a process of
                # a version before concurrent builds (it took the lock in a transaction). It goes
                # first; then the versions are read again, and an invalid index is rebuilt.
                if attempt == MIGRATE_ATTEMPTS - 1:
                    raise
                log.warning("migration deadlocked with another migrator; trying again")
                await asyncio.sleep(0.5 * (attempt + 1))
        await self.maintain()

    async def maintain(self, *, now: datetime | None = None) -> None:
        """Create partitions for yesterday through ``DAYS_AHEAD`` days ahead."""
        today = (now or utcnow()).astimezone(UTC).date()
        days = {today + timedelta(days=k) for k in range(-1, DAYS_AHEAD + 1)}
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            await self._ensure_partitions(conn, days)

    async def _ensure_partitions(self, conn: asyncpg.Connection, days: set[date]) -> None:
        missing = days - self._partitions
        if not missing:
            return
        existing = await self._existing_partitions(conn)
        self._partitions |= existing
        for day in sorted(missing - existing):
            # Serialise creators: CREATE TABLE IF NOT EXISTS still races on the catalog.
            await conn.execute(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK})")
            nxt = day + timedelta(days=1)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_partition_name(day)} PARTITION OF readings "
                f"FOR VALUES FROM ('{day.isoformat()} 00:00+00') TO ('{nxt.isoformat()} 00:00+00')"
            )
            self._partitions.add(day)

    async def _existing_partitions(self, conn: asyncpg.Connection) -> set[date]:
        names = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'readings'::regclass"
        )
        days = set()
        for row in names:
            match = _PARTITION.match(row["relname"])
            if match:
                days.add(datetime.strptime(match.group(1), "%Y%m%d").date())
        return days

    # -- writes ---------------------------------------------------------------
    async def write(self, batch: WriteBatch) -> WriteResult:
        pool = await self._get_pool()
        try:
            return await self._write(pool, batch)
        except BaseException:
            # The transaction rolled back: partitions it created do not exist.
            self._partitions.clear()
            raise

    async def _write(self, pool: asyncpg.Pool, batch: WriteBatch) -> WriteResult:
        async with unavailable_as_error(), pool.acquire() as conn:
            try:
                async with conn.transaction():
                    # Shared with other writers, exclusive with apply_retention: the cutoff read
                    # next stays the newest until this transaction ends. Two statements: the
                    # SELECT's snapshot must be taken after the lock was granted. (An advisory
                    # lock, not FOR SHARE on the row: that would write a multixact per batch.)
                    await conn.execute(f"SELECT pg_advisory_xact_lock_shared({RETENTION_LOCK})")
                    cutoff = await conn.fetchval("SELECT cutoff FROM raw_retention")
                    batch, too_old = refuse_late(batch, cutoff, await _neighbours(conn, batch, cutoff), utcnow())
                    inserted = await self._write_readings(conn, batch.readings)
                    await self._write_sightings(conn, batch)
                    if inserted:
                        spans = dirty_ranges(batch.readings)
                        await conn.execute(
                            "INSERT INTO rollup_dirty (device_id, start_ms, end_ms) "
                            "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
                            list(spans),
                            [s[0] for s in spans.values()],
                            [s[1] for s in spans.values()],
                        )
                    if batch.dead_letters:
                        await conn.copy_records_to_table(
                            "dead_letters",
                            records=[(d.received_at, d.topic, d.reason, d.payload) for d in batch.dead_letters],
                            columns=("received_at", "topic", "reason", "payload"),
                        )
            except asyncpg.CheckViolationError as exc:
                # "no partition of relation readings found for row": a partition the
                # cache believed in is gone (dropped, or created by a rolled-back write).
                raise StoreUnavailableError(f"partition missing, will recreate: {exc}") from exc
            except (
                asyncpg.DataError,
                asyncpg.IntegrityConstraintViolationError,
                TypeError,
                ValueError,
            ) as exc:
                # TypeError/ValueError: asyncpg could not encode a value for its column.
                raise BatchRejectedError(f"batch rejected by PostgreSQL: {exc}") from exc
        return WriteResult(
            inserted=inserted,
            duplicates=len(batch.readings) - inserted,
            dead_letters=len(batch.dead_letters),
            too_old=too_old,
        )

    async def _write_readings(self, conn: asyncpg.Connection, readings: Sequence[Reading]) -> int:
        if not readings:
            return 0
        await self._ensure_partitions(conn, {r.ts.astimezone(UTC).date() for r in readings})
        try:
            async with conn.transaction():  # savepoint: the fast path may fail on a duplicate
                await conn.copy_records_to_table("readings", records=readings, columns=READING_COLUMNS)
            return len(readings)
        except asyncpg.UniqueViolationError:
            pass
        unique = list({(r.device_id, r.ts): r for r in reversed(readings)}.values())
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS readings_stage (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table("readings_stage", records=unique, columns=READING_COLUMNS)
        status = await conn.execute(
            f"INSERT INTO readings ({COLS}) SELECT {COLS} FROM readings_stage ON CONFLICT DO NOTHING"
        )
        return int(status.rsplit(" ", 1)[-1])

    async def _write_sightings(self, conn: asyncpg.Connection, batch: WriteBatch) -> None:
        if not batch.sites:
            return
        devices = sorted(batch.sites)  # one lock order for every writer: no deadlocks
        await conn.execute(
            "INSERT INTO devices (device_id, site_id, first_seen, last_seen) "
            "SELECT d, s, t, t FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(d, s, t) "
            "ON CONFLICT (device_id) DO UPDATE SET site_id = excluded.site_id, "
            "last_seen = greatest(devices.last_seen, excluded.last_seen)",
            devices,
            [batch.sites[d] for d in devices],
            [batch.last_seen[d] for d in devices],
        )

    async def set_device_status(
        self, device_id: str, site_id: str, *, online: bool, firmware: str | None, at: datetime
    ) -> None:
        pool = await self._get_pool()
        try:
            async with unavailable_as_error():
                await self._set_status(pool, device_id, site_id, online=online, firmware=firmware, at=at)
        except asyncpg.DataError as exc:
            raise BatchRejectedError(f"status rejected by PostgreSQL: {exc}") from exc

    @staticmethod
    async def _set_status(
        pool: asyncpg.Pool, device_id: str, site_id: str, *, online: bool, firmware: str | None, at: datetime
    ) -> None:
        await pool.execute(
            "INSERT INTO devices (device_id, site_id, first_seen, last_seen, status_online, firmware, "
            "status_at) VALUES ($1, $2, $3, $3, $4, $5, $3) ON CONFLICT (device_id) DO UPDATE SET "
            "status_online = excluded.status_online, "
            "firmware = coalesce(excluded.firmware, devices.firmware), status_at = excluded.status_at",
            device_id,
            site_id,
            at,
            online,
            firmware,
        )

    # -- devices --------------------------------------------------------------
    _DEVICE_SQL = "SELECT device_id, site_id, first_seen, last_seen, firmware, status_online FROM devices"

    async def list_devices(self, *, now: datetime | None = None) -> list[Device]:
        pool = await self._get_pool()
        rows = await pool.fetch(self._DEVICE_SQL + " ORDER BY site_id, device_id")
        return [_device(row, now or utcnow()) for row in rows]

    async def get_device(self, device_id: str, *, now: datetime | None = None) -> Device | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(self._DEVICE_SQL + " WHERE device_id = $1", device_id)
        return _device(row, now or utcnow()) if row else None

    # -- queries --------------------------------------------------------------
    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        pool = await self._get_pool()
        rows = await pool.fetch(
            "SELECT id, received_at, topic, reason, payload FROM dead_letters ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [
            DeadLetter(
                received_at=r["received_at"],
                topic=r["topic"],
                reason=r["reason"],
                payload=bytes(r["payload"]),
                id=r["id"],
            )
            for r in rows
        ]

    async def stats(self) -> StoreStats:
        pool = await self._get_pool()
        row = await pool.fetchrow(
            "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM devices), "
            "(SELECT count(*) FROM dead_letters), (SELECT count(*) FROM rollups), "
            "(SELECT count(*) FROM rollup_dirty)"
        )
        assert row is not None
        return StoreStats(*(int(v) for v in row))

    # -- retention ------------------------------------------------------------
    async def apply_retention(self, *, raw_days: int, now: datetime | None = None) -> RetentionResult:
        cutoff = (now or utcnow()) - timedelta(days=raw_days)
        cutoff_day = cutoff.astimezone(UTC).date()
        pool = await self._get_pool()
        dropped = deleted = 0
        async with pool.acquire() as conn, conn.transaction():
            # First: from here until commit no write can pass the old cutoff (see _write).
            await conn.execute(f"SELECT pg_advisory_xact_lock({RETENTION_LOCK})")
            await conn.execute(f"SELECT pg_advisory_xact_lock({PARTITION_LOCK})")
            await conn.execute("UPDATE raw_retention SET cutoff = greatest(cutoff, $1)", cutoff)
            for day in sorted(await self._existing_partitions(conn)):
                if day + timedelta(days=1) <= cutoff_day:
                    deleted += await conn.fetchval(f"SELECT count(*) FROM {_partition_name(day)}")
                    await conn.execute(f"DROP TABLE {_partition_name(day)}")
                    self._partitions.discard(day)
                    dropped += 1
            status = await conn.execute("DELETE FROM readings WHERE ts < $1", cutoff)
        return RetentionResult(
            readings_deleted=deleted + int(status.rsplit(" ", 1)[-1]),
            partitions_dropped=dropped,
            cutoff=cutoff,
        )


async def _neighbours(conn: asyncpg.Connection, batch: WriteBatch, cutoff: datetime | None) -> dict[str, Neighbours]:
    """For :func:`~vatio.store.late.refuse_late`: each device's data just around the cutoff."""
    devices = near_cutoff(batch, cutoff)
    if not devices or cutoff is None:
        return {}
    last = await conn.fetch(
        "SELECT device_id, max(bucket) FROM rollups WHERE tier = 60 AND device_id = ANY($1::text[]) "
        "AND bucket >= $2 AND bucket < $3 GROUP BY device_id",
        devices,
        cutoff - REACH,
        cutoff,
    )
    first = await conn.fetch(
        "SELECT device_id, min(ts) FROM readings WHERE device_id = ANY($1::text[]) AND ts >= $2 AND ts < $3 "
        "GROUP BY device_id",
        devices,
        cutoff,
        cutoff + REACH,
    )
    before, after = dict(map(tuple, last)), dict(map(tuple, first))
    return {d: Neighbours(before.get(d), after.get(d)) for d in devices}


def _device(row: Any, now: datetime) -> Device:
    return Device(
        device_id=row["device_id"],
        site_id=row["site_id"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        online=now - row["last_seen"] <= ONLINE_WINDOW,
        firmware=row["firmware"],
        status_online=row["status_online"],
    )

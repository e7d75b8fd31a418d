"""PostgreSQL migrations on a database that already holds data.

Migration 5 adds an index to ``rollups``, which on a utility's database holds
hundreds of millions of rows. Built with a plain ``CREATE INDEX`` it would wait
behind any open rollup write and then hold every new one back until it was
built; ``CREATE INDEX CONCURRENTLY`` lets writes go on. These tests take a
database back to version 4 (as one made before migration 5 would be) and
upgrade it while a writer is in a transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import asyncpg
import pytest
from asyncpg.transaction import Transaction

from vatio.store import open_store
from vatio.store.postgres import MIGRATION_LOCK, MIGRATIONS, ConcurrentIndex

pytestmark = pytest.mark.integration

INSERT_ROLLUP = (
    "INSERT INTO rollups (tier, device_id, bucket, samples, power_count, power_sum, energy_wh) "
    "VALUES (3600, $1, now(), 1, 1, 1.0, 1.0)"
)


async def _at_version_4(url: str) -> None:
    """A database as it stood before migration 5 (the later ones undone)."""
    store = open_store(url)
    await store.migrate()
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP INDEX rollups_coarse")
        await conn.execute("DROP TABLE raw_retention")
        await conn.execute("DELETE FROM schema_version WHERE version >= 5")
    finally:
        await conn.close()


async def _waiting_on_lock(conn: asyncpg.Connection, query_prefix: str) -> None:
    """Until a session running a statement that starts with ``query_prefix`` waits on a lock."""
    async with asyncio.timeout(20):
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND wait_event_type = 'Lock'",
            query_prefix + "%",
        ):
            await asyncio.sleep(0.05)


async def _write_in_flight(conn: asyncpg.Connection) -> Transaction:
    """A rollup write left open on ``conn``: an index build must wait for it. Commit to end it."""
    tx = conn.transaction()
    await tx.start()
    await conn.execute(INSERT_ROLLUP, "in-flight")
    return tx


async def _assert_all_versions(conn: asyncpg.Connection) -> None:
    versions = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
    assert [r["version"] for r in versions] == list(range(1, len(MIGRATIONS) + 1))


async def _index_valid(conn: asyncpg.Connection) -> bool | None:
    valid: bool | None = await conn.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('rollups_coarse')"
    )
    return valid


async def _finish(task: Awaitable[None]) -> None:
    async with asyncio.timeout(20):
        await task


async def test_upgrade_builds_the_index_without_holding_writes_back(fresh_pg_url: str) -> None:
    await _at_version_4(fresh_pg_url)
    writer = await asyncpg.connect(fresh_pg_url)
    other = await asyncpg.connect(fresh_pg_url)
    store = open_store(fresh_pg_url)
    try:
        # A rollup write in flight when the upgrade starts.
        writer_tx = await _write_in_flight(writer)
        migrating = asyncio.create_task(store.migrate())
        await _waiting_on_lock(other, "CREATE INDEX")
        assert not migrating.done()

        # Meanwhile another writer is not held back (a plain CREATE INDEX would queue
        # its SHARE lock ahead of this insert, which would then time out).
        await other.execute("SET lock_timeout = '3s'")
        await other.execute(INSERT_ROLLUP, "during-upgrade")

        await writer_tx.commit()
        await _finish(migrating)
        assert await _index_valid(other) is True
        await _assert_all_versions(other)
        rows = await other.fetch("SELECT device_id FROM rollups ORDER BY device_id")
        assert [r["device_id"] for r in rows] == ["during-upgrade", "in-flight"]
    finally:
        # The writer first: a migration still waiting for it would keep the store from closing.
        await writer.close()
        await other.close()
        await store.close()


async def test_an_interrupted_index_build_is_rebuilt(fresh_pg_url: str) -> None:
    await _at_version_4(fresh_pg_url)
    writer = await asyncpg.connect(fresh_pg_url)
    builder = await asyncpg.connect(fresh_pg_url)
    watcher = await asyncpg.connect(fresh_pg_url)
    try:
        # An upgrade cancelled mid-build (say, an operator's Ctrl-C) leaves an invalid index.
        writer_tx = await _write_in_flight(writer)
        (index,) = MIGRATIONS[4]
        assert isinstance(index, ConcurrentIndex)
        build = asyncio.create_task(builder.execute(index.create))
        await _waiting_on_lock(watcher, "CREATE INDEX CONCURRENTLY")
        await watcher.execute("SELECT pg_cancel_backend($1)", builder.get_server_pid())
        with pytest.raises(asyncpg.QueryCanceledError):
            await _finish(build)
        await writer_tx.commit()
        assert await _index_valid(watcher) is False
    finally:
        await writer.close()
        await builder.close()

    try:
        store = open_store(fresh_pg_url)
        await store.migrate()
        await store.close()
        # Rebuilt, and usable by a coarse read (the planner never uses an invalid index).
        assert await _index_valid(watcher) is True
        await watcher.execute("SET enable_seqscan = off")
        plan = await watcher.fetchval(
            "EXPLAIN SELECT bucket FROM rollups WHERE tier = 3600 AND device_id = 'in-flight' AND tier >= 900"
        )
        assert "rollups_coarse" in plan
    finally:
        await watcher.close()


async def test_services_starting_together_migrate_once(fresh_pg_url: str) -> None:
    stores = [open_store(fresh_pg_url) for _ in range(3)]
    try:
        await asyncio.gather(*(store.migrate() for store in stores))
    finally:
        for store in stores:
            await store.close()
    conn = await asyncpg.connect(fresh_pg_url)
    try:
        await _assert_all_versions(conn)
        assert await _index_valid(conn) is True
    finally:
        await conn.close()


async def test_an_older_migrator_starting_during_the_build_goes_first(fresh_pg_url: str) -> None:
    """Versions before concurrent builds waited for the migration lock inside a transaction.

    The build waits for that transaction and it for the build's lock: PostgreSQL
    breaks the cycle by failing one side. When that is the build, migrate steps
    back, lets the older process through, and then finishes the upgrade.
    """
    await _at_version_4(fresh_pg_url)
    writer = await asyncpg.connect(fresh_pg_url)
    # The store's sessions check for deadlock late (2 s), the older process early (10 ms):
    # wide margins on a loaded machine for which side PostgreSQL fails.
    database = await writer.fetchval("SELECT current_database()")
    await writer.execute(f"ALTER DATABASE \"{database}\" SET deadlock_timeout = '2s'")
    older = await asyncpg.connect(fresh_pg_url)
    watcher = await asyncpg.connect(fresh_pg_url)
    store = open_store(fresh_pg_url)
    try:
        writer_tx = await _write_in_flight(writer)
        migrating = asyncio.create_task(store.migrate())
        await _waiting_on_lock(watcher, "CREATE INDEX CONCURRENTLY")

        # The older process: its own deadlock check runs early and finds no cycle yet, so
        # the build's check, once the cycle closes, is the one that fails.
        await older.execute("SET deadlock_timeout = '10ms'")
        older_tx = older.transaction()
        await older_tx.start()
        older_lock = asyncio.create_task(older.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        await _waiting_on_lock(watcher, "SELECT pg_advisory_xact_lock")
        await asyncio.sleep(0.5)
        await writer_tx.commit()

        # The build fails, migrate lets go of its lock, and the older process gets it.
        await _finish(older_lock)
        assert not migrating.done()
        await older_tx.commit()
        await _finish(migrating)
        assert await _index_valid(watcher) is True
        await _assert_all_versions(watcher)
    finally:
        await writer.close()
        await older.close()
        await watcher.close()
        await store.close()

"""Store faults that must be retried, not turned into data loss or a dead consumer."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from vatio.errors import BatchRejectedError, StoreUnavailableError
from vatio.model import DeadLetter, Reading, WriteBatch
from vatio.store import open_store, write_all
from vatio.store.postgres import RETENTION_LOCK

pytestmark = pytest.mark.integration

OLD_DAY = datetime(2020, 1, 1, 12, tzinfo=UTC)  # far outside the partitions made ahead


async def test_a_locked_sqlite_database_is_unavailable_not_fatal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/locked.db"
    store = open_store(url)
    await store.migrate()
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock past busy_timeout
    try:
        with pytest.raises(StoreUnavailableError, match="locked"):
            await write_all(store, [Reading("d", OLD_DAY, 1, 5.0)], "s")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await write_all(store, [Reading("d", OLD_DAY, 1, 5.0)], "s")).inserted == 1
    await store.close()


async def test_a_rolled_back_write_leaves_no_phantom_partition(fresh_pg_url: str) -> None:
    store = open_store(fresh_pg_url)
    await store.migrate()
    doomed = WriteBatch(
        readings=[Reading("d", OLD_DAY, 1, 5.0)],
        sites={"d": "s"},
        last_seen={"d": OLD_DAY},
        dead_letters=[DeadLetter(received_at=OLD_DAY, topic="t", reason="r", payload=cast(bytes, object()))],
    )
    # The partition for OLD_DAY is created inside this write's transaction, then rolled back.
    with pytest.raises(BatchRejectedError):
        await store.write(doomed)
    result = await write_all(store, [Reading("d", OLD_DAY, 1, 5.0)], "s")
    assert result.inserted == 1
    assert len(await store.readings("d", OLD_DAY, datetime(2020, 1, 2, tzinfo=UTC))) == 1
    await store.close()


async def test_a_write_racing_retention_reads_the_cutoff_retention_commits(fresh_pg_url: str) -> None:
    """A write that starts while retention raises the cutoff waits for it, then refuses by the new one."""
    store = open_store(fresh_pg_url)
    await store.migrate()
    now = datetime(2026, 3, 10, tzinfo=UTC)
    await write_all(store, [Reading("d", now - timedelta(days=5), 1, 5.0)], "s")
    retention = await asyncpg.connect(fresh_pg_url)
    try:
        # Retention's first statements, held open: the cutoff moves to now - 2 days.
        transaction = retention.transaction()
        await transaction.start()
        await retention.execute(f"SELECT pg_advisory_xact_lock({RETENTION_LOCK})")
        await retention.execute("UPDATE raw_retention SET cutoff = greatest(cutoff, $1)", now - timedelta(days=2))
        late = asyncio.create_task(write_all(store, [Reading("d", now - timedelta(days=4), 2, 5.0)], "s"))
        done, _ = await asyncio.wait({late}, timeout=0.5)
        assert not done, "the write went ahead under the old cutoff"
        await transaction.commit()
        result = await asyncio.wait_for(late, timeout=10)
        assert (result.inserted, result.too_old) == (0, 1)
    finally:
        await retention.close()
        await store.close()


async def test_retention_waits_for_a_write_in_progress(fresh_pg_url: str) -> None:
    store = open_store(fresh_pg_url)
    await store.migrate()
    writer = await asyncpg.connect(fresh_pg_url)
    try:
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute(f"SELECT pg_advisory_xact_lock_shared({RETENTION_LOCK})")  # a write's first step
        assert await writer.fetchval("SELECT cutoff FROM raw_retention") is None
        retention = asyncio.create_task(store.apply_retention(raw_days=1))
        done, _ = await asyncio.wait({retention}, timeout=0.5)
        assert not done, "retention raised the cutoff under a write that had read the old one"
        await transaction.commit()
        result = await asyncio.wait_for(retention, timeout=10)
        assert await writer.fetchval("SELECT cutoff FROM raw_retention") == result.cutoff
    finally:
        await writer.close()
        await store.close()

"""Store faults that must be retried, not turned into data loss or a dead consumer."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from vatio.errors import BatchRejectedError, StoreUnavailableError
from vatio.model import DeadLetter, Reading, WriteBatch
from vatio.store import open_store, write_all

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

"""Background upkeep of a store: rollups, partitions ahead, retention."""

from __future__ import annotations

import asyncio
import logging
import time

from vatio.errors import StoreError
from vatio.store.base import Store

log = logging.getLogger(__name__)


async def run_maintenance(
    store: Store,
    *,
    interval_s: float = 1.0,
    raw_days: int | None = None,
    retention_every_s: float = 3600.0,
) -> None:
    """Drain dirty rollup ranges every ``interval_s``; apply retention hourly.

    Runs until cancelled; a store error is logged and retried next round.
    """
    last_retention = 0.0
    while True:
        try:
            # Several rounds per tick while a backlog drains; each yields to the loop.
            for _ in range(100):
                if await store.refresh_rollups() == 0:
                    break
            now = time.monotonic()
            if now - last_retention >= retention_every_s:
                last_retention = now
                maintain = getattr(store, "maintain", None)
                if maintain is not None:
                    await maintain()
                if raw_days is not None:
                    result = await store.apply_retention(raw_days=raw_days)
                    log.info("retention: %s", result)
        except (StoreError, OSError) as exc:
            log.warning("store maintenance failed: %s", exc)
        await asyncio.sleep(interval_s)

"""Concurrent promotions of one device's versions leave exactly one live version, on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from vatio.model import ModelStatus, ModelVersion
from vatio.store import Store

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def _shadow(day: int) -> ModelVersion:
    return ModelVersion(
        detector="seasonal", device_id="d1", version=0, status=ModelStatus.SHADOW,
        trained_from=T0 - timedelta(days=365), trained_to=T0, created_at=T0 + timedelta(days=day),
        params=b"\x01", metrics={},
    )  # fmt: skip


async def test_concurrent_promotions_leave_one_live_version(store: Store) -> None:
    live_ids: list[int] = []
    for round_ in range(5):
        versions = [await store.save_model(_shadow(10 * round_ + k)) for k in range(4)]
        # Re-promoting the live version at the same time must neither deadlock nor leave two live.
        ids = [v.id for v in versions if v.id is not None] + live_ids
        await asyncio.gather(*(store.set_model_status(i, ModelStatus.LIVE) for i in ids))
        live = [m for m in await store.models(detector="seasonal") if m.status is ModelStatus.LIVE]
        assert len(live) == 1, f"round {round_}: {len(live)} live versions of one device"
        live_ids = [i for i in (live[0].id,) if i is not None]

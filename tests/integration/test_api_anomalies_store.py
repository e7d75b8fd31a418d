"""Store contract behind the anomalies and models API, on both backends: site filter,
keyset pages, one episode by id, and a status change that checks the current status."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from vatio.errors import ConflictError, NotFoundError
from vatio.model import Anomaly, ModelStatus, ModelVersion, Reading
from vatio.store import Store, write_all

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
KINDS = ("spike", "baseload_increase", "night_use")


def episode(device: str, minutes: int, kind: str) -> Anomaly:
    at = T0 + timedelta(minutes=minutes)
    return Anomaly(device_id=device, kind=kind, detector="edge", start=at, last=at, score=1.0, explanation="x")


async def seed(store: Store) -> list[Anomaly]:
    """d1, d2 in home-1 and d3 in home-2; three episodes per device and start (ties on start)."""
    await write_all(store, [Reading("d1", T0, power_w=1.0), Reading("d2", T0, power_w=1.0)], "home-1")
    await write_all(store, [Reading("d3", T0, power_w=1.0)], "home-2")
    stored = []
    for minutes in (0, 10, 20):
        for device in ("d1", "d2", "d3"):
            for kind in KINDS:
                anomaly, _ = await store.record_anomaly(episode(device, minutes, kind))
                closed = await store.close_anomaly(device, kind, at=anomaly.start + timedelta(minutes=5))
                assert closed is not None
                stored.append(closed)
    return stored


def newest_first(anomalies: list[Anomaly]) -> list[int | None]:
    return [a.id for a in sorted(anomalies, key=lambda a: (a.start, a.id or 0), reverse=True)]


async def test_site_filter_keeps_only_that_sites_devices(store: Store) -> None:
    stored = await seed(store)
    home1 = await store.anomalies(site_id="home-1", limit=1000)
    assert {a.device_id for a in home1} == {"d1", "d2"}
    assert [a.id for a in home1] == newest_first([a for a in stored if a.device_id != "d3"])
    assert await store.anomalies(site_id="nowhere") == []
    assert [a.device_id for a in await store.anomalies(site_id="home-2", device_id="d1")] == []


async def test_keyset_pages_cover_everything_once_despite_ties(store: Store) -> None:
    stored = await seed(store)
    pages: list[list[Anomaly]] = []
    before: tuple[datetime, int] | None = None
    while True:
        page = await store.anomalies(limit=4, before=before)
        if not page:
            break
        pages.append(page)
        last = page[-1]
        assert last.id is not None
        before = (last.start, last.id)
    assert len(pages) == 7  # 27 episodes, 4 a page
    assert [a.id for page in pages for a in page] == newest_first(stored)


async def test_get_anomaly_by_id(store: Store) -> None:
    stored = await seed(store)
    wanted = stored[4]
    assert wanted.id is not None
    assert await store.get_anomaly(wanted.id) == wanted
    assert await store.get_anomaly(10**9) is None


def model(status: ModelStatus, day: int) -> ModelVersion:
    return ModelVersion(
        detector="seasonal", device_id="d1", version=0, status=status, trained_from=T0 - timedelta(days=30),
        trained_to=T0, created_at=T0 + timedelta(days=day),
    )  # fmt: skip


async def test_expected_status_is_checked_before_the_change(store: Store) -> None:
    live = await store.save_model(model(ModelStatus.LIVE, 0))
    shadow = await store.save_model(model(ModelStatus.SHADOW, 1))
    assert live.id is not None
    assert shadow.id is not None
    with pytest.raises(ConflictError) as raised:
        await store.set_model_status(live.id, ModelStatus.LIVE, expect=ModelStatus.SHADOW)
    assert raised.value.state == "live"
    assert {m.id: m.status for m in await store.models()} == {live.id: "live", shadow.id: "shadow"}, "unchanged"
    promoted = await store.set_model_status(shadow.id, ModelStatus.LIVE, expect=ModelStatus.SHADOW)
    assert promoted == replace(shadow, status=ModelStatus.LIVE)
    assert {m.id: m.status for m in await store.models()} == {live.id: "retired", shadow.id: "live"}
    with pytest.raises(NotFoundError):
        await store.set_model_status(10**9, ModelStatus.LIVE, expect=ModelStatus.SHADOW)

"""Contract of detection storage, on both backends: episodes, checkpoints, model versions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from vatio.errors import NotFoundError
from vatio.model import Anomaly, ModelStatus, ModelVersion
from vatio.store import Store

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def _anomaly(minutes: int, score: float, *, kind: str = "baseload_increase", device: str = "d1") -> Anomaly:
    at = T0 + timedelta(minutes=minutes)
    return Anomaly(
        device_id=device, kind=kind, detector="vatio", start=at, last=at, score=score,
        explanation=f"observed {100 + minutes} W", expected_w=100.0, low_w=80.0, high_w=120.0,
        observed_w=100.0 + minutes, model_version="v1",
    )  # fmt: skip


async def test_consecutive_anomalies_extend_one_open_episode(store: Store) -> None:
    first, opened = await store.record_anomaly(_anomaly(0, 2.0))
    assert opened
    second, opened_again = await store.record_anomaly(_anomaly(30, 5.0))
    third, _ = await store.record_anomaly(_anomaly(60, 3.0))
    assert not opened_again
    assert first.id == second.id == third.id
    (episode,) = await store.anomalies(device_id="d1")
    assert episode.start == T0
    assert episode.last == T0 + timedelta(minutes=60)
    assert episode.score == 5.0, "the peak score is kept"
    assert episode.observed_w == 160.0, "the newest numbers explain the episode"
    assert episode.end is None


async def test_closing_ends_the_episode_and_the_next_anomaly_opens_another(store: Store) -> None:
    await store.record_anomaly(_anomaly(0, 2.0))
    closed = await store.close_anomaly("d1", "baseload_increase", at=T0 + timedelta(hours=2))
    assert closed is not None
    assert closed.end == T0 + timedelta(hours=2)
    assert await store.close_anomaly("d1", "baseload_increase", at=T0) is None
    again, opened = await store.record_anomaly(_anomaly(300, 1.5))
    assert opened
    assert again.id != closed.id
    assert [a.id for a in await store.anomalies(open_only=True)] == [again.id]
    newest_first = await store.anomalies()
    assert [a.id for a in newest_first] == [again.id, closed.id]


async def test_episodes_of_other_kinds_and_devices_are_separate(store: Store) -> None:
    _, a = await store.record_anomaly(_anomaly(0, 2.0))
    _, b = await store.record_anomaly(_anomaly(0, 2.0, kind="spike"))
    _, c = await store.record_anomaly(_anomaly(0, 2.0, device="d2"))
    assert [a, b, c] == [True, True, True]
    assert len(await store.anomalies(device_id="d1")) == 2


async def test_anomalies_filter_by_overlap_with_the_range(store: Store) -> None:
    await store.record_anomaly(_anomaly(0, 2.0))
    await store.close_anomaly("d1", "baseload_increase", at=T0 + timedelta(hours=1))
    await store.record_anomaly(_anomaly(24 * 60, 2.0))
    late = await store.anomalies(start=T0 + timedelta(hours=2))
    assert [a.start for a in late] == [T0 + timedelta(days=1)]
    early = await store.anomalies(end=T0 + timedelta(hours=2))
    assert [a.start for a in early] == [T0]


async def test_detector_state_checkpoints_replace_each_other(store: Store) -> None:
    await store.save_states("edge", {"d1": b"\x00one", "d2": b"two"}, at=T0)
    await store.save_states("edge", {"d1": b"\x00three"}, at=T0 + timedelta(minutes=1))
    await store.save_states("seasonal", {"d1": b"other"}, at=T0)
    assert await store.load_states("edge") == {"d1": b"\x00three", "d2": b"two"}
    assert await store.load_states("seasonal") == {"d1": b"other"}
    assert await store.load_states("nothing") == {}


def _model(status: ModelStatus) -> ModelVersion:
    return ModelVersion(
        detector="seasonal", device_id="d1", version=0, status=status, trained_from=T0 - timedelta(days=365),
        trained_to=T0, created_at=T0, params=b"\x01\x02", metrics={"f1": 0.9},
    )  # fmt: skip


async def test_model_versions_count_up_and_promotion_retires_the_live_one(store: Store) -> None:
    live = await store.save_model(_model(ModelStatus.LIVE))
    shadow = await store.save_model(replace(_model(ModelStatus.SHADOW), created_at=T0 + timedelta(days=1)))
    assert (live.version, shadow.version) == (1, 2)
    assert shadow.id is not None
    promoted = await store.set_model_status(shadow.id, ModelStatus.LIVE)
    assert promoted.status is ModelStatus.LIVE
    statuses = {m.version: m.status for m in await store.models(detector="seasonal")}
    assert statuses == {1: ModelStatus.RETIRED, 2: ModelStatus.LIVE}
    (newest, _) = await store.models(device_id="d1")
    assert newest.params == b"\x01\x02"
    assert newest.metrics == {"f1": 0.9}
    with pytest.raises(NotFoundError):
        await store.set_model_status(10_000, ModelStatus.LIVE)

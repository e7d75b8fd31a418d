"""The ingest pipeline without a broker: batching, ack-after-commit, backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from vatio.contracts import encode_telemetry, status_topic, telemetry_topic
from vatio.errors import BatchRejectedError, StoreUnavailableError
from vatio.ingest.pipeline import IngestPipeline
from vatio.model import Reading, WriteBatch, WriteResult
from vatio.store import Store, open_store

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/p.db")
    await store.migrate()
    yield store
    await store.close()


def _message(device: str, first_seq: int, n: int = 1, *, site: str = "s1") -> tuple[str, bytes]:
    readings = [
        Reading(device, NOW - timedelta(minutes=10) + timedelta(seconds=first_seq + k), first_seq + k, 50.0)
        for k in range(n)
    ]
    return telemetry_topic(site, device), encode_telemetry(device, readings)


def _pipeline(store: Store, **kwargs: object) -> tuple[IngestPipeline, list[tuple[int, int]]]:
    pipeline = IngestPipeline(store=store, clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]
    acked: list[tuple[int, int]] = []
    pipeline.ack = acked.extend
    return pipeline, acked


async def test_acks_only_after_commit(store: Store) -> None:
    pipeline, acked = _pipeline(store)
    for pid in range(1, 4):
        pipeline.on_message(*_message("d1", pid * 10, 5), qos=1, packet_id=pid)
    assert acked == []
    assert (await store.stats()).readings == 0
    await pipeline.flush()
    assert [pid for _, pid in acked] == [1, 2, 3]
    assert (await store.stats()).readings == 15
    assert pipeline.counters.readings_inserted == 15


async def test_redelivered_messages_are_stored_once(store: Store) -> None:
    pipeline, _ = _pipeline(store)
    message = _message("d1", 0, 20)
    pipeline.on_message(*message, qos=1, packet_id=1)
    await pipeline.flush()
    pipeline.on_message(*message, qos=1, packet_id=7)
    await pipeline.flush()
    assert (await store.stats()).readings == 20
    assert pipeline.counters.duplicates == 20


async def test_bad_readings_are_dead_lettered_and_good_ones_kept(store: Store) -> None:
    pipeline, acked = _pipeline(store)
    topic = telemetry_topic("s1", "d1")
    good = {"ts": "2026-11-24T11:00:00.000Z", "seq": 1, "power_w": 10.0}
    bad = {"ts": "2026-11-24T11:00:01.000Z", "seq": 2, "power_w": 1e7}
    payload = orjson.dumps({"v": 1, "device": "d1", "readings": [good, bad]})
    pipeline.on_message(topic, payload, 1, 5)
    pipeline.on_message(topic, b"{not json", 1, 6)
    await pipeline.flush()
    letters = await store.dead_letters()
    assert [d.payload for d in letters] == [b"{not json", payload]
    assert "JSON" in letters[0].reason
    assert "readings[1].power_w" in letters[1].reason
    assert "1 accepted" in letters[1].reason
    assert [r.seq for r in await store.readings("d1", NOW - timedelta(days=1), NOW)] == [1]
    assert sorted(pid for _, pid in acked) == [5, 6]


async def test_status_messages_update_the_device(store: Store) -> None:
    pipeline, _ = _pipeline(store)
    pipeline.on_message(*_message("d1", 0), qos=1, packet_id=1)
    body = orjson.dumps({"v": 1, "online": False, "ts": "2026-11-24T11:59:00Z", "fw": "1.2.3"})
    pipeline.on_message(status_topic("s1", "d1"), body, 1, 2)
    pipeline.on_message(status_topic("s1", "d1"), b'{"v": 1}', 1, 3)
    await pipeline.flush()
    device = await store.get_device("d1", now=NOW)
    assert device is not None
    assert device.firmware == "1.2.3"
    assert device.status_online is False
    assert pipeline.counters.dead_letters == 1


async def test_pauses_when_the_buffer_is_full_and_resumes_after_commit(store: Store) -> None:
    pipeline, _ = _pipeline(store, max_buffered_readings=100)
    events: list[str] = []
    pipeline.pause = lambda: events.append("pause")
    pipeline.resume = lambda: events.append("resume")
    for pid in range(1, 12):
        pipeline.on_message(*_message("d1", pid * 10, 10), qos=1, packet_id=pid)
    assert events == ["pause"]
    await pipeline.flush()
    assert events == ["pause", "resume"]


async def test_readings_older_than_raw_retention_are_refused(store: Store) -> None:
    pipeline, _ = _pipeline(store, raw_days=1)
    old = Reading("d1", NOW - timedelta(days=2), 1, 5.0)
    pipeline.on_message(telemetry_topic("s1", "d1"), encode_telemetry("d1", [old]), 1, 1)
    pipeline.on_message(*_message("d1", 5), qos=1, packet_id=2)
    await pipeline.flush()
    assert (await store.stats()).readings == 1
    (letter,) = await store.dead_letters()
    assert "readings[0].ts" in letter.reason


async def test_an_ingest_without_raw_days_is_still_held_to_the_stores_cutoff(store: Store) -> None:
    """The store's own guard (retention already applied) catches what an unguarded ingest lets through."""
    await store.apply_retention(raw_days=1, now=NOW)
    pipeline, acked = _pipeline(store)
    old = Reading("d1", NOW - timedelta(days=2), 1, 5.0)
    pipeline.on_message(telemetry_topic("s1", "d1"), encode_telemetry("d1", [old]), 1, 1)
    pipeline.on_message(*_message("d1", 5), qos=1, packet_id=2)
    await pipeline.flush()
    assert (await store.stats()).readings == 1
    assert pipeline.counters.too_old == 1
    (letter,) = await store.dead_letters()
    assert "older than raw retention" in letter.reason
    assert sorted(pid for _, pid in acked) == [1, 2]


class _FlakyStore:
    """A store whose first writes fail as if the database were down."""

    def __init__(self, inner: Store, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def write(self, batch: WriteBatch) -> WriteResult:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("database restarting")
        return await self.inner.write(batch)


async def test_a_store_outage_delays_acks_and_loses_nothing(store: Store) -> None:
    flaky = _FlakyStore(store, failures=2)
    pipeline, acked = _pipeline(flaky)  # type: ignore[arg-type]
    pipeline.on_message(*_message("d1", 0, 3), qos=1, packet_id=9)
    await pipeline.flush()
    assert pipeline.counters.write_errors == 2
    assert [pid for _, pid in acked] == [9]
    assert (await store.stats()).readings == 3


class _RejectingStore:
    """A store that refuses every batch with readings, as if validation had missed something."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def write(self, batch: WriteBatch) -> WriteResult:
        if batch.readings:
            raise BatchRejectedError("value out of range")
        return await self.inner.write(batch)


class _StatusRefusingStore:
    """A store that refuses every status, as if validation had missed something."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.outages = 1  # the first write of the dead letter fails as if the database were down

    async def write(self, batch: WriteBatch) -> WriteResult:
        if self.outages:
            self.outages -= 1
            raise StoreUnavailableError("database restarting")
        return await self.inner.write(batch)

    async def set_device_status(self, *args: object, **kwargs: object) -> None:
        raise BatchRejectedError("invalid byte sequence \x00")


async def test_a_status_the_store_refuses_is_kept_as_a_dead_letter(store: Store) -> None:
    pipeline, acked = _pipeline(_StatusRefusingStore(store))  # type: ignore[arg-type]
    topic = status_topic("s1", "d1")
    body = orjson.dumps({"v": 1, "online": True, "fw": "9.9"})
    pipeline.on_message(topic, body, 1, 4)
    await pipeline.flush()
    assert [pid for _, pid in acked] == [4]
    letters = await store.dead_letters()
    assert [(d.topic, d.payload) for d in letters] == [(topic, body)], "the refused status is kept byte for byte"
    assert letters[0].reason == "store refused the status: invalid byte sequence \\x00"
    # Counted once, although its first write failed and was retried.
    assert pipeline.counters.write_errors == 1
    assert pipeline.counters.dead_letters == 1
    assert pipeline.counters.dead_letter_reasons == {"store refused the status": 1}
    assert pipeline.counters.status_updates == 0


async def test_rejected_batches_do_not_leave_the_consumer_paused(store: Store) -> None:
    pipeline, acked = _pipeline(_RejectingStore(store), max_buffered_readings=20)  # type: ignore[arg-type]
    events: list[str] = []
    pipeline.pause = lambda: events.append("pause")
    pipeline.resume = lambda: events.append("resume")
    for pid in range(1, 4):
        pipeline.on_message(*_message("d1", pid * 10, 8), qos=1, packet_id=pid)
        await pipeline.flush()
    assert events == [], "nothing is waiting for the database, so nothing should pause"
    assert [pid for _, pid in acked] == [1, 2, 3]
    assert len(await store.dead_letters()) == 3, "the refused readings are kept as dead letters"


async def test_a_pause_in_force_is_reapplied_on_a_new_connection(store: Store) -> None:
    pipeline, _ = _pipeline(store, max_buffered_readings=10)
    events: list[str] = []
    pipeline.pause = lambda: events.append("pause")
    pipeline.on_message(*_message("d1", 0, 12), qos=1, packet_id=1)
    pipeline.on_connected()
    assert events == ["pause", "pause"]


class _StallingStore:
    """The first write hangs until cancelled, as a commit in flight at shutdown does; later ones pass."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.stalled = inner, asyncio.Event()
        self.writes = 0

    async def write(self, batch: WriteBatch) -> WriteResult:
        self.writes += 1
        if self.writes == 1:
            self.stalled.set()
            await asyncio.Event().wait()
        return await self.inner.write(batch)


async def test_a_flush_cancelled_mid_commit_is_written_and_acked_first_by_the_last_flush(store: Store) -> None:
    pipeline, acked = _pipeline(_StallingStore(store))  # type: ignore[arg-type]
    stalling = pipeline.store
    assert isinstance(stalling, _StallingStore)
    for pid in (1, 2):
        pipeline.on_message(*_message("d1", pid * 10, 3), qos=1, packet_id=pid)
    flusher = asyncio.create_task(pipeline.flush())
    await stalling.stalled.wait()
    pipeline.on_message(*_message("d1", 30, 3), qos=1, packet_id=3)  # arrives while 1-2 commit
    # Shutdown: the final flush is called while the flusher is being cancelled, as the service does.
    final = asyncio.create_task(pipeline.flush())
    flusher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flusher
    await final
    assert [pid for _, pid in acked] == [1, 2, 3]  # in arrival order, none skipped
    assert (await store.stats()).readings == 9

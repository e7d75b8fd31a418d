"""Replay through a real pipeline: private mosquitto -> in-process ingest -> SQLite.

What the store holds must be the trace, value for value: power, the
cumulative counter and voltage of every present row, stamped at the end of
its interval and shifted so the data ends at ``shift_to``; rows of a gap are
absent; labels of injected anomalies are written shifted the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from vatio.ingest.pipeline import IngestPipeline
from vatio.ingest.service import IngestOptions, IngestService
from vatio.model import Reading
from vatio.model.anomaly import AnomalyKind
from vatio.sim.datasets import load
from vatio.sim.inject import MeterTrace, inject
from vatio.sim.replay import main, replay
from vatio.store import Store, open_store
from vatio.testing import mosquitto
from vatio.transport import BrokerUrl

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHIFT_TO = datetime(2025, 6, 1, 12, 7, 30, tzinfo=UTC)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
def broker_port() -> Iterator[int]:
    with mosquitto() as port:
        yield port


@pytest.fixture
async def store(broker_port: int, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A running ``vatio ingest`` (in process) writing to a fresh SQLite file."""
    store = open_store(f"sqlite:///{tmp_path}/replay.db")
    await store.migrate()
    pipeline = IngestPipeline(store=store, flush_interval_s=0.05)
    service = IngestService(
        broker=BrokerUrl.parse(f"mqtt://127.0.0.1:{broker_port}"),
        pipeline=pipeline,
        options=IngestOptions(group=f"replay-{request.node.name[:40]}", instance="0", session_expiry_s=60),
    )
    task = asyncio.create_task(service.run(), name="ingest-replay-test")
    try:
        async with asyncio.timeout(10):
            await service.connected.wait()
        yield store
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def stored(store: Store, device: str, count: int, timeout_s: float = 20.0) -> list[Reading]:
    readings: list[Reading] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while len(readings := await store.readings(device, EARLIEST, LATEST)) < count:
                await asyncio.sleep(0.05)
    return readings


def assert_stored_is_trace(readings: list[Reading], trace: MeterTrace, offset_s: int) -> None:
    rows = np.flatnonzero(trace.present)
    assert len(readings) == len(rows)
    expected_ts = (trace.ts[rows] + trace.step_s + offset_s).tolist()
    assert [int(r.ts.timestamp()) for r in readings] == expected_ts
    assert [r.seq for r in readings] == (rows + 1).tolist()
    for name in ("power_w", "energy_wh", "voltage_v"):
        values = getattr(trace, name)[rows]
        got = np.array([np.nan if getattr(r, name) is None else getattr(r, name) for r in readings])
        assert got.tobytes() == values.tobytes(), name


def synthetic(device: str, n: int = 96, step: int = 900) -> MeterTrace:
    rng = np.random.default_rng(len(device))
    ts = 1_700_000_100 // step * step + np.arange(n, dtype=np.int64) * step
    return MeterTrace.from_intervals(device, ts, step, power_w=np.round(rng.uniform(100, 3000, n), 1))


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")
async def test_real_slice_is_stored_value_for_value_shifted_to_end_at_shift_to(broker_port: int, store: Store) -> None:
    traces = load(DATA / "sgsc_households_halfhourly.csv.gz", "sgsc")[:2]
    traces = [t.slice_rows(0, 300) for t in traces]
    stats = await replay(
        traces, broker_host="127.0.0.1", broker_port=broker_port, speed=0, shift_to=SHIFT_TO, batch=16, qos=1
    )
    assert stats.offset_s % 1800 == 0
    assert stats.last_ts is not None
    assert SHIFT_TO - timedelta(minutes=30) < stats.last_ts <= SHIFT_TO
    assert stats.readings == sum(int(t.present.sum()) for t in traces)
    for trace in traces:
        readings = await stored(store, trace.device_id, int(trace.present.sum()))
        assert_stored_is_trace(readings, trace, stats.offset_s)
    assert readings[-1].ts == datetime(2025, 6, 1, 12, tzinfo=UTC)


async def test_injected_trace_with_labels_beside(broker_port: int, store: Store, tmp_path: Path) -> None:
    clean = synthetic("inj-1", n=4 * 24 * 4)
    trace, labels = inject(clean, [AnomalyKind.GAP, AnomalyKind.COUNTER_RESET], seed=4)
    labels_out = tmp_path / "labels.json"
    stats = await replay(
        [trace],
        broker_host="127.0.0.1",
        broker_port=broker_port,
        speed=0,
        shift_to=SHIFT_TO,
        batch=50,
        qos=0,
        site="lab",
        labels_out=labels_out,
        labels=labels,
    )
    readings = await stored(store, "inj-1", int(trace.present.sum()))
    assert_stored_is_trace(readings, trace, stats.offset_s)
    assert len(readings) < len(trace), "the gap's rows are absent"
    written = json.loads(labels_out.read_text())
    assert [row["kind"] for row in written] == [label.kind.value for label in labels]
    for row, label in zip(written, labels, strict=True):
        start = datetime.fromisoformat(row["start"].replace("Z", "+00:00"))
        assert start == label.start + timedelta(seconds=stats.offset_s)
        assert row["magnitude"] == label.magnitude
    assert min(np.diff([r.energy_wh for r in readings if r.energy_wh is not None])) < 0, "the reset shows"


async def test_speed_paces_the_publishing(broker_port: int, store: Store) -> None:
    trace = synthetic("paced-1", n=11, step=60)  # 10 minutes of data between first and last
    stats = await replay([trace], broker_host="127.0.0.1", broker_port=broker_port, speed=600, shift_to=None)
    assert 0.9 <= stats.elapsed_s < 3.0
    assert stats.offset_s == 0
    readings = await stored(store, "paced-1", 11)
    assert_stored_is_trace(readings, trace, 0)


async def test_command_line_replays_a_csv_with_injections(broker_port: int, store: Store, tmp_path: Path) -> None:
    csv_in = tmp_path / "in.csv"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [f"{(start + timedelta(hours=h)).isoformat()},cli-1,{500 + 100 * (h % 7)}" for h in range(24 * 10)]
    csv_in.write_text("timestamp,device_id,power_w\n" + "\n".join(rows) + "\n")
    labels_csv = tmp_path / "out" / "labels.csv"
    argv = [str(csv_in), "--format", "csv", "--speed", "0", "--broker", f"mqtt://127.0.0.1:{broker_port}"]
    argv += ["--shift-to", "2025-06-01T00:00:00Z", "--inject", "left_on,spike", "--seed", "3"]
    argv += ["--labels-out", str(labels_csv), "--limit-rows", "200", "--site", "cli"]
    assert await asyncio.to_thread(main, argv) == 0
    (trace,) = load(csv_in, "csv")
    injected, labels = inject(trace.slice_rows(0, 200), [AnomalyKind.LEFT_ON, AnomalyKind.SPIKE], seed=3)
    readings = await stored(store, "cli-1", 200)
    assert readings[-1].ts == datetime(2025, 6, 1, tzinfo=UTC)
    assert_stored_is_trace(readings, injected, int(readings[-1].ts.timestamp()) - int(trace.ts[200]))
    assert labels_csv.read_text().splitlines()[0] == "kind,device_id,start,end,magnitude,detail"
    assert len(labels_csv.read_text().splitlines()) == 1 + len(labels)


def test_command_line_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("timestamp,device_id,power_w\n2026-01-01T00:00:00Z,m-1,1\n2026-01-01T00:15:00Z,m-1,1\n")
    assert main([str(csv_in), "--format", "xml"]) == 2
    assert main([str(csv_in), "--format", "csv", "--inject", "gremlins"]) == 2
    assert "unknown anomaly kind" in capsys.readouterr().err
    assert main([str(csv_in), "--format", "csv", "--shift-to", "soon"]) == 2
    assert main([str(csv_in), "--format", "csv", "--broker", "http://x"]) == 2
    assert main([str(tmp_path / "nope.csv"), "--format", "csv"]) == 2

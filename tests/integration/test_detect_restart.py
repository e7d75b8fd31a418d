"""`vatio detect` killed and restarted mid-stream: baselines restored, no second alert."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from vatio.contracts import encode_telemetry, telemetry_topic
from vatio.ingest.mqtt import MqttSubscriber
from vatio.model import Reading
from vatio.sim.wire import FastPublisher
from vatio.store import Store, open_store

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 20, tzinfo=UTC)
STEP = timedelta(seconds=10)


class _Meter:
    """One plug: 300 W with noise, then whatever level the test asks for."""

    def __init__(self) -> None:
        self.seq = 0
        self.energy_wh = 1000.0
        self.rng = np.random.default_rng(7)

    def readings(self, n: int, level_w: float) -> list[Reading]:
        out = []
        for _ in range(n):
            power = level_w + float(self.rng.normal(0, 15))
            self.energy_wh += power * STEP.total_seconds() / 3600
            out.append(
                Reading("plug-1", START + self.seq * STEP, self.seq, power, self.energy_wh, 230.0, None, None, 50.0)
            )
            self.seq += 1
        return out


class _Detect:
    def __init__(self, port: int, db: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vatio.cli", "detect", "--broker", f"mqtt://127.0.0.1:{port}", "--db", db,
             "--instance", "t", "--checkpoint-every", "0.3", "--report-every", "0.1"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.counters: dict[str, int] = {}

    async def wait_for(self, counter: str, n: int, timeout_s: float = 30) -> dict[str, int]:
        """Counters once ``counter`` reached ``n`` (the process reports every 0.1 s)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            while self.counters.get(counter, 0) < n:
                line = await asyncio.to_thread(self.proc.stdout.readline)
                if line.startswith("{"):
                    self.counters = json.loads(line)["detect"]
        return self.counters


@pytest.fixture
async def db(fresh_pg_url: str) -> AsyncIterator[tuple[str, Store]]:
    store = open_store(fresh_pg_url)
    await store.migrate()
    yield fresh_pg_url, store
    await store.close()


async def test_restart_restores_baselines_and_raises_no_second_alert(broker_port: int, db: tuple[str, Store]) -> None:
    url, store = db
    events: list[dict[str, object]] = []

    def on_alert(topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        events.append(orjson.loads(payload))

    meter = _Meter()
    topic = telemetry_topic("home", "plug-1")
    detect = _Detect(broker_port, url)
    alerts = MqttSubscriber(
        host="127.0.0.1", port=broker_port, client_id="alerts-watch", subscriptions=["vatio/v1/+/alerts"],
        qos=0, clean_start=True, on_message=on_alert,
    )  # fmt: skip
    try:
        async with alerts, FastPublisher(host="127.0.0.1", port=broker_port, client_id="plug") as pub:

            async def send(readings: list[Reading]) -> None:
                for k in range(0, len(readings), 10):
                    await pub.publish(topic, encode_telemetry("plug-1", readings[k : k + 10]))
                await pub.drain()

            await asyncio.sleep(1.0)  # detect subscribes
            await send(meter.readings(400, 300.0))  # learn what normal is
            await detect.wait_for("readings", 400)
            await send(meter.readings(20, 3000.0))  # a load that stays on
            counters = await detect.wait_for("opened", 1)
            assert counters["readings"] == 420
            await asyncio.sleep(1.0)  # a checkpoint after the step
            opened = [e for e in events if e["event"] == "anomaly_opened"]
            assert len(opened) == 1
            assert opened[0]["device"] == "plug-1"
            assert "observed" in str(opened[0]["explanation"])
            assert "band" in str(opened[0]["explanation"])

            os.kill(detect.proc.pid, signal.SIGKILL)
            detect.proc.wait()
            detect = _Detect(broker_port, url)
            await asyncio.sleep(1.0)
            await send(meter.readings(20, 3000.0))
            counters = await detect.wait_for("extended", 1)
            # A fresh detector would still be warming up and flag none of these.
            assert counters["anomalous_readings"] == counters["readings"] == 20, "baselines were not restored"
            assert counters["opened"] == 0
            (episode,) = await store.anomalies(device_id="plug-1")
            assert episode.end is None
            assert episode.last == START + 439 * STEP
            assert len([e for e in events if e["event"] == "anomaly_opened"]) == 1

            # Back to normal. The EWMA statistic decays through the former level for
            # about ten minutes, then clear_after normal readings resolve the episode.
            await send(meter.readings(120, 300.0))
            counters = await detect.wait_for("resolved", 1)
            assert counters["opened"] == 0
            await asyncio.sleep(0.5)  # the resolved event crosses the broker
            resolved = [e for e in events if e["event"] == "anomaly_resolved"]
            assert len(resolved) == 1
            (episode,) = await store.anomalies(device_id="plug-1")
            assert episode.end is not None
    finally:
        detect.proc.kill()
        detect.proc.wait()

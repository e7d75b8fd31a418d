"""Exactly once under failure: ingest is SIGKILLed mid-stream and restarted.

100,000 readings are published at QoS 1 through a real mosquitto into a real
PostgreSQL while the `vatio ingest` process is killed with SIGKILL and
started again with the same session. Every reading must be stored once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from vatio.contracts import encode_telemetry, telemetry_topic
from vatio.model import Reading
from vatio.sim.wire import FastPublisher

pytestmark = pytest.mark.integration

READINGS = 100_000
DEVICES = 200
PER_MESSAGE = 2


def _start_ingest(port: int, db: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vatio.cli", "ingest", "--broker", f"mqtt://127.0.0.1:{port}",
         "--db", db, "--instance", "eo", "--batch", "2000", "--no-rollups"],
    )  # fmt: skip


async def _stored(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM readings"))


async def _wait_for(conn: asyncpg.Connection, count: int, timeout_s: float) -> int:
    async with asyncio.timeout(timeout_s):
        while (n := await _stored(conn)) < count:
            await asyncio.sleep(0.1)
    return n


def _messages() -> list[tuple[str, bytes]]:
    start = datetime(2026, 11, 20, tzinfo=UTC)
    out = []
    for m in range(READINGS // PER_MESSAGE):
        d = m % DEVICES
        device = f"eo-{d:04d}"
        base = (m // DEVICES) * PER_MESSAGE
        readings = [
            Reading(device, start + timedelta(seconds=base + k), base + k, float(base + k), None)
            for k in range(PER_MESSAGE)
        ]
        out.append((telemetry_topic(f"site-{d % 7}", device), encode_telemetry(device, readings)))
    return out


async def test_every_reading_stored_exactly_once_across_sigkill(broker_port: int, fresh_pg_url: str) -> None:
    migrate = [sys.executable, "-m", "vatio.cli", "db", "migrate", "--db", fresh_pg_url]
    await asyncio.to_thread(subprocess.run, migrate, check=True)
    conn = await asyncpg.connect(fresh_pg_url)
    ingest = _start_ingest(broker_port, fresh_pg_url)
    try:
        messages = _messages()
        async with FastPublisher(host="127.0.0.1", port=broker_port, client_id="eo-pub", window=500) as pub:
            # A first message proves the consumer's session exists before the stream starts.
            await pub.publish(*messages[0])
            await _wait_for(conn, PER_MESSAGE, timeout_s=30)
            killed_at = None
            for i, (topic, payload) in enumerate(messages[1:], start=1):
                await pub.publish(topic, payload, qos=1)
                if i % 500 == 0:
                    await asyncio.sleep(0.02)  # ~25k messages/s: the kill lands mid-stream
                if i == len(messages) // 3:
                    await _wait_for(conn, 5_000, timeout_s=30)
                    os.kill(ingest.pid, signal.SIGKILL)
                    ingest.wait()
                    killed_at = await _stored(conn)
                if i == len(messages) // 2:
                    ingest = _start_ingest(broker_port, fresh_pg_url)
            await pub.drain()
        assert killed_at is not None
        assert 0 < killed_at < READINGS, "the kill must land while the stream is flowing"

        assert await _wait_for(conn, READINGS, timeout_s=120) == READINGS
        await asyncio.sleep(1.0)  # a straggling redelivery would show up now
        assert await _stored(conn) == READINGS
        pairs = await conn.fetchval("SELECT count(DISTINCT (device_id, seq)) FROM readings")
        assert pairs == READINGS
        per_device = await conn.fetch("SELECT device_id, count(*) AS n FROM readings GROUP BY device_id")
        assert {r["n"] for r in per_device} == {READINGS // DEVICES}
    finally:
        ingest.kill()
        ingest.wait()
        await conn.close()

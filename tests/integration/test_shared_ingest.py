"""Two `vatio ingest` processes in one shared-subscription group split the stream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from vatio.contracts import encode_telemetry, telemetry_topic
from vatio.model import Reading
from vatio.sim.wire import FastPublisher

pytestmark = pytest.mark.integration

MESSAGES = 20_000


async def _last_counters(proc: asyncio.subprocess.Process) -> dict[str, int]:
    assert proc.stdout is not None
    counters: dict[str, int] = {}
    for line in (await proc.stdout.read()).decode().splitlines():
        if line.startswith("{"):
            counters = json.loads(line)["ingest"]
    return counters


async def test_two_ingest_processes_split_the_stream(broker_port: int, fresh_pg_url: str) -> None:
    cli = [sys.executable, "-m", "vatio.cli"]
    await asyncio.to_thread(subprocess.run, [*cli, "db", "migrate", "--db", fresh_pg_url], check=True)
    ingest = [*cli, "ingest", "--broker", f"mqtt://127.0.0.1:{broker_port}", "--db", fresh_pg_url]
    procs = [
        await asyncio.create_subprocess_exec(
            *ingest,
            "--instance",
            name,
            "--no-rollups",
            "--report-every",
            "0.2",
            stdout=asyncio.subprocess.PIPE,
        )
        for name in ("a", "b")
    ]
    conn = await asyncpg.connect(fresh_pg_url)
    try:
        await asyncio.sleep(2.0)  # both subscribe before the stream starts
        start = datetime(2026, 11, 22, tzinfo=UTC)
        async with FastPublisher(host="127.0.0.1", port=broker_port, client_id="shared-pub") as pub:
            for m in range(MESSAGES):
                device = f"sh-{m % 100:03d}"
                reading = Reading(device, start + timedelta(seconds=m), m, 1.0)
                await pub.publish(telemetry_topic("site", device), encode_telemetry(device, [reading]))
            await pub.drain()
        async with asyncio.timeout(60):
            while await conn.fetchval("SELECT count(*) FROM readings") < MESSAGES:
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # let each process report its final counters
    finally:
        for proc in procs:
            proc.terminate()
        await conn.close()
    counters = [await _last_counters(proc) for proc in procs]
    inserted = [c["readings_inserted"] for c in counters]
    assert sum(inserted) == MESSAGES
    assert all(n > MESSAGES // 10 for n in inserted), f"the stream was not shared: {inserted}"
    assert sum(c["duplicates"] for c in counters) == 0

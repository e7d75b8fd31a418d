"""`vatio up --for 30`: the whole system, checked from outside through its API."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from vatio.testing import free_port, fresh_database

pytestmark = pytest.mark.e2e

RUN_FOR_S = 30
EXPECTED_DEVICES = {f"home-{h}-{name}" for h in (1, 2, 3) for name in ("main", "plug-1")}


def _wait_healthy(client: httpx.Client, proc: subprocess.Popen[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vatio up exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("API never became healthy")


def _wait_for_fleet(client: httpx.Client, proc: subprocess.Popen[str], timeout_s: float = RUN_FOR_S - 5) -> None:
    """Until every simulated meter is listed and home-1-main has ten readings.

    The API answers before ingest has connected and the simulator has started,
    so a fixed sleep after /health races with a slow start on a loaded machine.
    The wait ends before the run does: it starts at /health, the run's clock
    only once the simulator starts.
    """
    deadline = time.monotonic() + timeout_s
    listed: set[str] = set()
    readings = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("vatio up exited early")
        listed = {d["id"] for d in client.get("/api/v1/devices").json()["items"]}
        if listed >= EXPECTED_DEVICES:
            raw = client.get("/api/v1/devices/home-1-main/readings").json()
            readings = len(raw["items"])
            if readings >= 10:
                return
        time.sleep(0.5)
    raise AssertionError(f"after {timeout_s:g}s: missing {sorted(EXPECTED_DEVICES - listed)}, {readings} readings")


def _check_system(client: httpx.Client) -> None:
    devices = client.get("/api/v1/devices").json()["items"]
    by_id = {d["id"]: d for d in devices}
    assert set(by_id) >= EXPECTED_DEVICES
    assert all(by_id[d]["online"] for d in EXPECTED_DEVICES)
    assert by_id["home-2-plug-1"]["site"] == "home-2"

    # From the start of the last hour: hourly energy buckets count only if they start in the span,
    # and a span of "the last hour" run at hh:59:30 left out the hour every reading is in.
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    span = {"start": start.isoformat(), "end": (now + timedelta(minutes=1)).isoformat()}
    raw = client.get("/api/v1/devices/home-1-main/readings", params=span).json()
    assert raw["resolution"] == "raw"
    seqs = [r["seq"] for r in raw["items"]]
    assert len(seqs) >= 10
    assert seqs == sorted(seqs)
    assert all(r["power_w"] > 0 and r["energy_wh"] > 0 for r in raw["items"])

    minutes = client.get("/api/v1/devices/home-1-main/readings", params={**span, "resolution": "1m"}).json()
    assert minutes["items"], "rollups were not maintained"
    assert sum(b["samples"] for b in minutes["items"]) <= len(seqs) + 2

    energy = client.get("/api/v1/devices/home-1-main/energy", params={**span, "bucket": "hour"}).json()
    counter_delta = raw["items"][-1]["energy_wh"] - raw["items"][0]["energy_wh"]
    assert energy["total_wh"] > 0
    # Energy comes from the counter: it cannot exceed what the counter advanced over the stored span.
    assert energy["total_wh"] <= counter_delta + 1e-6

    missing = client.get("/api/v1/devices/nope/readings")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def _run_up(extra: list[str], tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "vatio.cli", "up", "--for", str(RUN_FOR_S), "--port", str(port),
           "--interval", "1", "--data-dir", str(tmp_path / "data"), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            _wait_healthy(client, proc)
            _wait_for_fleet(client, proc)
            _check_system(client)
        out, _ = proc.communicate(timeout=RUN_FOR_S + 30)
    except AssertionError as exc:
        proc.kill()
        # What vatio up printed is the only trace of why a run went wrong.
        raise AssertionError(f"{exc}\n--- vatio up printed ---\n{proc.communicate()[0]}") from exc
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}" in out
    assert "stopped:" in out
    # Every meter reports its connection once the broker accepts it (the live display).
    assert f"meters connected={len(EXPECTED_DEVICES)}/{len(EXPECTED_DEVICES)}" in out


def test_up_on_embedded_defaults(tmp_path: Path) -> None:
    _run_up(["--mqtt-port", str(free_port())], tmp_path)
    assert (tmp_path / "data" / "vatio.db").is_file()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("vatio_e2e") as url:
        yield url


def test_up_on_postgres_and_mosquitto(tmp_path: Path, pg_url: str) -> None:
    _run_up(["--db", pg_url, "--broker", "mqtt://127.0.0.1:1883"], tmp_path)
    assert not (tmp_path / "data" / "vatio.db").exists()

"""`vatio alert` as a real process on PostgreSQL and mosquitto: an alert survives a SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_alert_delivery import SECRET, WebhookReceiver

from vatio.model import Anomaly, Reading
from vatio.store import write_all
from vatio.store.postgres import PostgresStore
from vatio.testing import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver(free_port())
    yield hook
    hook.stop()


def start_service(db: str, broker_port: int, routes: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "vatio.cli", "alert", "--db", db, "--broker", f"mqtt://127.0.0.1:{broker_port}",
            "--routes", str(routes), "--poll-interval", "0.2", "--lease", "2", "--no-home-assistant",
            "--log-level", "WARNING",
        ],
        stderr=subprocess.PIPE,
    )  # fmt: skip


async def eventually(check: object, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout_s}s")


async def test_alert_raised_before_sigkill_is_delivered_once_after_restart(
    fresh_pg_url: str, broker_port: int, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        f'[[routes]]\nname = "family"\nsite = "home-1"\nchannel = "webhook"\nurl = "{receiver.url}"\n'
        f'secret = "{SECRET}"\n'
    )
    store = PostgresStore(fresh_pg_url)
    await store.migrate()
    now = datetime.now(UTC)
    await write_all(store, [Reading("plug-1", now, power_w=9120.0)], "home-1")
    service = start_service(fresh_pg_url, broker_port, routes)
    try:
        # The receiver is down: the alert is raised and its webhook cannot go out yet.
        await store.record_anomaly(
            Anomaly(device_id="plug-1", kind="over_power", detector="edge", start=now, last=now, score=4.0,
                    explanation="over_power: observed 9120 W")
        )  # fmt: skip

        async def raised() -> bool:
            return len(await store.outbox_messages()) == 2  # webhook + the default MQTT route

        await eventually(raised)
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        webhook = [m for m in await store.outbox_messages() if m.channel == "webhook"]
        assert webhook[0].delivered_at is None
        receiver.start()
        service = start_service(fresh_pg_url, broker_port, routes)

        async def delivered() -> bool:
            return all(m.delivered_at is not None for m in await store.outbox_messages())

        await eventually(delivered)
        await asyncio.sleep(2.5)  # longer than the lease: a second send would have happened by now
        assert [(e["event"], e["device"]) for e in receiver.processed] == [("alert_firing", "plug-1")]
        assert receiver.requests == 1
        assert receiver.rejected == []
        assert len(await store.alerts()) == 1
    finally:
        service.terminate()
        _, stderr = service.communicate(timeout=10)
        await store.close()
    assert b"Traceback" not in stderr, stderr.decode()

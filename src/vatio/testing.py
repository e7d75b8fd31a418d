"""Helpers for tests and benchmarks: a private mosquitto, a fresh PostgreSQL database.

Tests and benchmarks that need a broker configuration of their own start
their own mosquitto on a free port, so they never disturb other users of the
machine's broker; each run gets a database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

PG_ADMIN_URL = os.environ.get("VATIO_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
# Production settings for a telemetry broker: a consumer's persistent session
# may hold a backlog, and in-flight windows are set by the clients.
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
"""


T = TypeVar("T")


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private event loop in another thread.

    For set-up and tear-down that run outside a test's own event loop: a
    thread of its own keeps ``asyncio.run`` from touching the caller's loop.

    >>> async def answer() -> int:
    ...     return 42
    >>> run_in_thread(answer())
    42
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="vatio-run-in-thread")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def mosquitto(extra_conf: str = "") -> Iterator[int]:
    """A private mosquitto on a free port; yields the port.

    Its configuration is what a telemetry deployment wants (see
    ``deploy/mosquitto.conf``): unbounded session queues, so a consumer that is
    down for a while loses nothing.
    """
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="vatio-mosq-") as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=port) + extra_conf)
        proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(prefix: str = "vatio_test") -> str:
    """Create a new, empty PostgreSQL database; returns its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    await _admin(f"CREATE DATABASE {name}")
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str) -> None:
    await _admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


@contextlib.contextmanager
def fresh_database(prefix: str = "vatio_bench") -> Iterator[str]:
    """A new, empty PostgreSQL database for synchronous code; dropped afterwards."""
    url = asyncio.run(create_database(prefix))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))

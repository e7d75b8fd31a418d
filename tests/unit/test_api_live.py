"""The live hub without a broker: routing by site, coalescing, bounded queues of slow clients."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from vatio.api.live import LiveClient, LiveHub
from vatio.contracts import encode_telemetry, telemetry_topic
from vatio.model import Reading
from vatio.transport import BrokerUrl

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def hub(**options: Any) -> LiveHub:
    return LiveHub(broker=BrokerUrl.parse("mqtt://127.0.0.1:1"), **options)


def telemetry(site: str, device: str, *seconds: float, encoding: str = "json") -> tuple[str, bytes]:
    readings = [Reading(device, T0 + timedelta(seconds=s), power_w=100.0 + s, energy_wh=1000.0 + s) for s in seconds]
    return telemetry_topic(site, device, encoding), encode_telemetry(device, readings, encoding)  # type: ignore[arg-type]


def drain(client: LiveClient) -> list[dict[str, Any]]:
    messages = []
    while (message := client.get_nowait()) is not None:
        messages.append(json.loads(message))
    return messages


async def test_messages_reach_only_clients_of_their_site() -> None:
    live = hub()
    with live.client("home-1") as one, live.client("home-1") as two, live.client("home-2") as other:
        live.on_message(*telemetry("home-1", "plug-1", 0, 5, 3, encoding="cbor"), 0, 0)
        live.on_message("vatio/v1/home-1/alerts", b'{"v":1,"event":"anomaly_opened","type":"x"}', 1, 7)
        live.on_message(*telemetry("home-3", "plug-3", 0), 0, 0)
        expected = [
            {"type": "reading", "site": "home-1", "device": "plug-1", "ts": (T0 + timedelta(seconds=5)).isoformat()
             .replace("+00:00", ".000Z"), "power_w": 105.0, "energy_wh": 1005.0},
            {"type": "alert", "v": 1, "event": "anomaly_opened", "site": "home-1"},
        ]  # fmt: skip
        assert drain(one) == expected, "the newest reading of the message, then the alert"
        assert drain(two) == expected
        assert drain(other) == []
    assert live.clients("home-1") == 0


async def test_bad_messages_are_counted_and_never_raise() -> None:
    live = hub()
    with live.client("home-1") as client:
        for topic, payload in [
            ("vatio/v1/home-1/alerts", b"not json"),
            ("vatio/v1/home-1/alerts", b"[1, 2]"),
            ("vatio/v1/home-1/plug-1/telemetry", b'{"v": 1, "device": "other", "readings": []}'),
            ("vatio/v1/home-1/plug-1/telemetry/pb", b"\xff\xff\xff"),
            ("not/a/vatio/topic", b"{}"),
        ]:
            live.on_message(topic, payload, 0, 0)
        assert drain(client) == []
    assert live.counters.rejected == 5


async def test_readings_are_coalesced_per_device_and_the_newest_wins() -> None:
    live = hub(reading_interval_s=0.2)
    with live.client("home-1") as client:
        live.on_message(*telemetry("home-1", "plug-1", 0), 0, 0)
        for second in (1, 2, 3):  # within the interval: only the newest may follow
            live.on_message(*telemetry("home-1", "plug-1", second), 0, 0)
        live.on_message(*telemetry("home-1", "plug-2", 0), 0, 0)  # another device is not held back
        assert [(m["device"], m["power_w"]) for m in drain(client)] == [("plug-1", 100.0), ("plug-2", 100.0)]
        live.on_message(*telemetry("home-1", "plug-1", 2.5), 0, 0)  # older than what waits: dropped
        await asyncio.sleep(0.3)
        assert [(m["device"], m["power_w"]) for m in drain(client)] == [("plug-1", 103.0)]
        live.on_message(*telemetry("home-1", "plug-1", 1), 0, 0)  # older than what was sent: history
        await asyncio.sleep(0.3)
        assert drain(client) == []


async def test_a_slow_client_loses_its_oldest_messages_and_slows_nobody() -> None:
    live = hub(capacity=50)
    received: list[str] = []
    with live.client("home-1") as fast, live.client("home-1") as slow:

        async def read_fast() -> None:
            while len(received) < 1000:
                received.append(await fast.get())

        reader = asyncio.create_task(read_fast())
        started = time.perf_counter()
        for n in range(1000):
            live.on_message("vatio/v1/home-1/alerts", json.dumps({"n": n}).encode(), 0, 0)
            if n % 10 == 0:
                await asyncio.sleep(0)  # the fast reader keeps up; the slow one never reads
        elapsed = time.perf_counter() - started
        await asyncio.wait_for(reader, 5)
        assert [json.loads(m)["n"] for m in received] == list(range(1000))
        assert elapsed < 1.0
        backlog = drain(slow)
        assert backlog[0] == {"type": "lag", "dropped": 950}
        assert [m["n"] for m in backlog[1:]] == list(range(950, 1000))
        assert slow.dropped_total == 950
        assert fast.dropped_total == 0

"""Compare MQTT subscriber clients by how fast they drain QoS 0/1 telemetry.

Drain mode (default): for every run a fresh mosquitto is started; each client
gets a persistent session (connected once with clean_start=false, then
disconnected), N telemetry messages are published into those sessions, and
only then is each client, in its own process, timed from connect until it has
received and acknowledged N messages. The publisher therefore never competes
for the CPU. After each drain a check reconnects to the session and counts
redeliveries, which must be 0 (every PUBACK reached the broker).

Live mode: a subscriber with a fresh session is running while a publisher
process sends N messages as fast as the broker takes them; the rate is taken
between the subscriber's first and last message.

Clients, and when each sends its PUBACK:

- vatio, vatio-v4: vatio.ingest.mqtt over MQTT 5 / 3.1.1; every --ack-batch
  messages, all PUBACKs in one write (what the ingest does after a commit).
- paho: paho-mqtt, MQTT 5, manual_ack=True; client.ack() per message.
- gmqtt: PUBACK on receipt, before the application has the message
  (optimistic acknowledgement, the default): no exactly-once storage.
- gmqtt-delayed: optimistic_acknowledgement=False and a coroutine on_message
  awaiting its batch's "commit": one task per message.
- aiomqtt: PUBACK on receipt (it has no manual acknowledgement).
- mosquitto_sub: the C client, payloads to /dev/null; it exits at the N-th
  message, sometimes before its last PUBACKs leave (see redelivered_after).

    .venv/bin/python bench/mqtt_clients.py --messages 200000 --qos 1 --runs 3
    .venv/bin/python bench/mqtt_clients.py --messages 200000 --qos 0 --runs 3
    .venv/bin/python bench/mqtt_clients.py --messages 200000 --qos 1 --runs 3 --mode live
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import orjson

from vatio.ingest.mqtt import MqttSubscriber
from vatio.ingest.mqtt_codec import encode_connect, encode_publish

CLIENTS = ("vatio", "vatio-v4", "paho", "gmqtt", "gmqtt-delayed", "aiomqtt", "mosquitto_sub")
TOPIC_FILTER = "vatio/v1/bench/+/telemetry"
HOST = "127.0.0.1"
GRACE_S = 0.3  # after the N-th message, how long a client waits for unexpected extras


def telemetry(index: int, payload_bytes: int) -> tuple[str, bytes]:
    """One message of wire contract v1 carrying one reading, padded with JSON whitespace."""
    device = f"plug-{index % 100}"
    reading = {
        "ts": f"2026-11-24T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:{index % 60:02d}.000Z",
        "seq": index,
        "power_w": 123.4 + index % 17,
        "energy_wh": 100500.5 + index,
        "voltage_v": 230.1,
        "current_a": 0.54,
        "power_factor": 0.98,
        "frequency_hz": 50.0,
    }
    payload = orjson.dumps({"v": 1, "device": device, "readings": [reading]})
    return f"vatio/v1/bench/{device}/telemetry", payload.ljust(payload_bytes)


# -- broker ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def mosquitto(port: int, *, queue_qos0: bool) -> Any:
    """A private mosquitto: unlimited queues and inflight, no persistence, anonymous."""
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp, "mosquitto.conf")
        conf.write_text(
            f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
            f"queue_qos0_messages {'true' if queue_qos0 else 'false'}\nlog_type error\n"
        )
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    socket.create_connection((HOST, port), timeout=0.2).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"mosquitto did not start: {proc.stderr}") from None
                    time.sleep(0.05)
            yield proc
        finally:
            proc.terminate()
            proc.wait(5)


# -- publisher ---------------------------------------------------------------------------
async def publish(
    port: int, count: int, qos: int, payload_bytes: int, *, window: int = 20_000, username: str | None = None
) -> float:
    """Publish ``count`` messages with pipelined QoS 1 (or QoS 0); returns messages/s.

    Finishes with a PINGREQ: the broker answers it only after handling everything before.
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    client_id = f"bench-pub-{os.getpid()}"
    writer.write(encode_connect(client_id=client_id, protocol=4, clean_start=True, keepalive_s=60, username=username))
    if (await reader.readexactly(4))[3] != 0:
        raise RuntimeError("publisher refused")
    started = time.perf_counter()
    sent = acked_bytes = 0
    while sent < count:
        # Packet ids cycle through 1..65535; the window keeps a reused id long acknowledged.
        chunk = min(count - sent, 1000, window - (sent - acked_bytes // 4) if qos else 1000)
        if chunk <= 0:
            acked_bytes += len(await reader.read(65536))
            continue
        writer.write(b"".join(_publish_packet(i, qos, payload_bytes) for i in range(sent, sent + chunk)))
        sent += chunk
        await writer.drain()
    writer.write(b"\xc0\x00")
    while acked_bytes < 4 * count * (qos > 0) + 2:
        data = await reader.read(65536)
        if not data:
            raise RuntimeError("broker closed the publisher")
        acked_bytes += len(data)
    elapsed = time.perf_counter() - started
    writer.write(b"\xe0\x00")
    writer.close()
    return count / elapsed


def _publish_packet(index: int, qos: int, payload_bytes: int) -> bytes:
    topic, payload = telemetry(index, payload_bytes)
    return encode_publish(topic, payload, qos=qos, packet_id=index % 65535 + 1, protocol=4)


# -- clients (each runs in its own process) ----------------------------------------------
class Drain:
    """Counts messages, acks in batches, and notes when the N-th was acknowledged."""

    def __init__(self, count: int, ack_batch: int) -> None:
        self.count, self.ack_batch = count, ack_batch
        self.received = 0
        self.first_at = self.done_at = 0.0
        self.done = asyncio.Event()

    def tick(self) -> bool:
        self.received += 1
        if self.received == 1:
            self.first_at = time.perf_counter()
        if self.received == self.count:
            self.done_at = time.perf_counter()
            return True
        return False


async def run_vatio(opts: argparse.Namespace, drain: Drain, protocol: Literal[4, 5]) -> None:
    ids: list[int] = []
    holder: list[MqttSubscriber] = []

    def on_message(topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        last = drain.tick()
        if qos:
            ids.append(packet_id)
            if len(ids) >= drain.ack_batch or last:
                holder[0].ack(ids)
                ids.clear()
        if last:
            drain.done.set()

    sub = MqttSubscriber(
        host=HOST, port=opts.port, client_id=opts.client_id, subscriptions=[TOPIC_FILTER],
        qos=opts.qos, protocol=protocol, on_message=on_message,
    )  # fmt: skip
    holder.append(sub)
    async with sub:
        await drain.done.wait()
        await asyncio.sleep(GRACE_S)


async def run_paho(opts: argparse.Namespace, drain: Drain) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=opts.client_id, protocol=paho.MQTTv5, manual_ack=True)

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if msg.qos:
            client.ack(msg.mid, msg.qos)
        if drain.tick():
            client.disconnect()

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(TOPIC_FILTER, opts.qos)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 65535
    client.connect(HOST, opts.port, keepalive=60, clean_start=False, properties=props)
    client.loop_forever()


async def run_gmqtt(opts: argparse.Namespace, drain: Drain, *, delayed: bool) -> None:
    import gmqtt

    commit = asyncio.get_running_loop().create_future()

    def on_message(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        if drain.tick():
            drain.done.set()
        return 0

    async def on_message_delayed(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        # gmqtt acks when this task returns: wait for "the batch commit" like the ingest would.
        nonlocal commit
        batch = commit
        if drain.tick() or drain.received % drain.ack_batch == 0:
            commit = asyncio.get_running_loop().create_future()
            batch.set_result(None)
            if drain.received == drain.count:
                drain.done.set()
        await batch
        return 0

    client = gmqtt.Client(
        opts.client_id, clean_session=False, optimistic_acknowledgement=not delayed,
        session_expiry_interval=3600, receive_maximum=65535,
    )  # fmt: skip
    client.on_message = on_message_delayed if delayed else on_message
    await client.connect(HOST, opts.port, keepalive=60)
    client.subscribe(TOPIC_FILTER, qos=opts.qos)
    await drain.done.wait()
    await asyncio.sleep(GRACE_S)
    await client.disconnect()


async def run_aiomqtt(opts: argparse.Namespace, drain: Drain) -> None:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 65535
    async with aiomqtt.Client(
        HOST, opts.port, identifier=opts.client_id, protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False, properties=props, keepalive=60, timeout=opts.timeout,
    ) as client:  # fmt: skip
        await client.subscribe(TOPIC_FILTER, qos=opts.qos)
        async for _message in client.messages:
            if drain.tick():
                break
        try:
            async with asyncio.timeout(GRACE_S):
                async for _message in client.messages:
                    drain.received += 1
        except TimeoutError:
            pass


async def child(opts: argparse.Namespace) -> dict[str, Any]:
    drain = Drain(opts.messages, opts.ack_batch)
    runners: dict[str, Callable[[], Any]] = {
        "vatio": lambda: run_vatio(opts, drain, 5),
        "vatio-v4": lambda: run_vatio(opts, drain, 4),
        "paho": lambda: run_paho(opts, drain),
        "gmqtt": lambda: run_gmqtt(opts, drain, delayed=False),
        "gmqtt-delayed": lambda: run_gmqtt(opts, drain, delayed=True),
        "aiomqtt": lambda: run_aiomqtt(opts, drain),
    }
    if opts.ready:
        print("ready", flush=True)  # live mode: the parent starts the publisher now
    cpu0, started = time.process_time(), time.perf_counter()
    await asyncio.wait_for(runners[opts.child](), opts.timeout)
    cpu = time.process_time() - cpu0
    end = drain.done_at or time.perf_counter()
    base = drain.first_at if opts.ready else started
    return {"elapsed_s": end - base, "received": drain.received, "cpu_s": cpu}


# -- orchestration -----------------------------------------------------------------------
def spawn(opts: argparse.Namespace, client: str, port: int, client_id: str, *, ready: bool) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--child", client, "--port", str(port), "--client-id", client_id]
    argv += ["--messages", str(opts.messages), "--qos", str(opts.qos), "--ack-batch", str(opts.ack_batch)]
    argv += ["--timeout", str(opts.timeout)] + (["--ready"] if ready else [])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def child_result(proc: subprocess.Popen[str], opts: argparse.Namespace) -> dict[str, Any]:
    """The child's JSON line; a client that crashed or timed out counts as 0 msg/s."""
    out, _ = proc.communicate(timeout=opts.timeout + 30)
    lines = out.strip().splitlines()
    if proc.returncode or not lines:
        return {"elapsed_s": float("inf"), "received": 0, "cpu_s": 0.0, "error": proc.returncode}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_mosquitto_sub(opts: argparse.Namespace, port: int, client_id: str) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        ["mosquitto_sub", "-h", HOST, "-p", str(port), "-i", client_id, "-c", "-V", "mqttv5",
         "-x", "3600", "-q", str(opts.qos), "-t", TOPIC_FILTER, "-C", str(opts.messages)],
        stdout=subprocess.DEVNULL, check=True, timeout=opts.timeout,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"elapsed_s": elapsed, "received": opts.messages, "cpu_s": cpu}


async def make_session(port: int, client_id: str, qos: int, protocol: Literal[4, 5]) -> int:
    """Create (or check) a persistent session; returns how many messages it still held."""
    held = 0

    def on_message(topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        nonlocal held
        held += 1

    async with MqttSubscriber(
        host=HOST, port=port, client_id=client_id, subscriptions=[TOPIC_FILTER], qos=qos,
        protocol=protocol, on_message=on_message,
    ):  # fmt: skip
        await asyncio.sleep(0.5)  # anything still queued arrives right after CONNACK
    return held


def drain_run(opts: argparse.Namespace, clients: list[str], run: int) -> dict[str, dict[str, Any]]:
    port, results = free_port(), {}
    with mosquitto(port, queue_qos0=True) as broker:
        ids = {c: f"bench-{c}-{run}" for c in clients}
        for c in clients:
            asyncio.run(make_session(port, ids[c], opts.qos, 4 if c == "vatio-v4" else 5))
        rate = asyncio.run(publish(port, opts.messages, opts.qos, opts.payload_bytes))
        order = clients[run % len(clients) :] + clients[: run % len(clients)]
        for c in order:
            cpu_broker = sum(broker_cpu(broker))
            if c == "mosquitto_sub":
                result = run_mosquitto_sub(opts, port, ids[c])
            else:
                result = child_result(spawn(opts, c, port, ids[c], ready=False), opts)
            result["broker_cpu_s"] = sum(broker_cpu(broker)) - cpu_broker
            result["redelivered_after"] = asyncio.run(make_session(port, ids[c], opts.qos, 4 if c == "vatio-v4" else 5))
            result["publish_rate"] = rate
            results[c] = result
            print(f"run {run} {c}: {opts.messages / result['elapsed_s']:,.0f} msg/s", file=sys.stderr)
    return results


def live_run(opts: argparse.Namespace, clients: list[str], run: int) -> dict[str, dict[str, Any]]:
    results = {}
    for c in (c for c in clients if c != "mosquitto_sub"):
        port = free_port()
        with mosquitto(port, queue_qos0=False) as broker:
            proc = spawn(opts, c, port, f"bench-live-{c}-{run}", ready=True)
            assert proc.stdout is not None
            proc.stdout.readline()
            time.sleep(0.5)  # subscribed (a connect + SUBACK takes milliseconds)
            rate = asyncio.run(publish(port, opts.messages, opts.qos, opts.payload_bytes))
            result = child_result(proc, opts)
            result["publish_rate"] = rate
            result["broker_cpu_s"] = sum(broker_cpu(broker))
            results[c] = result
            print(f"run {run} {c}: {opts.messages / result['elapsed_s']:,.0f} msg/s", file=sys.stderr)
    return results


def broker_cpu(broker: subprocess.Popen[bytes]) -> tuple[float, float]:
    import psutil

    times = psutil.Process(broker.pid).cpu_times()
    return times.user, times.system


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the comparison; returns per-client runs and medians."""
    clients = [c for c in args.clients.split(",") if c != "mosquitto_sub" or shutil.which(c)]
    runs = [(live_run if args.mode == "live" else drain_run)(args, clients, r) for r in range(args.runs)]
    summary: dict[str, Any] = {}
    for c in clients:
        per_run = [r[c] for r in runs if c in r]
        if not per_run:
            continue
        rates = [args.messages / r["elapsed_s"] for r in per_run]
        summary[c] = {
            "median_msgs_per_s": round(statistics.median(rates)),
            "rates": [round(x) for x in rates],
            "client_cpu_us_per_msg": round(statistics.median(r["cpu_s"] for r in per_run) / args.messages * 1e6, 2),
            "broker_cpu_us_per_msg": round(
                statistics.median(r["broker_cpu_s"] for r in per_run) / args.messages * 1e6, 2
            ),
            "received": [r["received"] for r in per_run],
            "redelivered_after": [r.get("redelivered_after", 0) for r in per_run],
            "publish_rate": round(statistics.median(r["publish_rate"] for r in per_run)),
        }
    version = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    return {
        "config": {k: v for k, v in vars(args).items() if k not in ("child", "client_id", "port", "ready")},
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "broker": version},
        "results": summary,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--payload-bytes", type=int, default=200, help="pad each message to this size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=("drain", "live"), default="drain")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--ack-batch", type=int, default=1000, help="messages per bulk PUBACK")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args))), flush=True)
        return
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()

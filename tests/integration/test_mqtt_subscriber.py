"""MqttSubscriber against real brokers: a private mosquitto, amqtt in-process, and fakes
that misbehave on purpose."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from vatio.ingest.mqtt import (
    MqttConnectError,
    MqttConnectionLost,
    MqttProtocolError,
    MqttSubscriber,
)
from vatio.ingest.mqtt_codec import encode_connect, encode_publish

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs the mosquitto binary"),
]

HOST = "127.0.0.1"
Message = tuple[str, bytes, int, int]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def run_mosquitto(tmp: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\nlog_type error\n"
    )
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)])
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, "mosquitto did not start"
            assert time.monotonic() < deadline, "mosquitto does not listen"
            time.sleep(0.05)
    try:
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with run_mosquitto(tmp_path_factory.mktemp("mosquitto")) as (port, _):
        yield port


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic of this test alone, so runs never see each other's messages."""
    return "vatio/v1/test/" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)


class Inbox:
    """Collects messages and lets a test wait for a count."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    def __call__(self, topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        self.messages.append((topic, payload, qos, packet_id))
        self._changed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [payload for _, payload, _, _ in self.messages]

    async def wait_for(self, count: int, within_s: float = 10) -> None:
        async with asyncio.timeout(within_s):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()


def subscriber(port: int, client_id: str, filters: list[str], inbox: Inbox, **kwargs: Any) -> MqttSubscriber:
    return MqttSubscriber(host=HOST, port=port, client_id=client_id, subscriptions=filters, on_message=inbox, **kwargs)


async def publish(port: int, topic: str, payloads: list[bytes], *, qos: int = 1, username: str | None = None) -> None:
    """Publish and return once the broker has handled everything (PINGRESP comes after)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(encode_connect(client_id="", protocol=4, clean_start=True, keepalive_s=30, username=username))
    assert (await reader.readexactly(4))[3] == 0
    writer.write(
        b"".join(encode_publish(topic, p, qos=qos, packet_id=i + 1, protocol=4) for i, p in enumerate(payloads))
    )
    writer.write(b"\xc0\x00")
    await reader.readexactly(4 * len(payloads) * (qos > 0) + 2)
    writer.close()


def numbered(count: int) -> list[bytes]:
    return [b'{"seq":%d}' % i for i in range(count)]


# -- mosquitto ------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [5, 4])
async def test_receive_and_ack(broker: int, topic: str, protocol: Literal[4, 5]) -> None:
    inbox = Inbox()
    async with subscriber(broker, f"{topic}-{protocol}", [f"{topic}/#"], inbox, protocol=protocol) as sub:
        assert not sub.session_present
        await publish(broker, f"{topic}/a", numbered(100))
        await inbox.wait_for(100)
        assert inbox.payloads == numbered(100)
        assert {(t, q) for t, _, q, _ in inbox.messages} == {(f"{topic}/a", 1)}
        sub.ack(pid for _, _, _, pid in inbox.messages)


@pytest.mark.parametrize("protocol", [5, 4])
async def test_unacked_messages_come_back_acked_ones_do_not(broker: int, topic: str, protocol: Literal[4, 5]) -> None:
    client_id = f"{topic}-{protocol}"
    first = Inbox()
    # A fresh session: MQTT 3.1.1's clean session would also end the session at disconnect.
    clean_start = protocol == 5
    async with subscriber(broker, client_id, [topic], first, protocol=protocol, clean_start=clean_start) as sub:
        await publish(broker, topic, numbered(10))
        await first.wait_for(10)
        sub.ack(pid for _, payload, _, pid in first.messages if payload in numbered(4))

    again = Inbox()
    async with subscriber(broker, client_id, [topic], again, protocol=protocol) as sub:
        assert sub.session_present
        await again.wait_for(6)
        await asyncio.sleep(0.3)  # nothing else may follow
        assert again.payloads == numbered(10)[4:]
        sub.ack(pid for *_, pid in again.messages)

    last = Inbox()
    async with subscriber(broker, client_id, [topic], last, protocol=protocol) as sub:
        assert sub.session_present
        await asyncio.sleep(0.3)
    assert last.messages == []


async def test_messages_published_while_offline_wait_in_the_session(broker: int, topic: str) -> None:
    async with subscriber(broker, topic, [topic], Inbox(), clean_start=True):
        pass
    await publish(broker, topic, numbered(50))
    inbox = Inbox()
    async with subscriber(broker, topic, [topic], inbox) as sub:
        assert sub.session_present
        await inbox.wait_for(50)
    assert inbox.payloads == numbered(50)


async def test_shared_subscription_splits_the_stream(broker: int, topic: str) -> None:
    inboxes = [Inbox(), Inbox()]
    shared = f"$share/g/{topic}"
    async with (
        subscriber(broker, f"{topic}-a", [shared], inboxes[0], clean_start=True) as a,
        subscriber(broker, f"{topic}-b", [shared], inboxes[1], clean_start=True) as b,
    ):
        await publish(broker, topic, numbered(1000))
        async with asyncio.timeout(10):
            while sum(len(inbox.messages) for inbox in inboxes) < 1000:
                await asyncio.sleep(0.02)
        for sub, inbox in ((a, inboxes[0]), (b, inboxes[1])):
            sub.ack(pid for *_, pid in inbox.messages)
        await asyncio.sleep(0.2)
    received = inboxes[0].payloads + inboxes[1].payloads
    assert sorted(received) == sorted(numbered(1000))  # none lost, none twice
    assert all(inbox.messages for inbox in inboxes)


async def test_pause_and_resume_reading(broker: int, topic: str) -> None:
    inbox = Inbox()
    holder: list[MqttSubscriber] = []

    def pause_at_ten(topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        inbox(topic, payload, qos, packet_id)
        if len(inbox.messages) == 10:
            holder[0].pause_reading()

    sub = MqttSubscriber(host=HOST, port=broker, client_id=topic, subscriptions=[topic], on_message=pause_at_ten)
    holder.append(sub)
    async with sub:
        await publish(broker, topic, numbered(500))
        await asyncio.sleep(0.5)
        assert len(inbox.messages) == 10
        sub.resume_reading()
        await inbox.wait_for(500)
        assert inbox.payloads == numbered(500)


async def test_session_taken_over_ends_the_old_connection(broker: int, topic: str) -> None:
    # mosquitto 2.0 closes the old connection without a DISCONNECT 0x8E (the fake broker
    # below covers a DISCONNECT that carries a reason code).
    async with (
        subscriber(broker, topic, [topic], Inbox()) as first,
        subscriber(broker, topic, [topic], Inbox()),
    ):
        with pytest.raises(MqttConnectionLost, match="closed by the broker"):
            await asyncio.wait_for(first.wait_closed(), 5)


async def test_broker_going_away_raises_connection_lost(tmp_path: Path, topic: str) -> None:
    with run_mosquitto(tmp_path) as (port, proc):
        async with subscriber(port, topic, [topic], Inbox()) as sub:
            proc.kill()
            with pytest.raises(MqttConnectionLost, match="connection lost"):
                await asyncio.wait_for(sub.wait_closed(), 5)
            sub.ack([1])  # dropped, not an error


async def test_refused_connection_raises_connect_error(broker: int) -> None:
    with pytest.raises(MqttConnectError, match="identifier rejected") as caught:
        async with subscriber(broker, "", ["x"], Inbox(), protocol=4, clean_start=False):
            pass
    assert caught.value.reason_code == 2


async def test_nobody_listening_raises_connection_lost() -> None:
    with pytest.raises(MqttConnectionLost, match="cannot connect"):
        async with subscriber(free_port(), "nobody", ["x"], Inbox()):
            pass


async def test_orderly_exit_is_not_an_error(broker: int, topic: str) -> None:
    sub = subscriber(broker, topic, [topic], Inbox(), clean_start=True)
    async with sub:
        pass
    await asyncio.wait_for(sub.wait_closed(), 1)


# -- a fake broker that misbehaves ---------------------------------------------------------
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CONNACK_V5 = b"\x20\x03\x00\x00\x00"
SUBACK_V5_QOS1 = b"\x90\x04\x00\x01\x00\x01"


@asynccontextmanager
async def fake_broker(script: Script) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
            await reader.read()  # hold the connection until the client leaves
        finally:
            writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def handshake_then(*packets: bytes) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)  # CONNECT
        writer.write(CONNACK_V5)
        await reader.read(4096)  # SUBSCRIBE
        writer.write(SUBACK_V5_QOS1 + b"".join(packets))

    return script


@pytest.mark.parametrize(
    ("packets", "error", "match"),
    [
        ((b"\x32\x05\x00\x09abc",), MqttProtocolError, "malformed"),
        ((encode_publish("big", b"x" * 5000),), MqttProtocolError, "exceeds 1000"),
        ((b"\xe0\x02\x89\x00",), MqttConnectionLost, "server busy"),
        ((b"\x20\x03\x00\x00\x00",), MqttProtocolError, "unexpected CONNACK"),
    ],
)
async def test_broker_misbehaviour_is_a_clear_error(
    packets: tuple[bytes, ...], error: type[Exception], match: str
) -> None:
    async with fake_broker(handshake_then(*packets)) as port:
        sub = subscriber(port, "fake", ["t"], Inbox(), max_packet_bytes=1000)
        async with sub:
            with pytest.raises(error, match=match):
                await asyncio.wait_for(sub.wait_closed(), 5)


async def test_refused_subscription_raises_connect_error() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(CONNACK_V5)
        await reader.read(4096)
        writer.write(b"\x90\x04\x00\x01\x00\x87")

    async with fake_broker(refuse) as port:
        with pytest.raises(MqttConnectError, match="not authorized"):
            async with subscriber(port, "fake", ["t"], Inbox()):
                pass


async def test_silent_broker_times_out_instead_of_hanging() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)

    async with fake_broker(silent) as port:
        with pytest.raises(MqttConnectionLost, match="in time"):
            async with subscriber(port, "fake", ["t"], Inbox(), connect_timeout_s=0.5):
                pass


async def test_exit_is_quick_even_if_the_broker_ignores_disconnect() -> None:
    async with fake_broker(handshake_then()) as port:
        sub = subscriber(port, "fake", ["t"], Inbox())
        async with asyncio.timeout(1):
            async with sub:
                pass
            await sub.wait_closed()


async def test_missing_pingresp_is_detected() -> None:
    async with (
        fake_broker(handshake_then()) as port,
        subscriber(port, "fake", ["t"], Inbox(), keepalive_s=1) as sub,
    ):
        with pytest.raises(MqttConnectionLost, match="no PINGRESP"):
            await asyncio.wait_for(sub.wait_closed(), 5)


# -- amqtt, the embedded broker of laptop mode --------------------------------------------
@asynccontextmanager
async def amqtt_broker() -> AsyncIterator[int]:
    from amqtt.broker import Broker

    port = free_port()
    # amqtt keeps offline messages only for sessions that are not anonymous, and with
    # allow_anonymous on every session counts as anonymous: require a user name instead.
    auth = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}}
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}}, "plugins": auth})
    await broker.start()
    try:
        yield port
    finally:
        await broker.shutdown()


async def test_amqtt_mqtt311_persistent_session(topic: str) -> None:
    async with amqtt_broker() as port:
        options: dict[str, Any] = {"protocol": 4, "username": "ingest"}
        async with subscriber(port, "ingest", [f"{topic}/#"], Inbox(), **options):
            pass
        await publish(port, f"{topic}/a", numbered(20), username="sim")

        # amqtt sends the stored messages before it reads our SUBSCRIBE and waits up to 5 s
        # for their PUBACKs (then drops them): ack while __aenter__ still waits for SUBACK.
        inbox = Inbox()
        holder: list[MqttSubscriber] = []

        def commit_at_once(topic: str, payload: bytes, qos: int, packet_id: int) -> None:
            inbox(topic, payload, qos, packet_id)
            holder[0].ack([packet_id])

        sub = MqttSubscriber(
            host=HOST,
            port=port,
            client_id="ingest",
            subscriptions=[f"{topic}/#"],
            on_message=commit_at_once,
            **options,
        )
        holder.append(sub)
        async with asyncio.timeout(3), sub:
            assert sub.session_present
            await inbox.wait_for(20)
            assert inbox.payloads == numbered(20)
            await publish(port, f"{topic}/a", numbered(5), username="sim")
            await inbox.wait_for(25)
            assert inbox.payloads[20:] == numbered(5)


async def test_amqtt_does_not_answer_mqtt5() -> None:
    async with amqtt_broker() as port:
        with pytest.raises(MqttConnectionLost, match="in time"):
            async with subscriber(port, "ingest", ["t"], Inbox(), username="u", connect_timeout_s=1):
                pass


@pytest.mark.xfail(strict=True, reason="amqtt 0.12 drops un-acknowledged QoS 1 messages instead of redelivering them")
async def test_amqtt_redelivers_unacked_messages(topic: str) -> None:
    async with amqtt_broker() as port:
        options: dict[str, Any] = {"protocol": 4, "username": "ingest"}
        inbox = Inbox()
        async with subscriber(port, "ingest", [topic], inbox, **options):
            await publish(port, topic, numbered(5), username="sim")
            await inbox.wait_for(5)
        again = Inbox()
        async with subscriber(port, "ingest", [topic], again, **options):
            await again.wait_for(5, within_s=3)

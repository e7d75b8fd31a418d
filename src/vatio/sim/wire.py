"""A lean asyncio MQTT publisher for high-rate simulation and benchmarks.

paho-mqtt spends most of its time per message in Python bookkeeping; this
publisher writes PUBLISH packets straight to the transport and only counts
PUBACKs, keeping at most ``window`` QoS 1 messages in flight.
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType
from typing import Literal, Self

from vatio.ingest.mqtt_codec import MqttConnectionLost, decode_varint, encode_connect, encode_publish

_DISCONNECT = b"\xe0\x00"


class FastPublisher(asyncio.Protocol):
    """Publish QoS 0/1 messages with a bounded in-flight window.

    ``publish`` returns once the packet is written, waiting only while the
    window is full; ``drain`` waits for every outstanding PUBACK.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        window: int = 10_000,
        protocol: Literal[4, 5] = 5,
        keepalive_s: int = 60,
    ) -> None:
        if not 1 <= window <= 65_000:
            raise ValueError("window must be 1..65000 (packet ids are 16 bits)")
        self.host = host
        self.port = port
        self.client_id = client_id
        self.window = window
        self.protocol = protocol
        self.keepalive_s = keepalive_s
        self.published = 0
        self.acked = 0
        self._inflight = 0
        self._ids = itertools.cycle(range(1, 65536))
        self._buffer = bytearray()
        self._room = asyncio.Event()
        self._connack: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._lost: BaseException | None = None

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._connack = loop.create_future()
        await loop.create_connection(lambda: self, self.host, self.port)
        self._write(
            encode_connect(
                client_id=self.client_id,
                protocol=self.protocol,
                clean_start=True,
                keepalive_s=self.keepalive_s,
            )
        )
        async with asyncio.timeout(10):
            await self._connack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_DISCONNECT)
            self._transport.close()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if qos:
            while self._inflight >= self.window:
                self._room.clear()
                await self._room.wait()
            self._inflight += 1
        packet = encode_publish(
            topic, payload, qos=qos, packet_id=next(self._ids) if qos else 0, protocol=self.protocol
        )
        self._write(bytes((packet[0] | int(retain),)) + packet[1:] if retain else packet)
        self.published += 1

    async def drain(self) -> None:
        while self._inflight > 0:
            self._room.clear()
            await self._room.wait()

    def _write(self, data: bytes) -> None:
        if self._lost is not None:
            raise self._lost
        assert self._transport is not None
        self._transport.write(data)

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = MqttConnectionLost(f"publisher connection lost: {exc or 'closed by the broker'}")
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(self._lost)
        self._room.set()

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        pos = 0
        while len(buf) - pos >= 2:
            length, body = decode_varint(bytes(buf[pos + 1 : pos + 5]), 0)
            if body < 0:
                break
            body += pos + 1
            if len(buf) < body + length:
                break
            kind = buf[pos] >> 4
            if kind == 2 and self._connack is not None and not self._connack.done():
                self._connack.set_result(None)
            elif kind == 4:
                self.acked += 1
                self._inflight -= 1
            pos = body + length
        del buf[:pos]
        if self._inflight < self.window:
            self._room.set()

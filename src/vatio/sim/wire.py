"""A lean asyncio MQTT publisher for high-rate simulation, benchmarks and the edge.

paho-mqtt spends most of its time per message in Python bookkeeping; this
publisher writes PUBLISH packets straight to the transport and only counts
PUBACKs, keeping at most ``window`` QoS 1 messages in flight.

What a simulated device or a gateway needs beyond that is opt-in, so the
benchmark path stays lean: a last will, credentials and TLS, keep alive
pings, the QoS 1 messages still unacknowledged when the connection died
(``remember_unacked``, to send them again on the next connection) and a
wait for the PUBACK of one message (:meth:`FastPublisher.publish_confirmed`).

One instance is one connection: reconnecting is the caller's job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ssl import SSLContext
from types import TracebackType
from typing import Literal, Self

from vatio.ingest.mqtt_codec import (
    _PINGREQ,
    _V3_CONNACK,
    MqttConnectError,
    MqttConnectionLost,
    connect_failure,
    decode_properties,
    decode_varint,
    encode_connect,
    encode_publish,
    reason_name,
)

_DISCONNECT = b"\xe0\x00"
Unacked = tuple[str, bytes, bool]  # topic, payload, retain


class FastPublisher(asyncio.Protocol):
    """Publish QoS 0/1 messages with a bounded in-flight window.

    ``publish`` returns once the packet is written, waiting only while the
    window is full; ``drain`` waits for every outstanding PUBACK. The window
    shrinks to the broker's Receive Maximum (MQTT 5 CONNACK) if that is
    lower: a v5 broker disconnects a client that exceeds it.

    ``on_ack`` is called after each read that carried PUBACKs (the window
    has room again), ``on_lost`` once when the connection ends for any reason.
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
        clean_start: bool = True,
        username: str | None = None,
        password: str | None = None,
        ssl: SSLContext | None = None,
        will_topic: str | None = None,
        will_payload: bytes = b"",
        will_qos: int = 0,
        will_retain: bool = False,
        remember_unacked: bool = False,
        connect_timeout_s: float = 10.0,
        on_ack: Callable[[], object] | None = None,
        on_lost: Callable[[MqttConnectionLost], object] | None = None,
    ) -> None:
        if not 1 <= window <= 65_000:
            raise ValueError("window must be 1..65000 (packet ids are 16 bits)")
        self.host, self.port, self.client_id = host, port, client_id
        self.window, self.protocol, self.keepalive_s = window, protocol, keepalive_s
        self.clean_start, self.username, self.password, self.ssl = clean_start, username, password, ssl
        self.will_topic, self.will_payload = will_topic, will_payload
        self.will_qos, self.will_retain = will_qos, will_retain
        self.remember_unacked, self.connect_timeout_s = remember_unacked, connect_timeout_s
        self.on_ack, self.on_lost = on_ack, on_lost
        self.published = 0
        self.acked = 0
        self.refused = 0  # MQTT 5 PUBACKs with a failure reason (e.g. 0x87 not authorized)
        self._limit = window
        self._inflight = 0
        self._next_id = 0
        self._unacked: dict[int, Unacked] | None = {} if remember_unacked else None
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._buffer = bytearray()
        self._room = asyncio.Event()
        self._connack: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._lost: MqttConnectionLost | None = None
        self._ping: asyncio.TimerHandle | None = None
        self._heard = self._ping_outstanding = False
        self._published_at_tick = 0
        self._keepalive_s = keepalive_s

    # -- connection ---------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the TCP connection, send CONNECT and wait for a successful CONNACK."""
        if self._closed is not None:
            raise RuntimeError("FastPublisher is single-use: create one per connection")
        loop = asyncio.get_running_loop()
        self._connack, self._closed = loop.create_future(), loop.create_future()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await loop.create_connection(lambda: self, self.host, self.port, ssl=self.ssl)
                self._write(self._connect_packet())
                await self._connack
        except BaseException as exc:
            self._connack.cancel()
            self.abort()
            error = connect_failure(exc, f"{self.host}:{self.port}", "CONNACK")
            if error is None:
                raise
            raise error from exc
        if self._keepalive_s:
            self._ping = loop.call_later(self._keepalive_s / 2, self._keepalive_tick)

    def _connect_packet(self) -> bytes:
        return encode_connect(
            client_id=self.client_id,
            protocol=self.protocol,
            clean_start=self.clean_start,
            keepalive_s=self.keepalive_s,
            username=self.username,
            password=self.password,
            will_topic=self.will_topic,
            will_payload=self.will_payload,
            will_qos=self.will_qos,
            will_retain=self.will_retain,
        )

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Send DISCONNECT and close: a clean end, so the broker discards the will."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_DISCONNECT)
            self._transport.close()
            self._lost = self._lost or MqttConnectionLost("closed by this client")

    def abort(self) -> None:
        """Drop the connection without DISCONNECT, as a device losing power would."""
        if self._transport is not None:
            self._transport.abort()
        elif self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Return once the connection has ended, whoever ended it."""
        if self._closed is None:
            raise RuntimeError("not connected")
        await asyncio.shield(self._closed)

    @property
    def connected(self) -> bool:
        return self._lost is None and self._connack is not None and self._connack.done()

    @property
    def lost(self) -> MqttConnectionLost | None:
        """Why the connection ended, or None while it is open."""
        return self._lost

    @property
    def inflight(self) -> int:
        """QoS 1 messages written and not yet acknowledged."""
        return self._inflight

    @property
    def has_room(self) -> bool:
        """A QoS 1 publish would not have to wait for the window."""
        return self._inflight < self._limit

    # -- publishing ---------------------------------------------------------------------
    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if qos:
            await self._wait_for_room()
        self.publish_nowait(topic, payload, qos=qos, retain=retain)

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Write one PUBLISH now; returns its packet id (0 at QoS 0).

        Raises ``RuntimeError`` when a QoS 1 message finds the window full
        (check :attr:`has_room`), ``MqttConnectionLost`` when the connection is gone.
        """
        if self._lost is not None:
            raise self._lost
        packet_id = 0
        if qos:
            if self._inflight >= self._limit:
                raise RuntimeError("the in-flight window is full")
            packet_id = self._new_packet_id()
            self._inflight += 1
            if self._unacked is not None:
                self._unacked[packet_id] = (topic, payload, retain)
        packet = encode_publish(topic, payload, qos=qos, packet_id=packet_id, protocol=self.protocol)
        self._write(bytes((packet[0] | 1,)) + packet[1:] if retain else packet)
        self.published += 1
        return packet_id

    async def publish_confirmed(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and return once the broker has acknowledged this message.

        Raises ``MqttConnectionLost`` if the connection ends first (the
        message may or may not have arrived) and ``MqttConnectError`` if the
        broker refused it (MQTT 5 PUBACK reason code >= 0x80).
        """
        await self._wait_for_room()
        packet_id = self.publish_nowait(topic, payload, qos=1, retain=retain)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[packet_id] = waiter
        try:
            await waiter
        finally:
            self._waiters.pop(packet_id, None)

    async def drain(self) -> None:
        """Wait for every outstanding PUBACK; raise if the connection ends first."""
        while self._inflight > 0:
            if self._lost is not None:
                raise self._lost
            self._room.clear()
            await self._room.wait()

    def unacked(self) -> list[Unacked]:
        """QoS 1 messages without PUBACK, oldest first (needs ``remember_unacked``)."""
        if self._unacked is None:
            raise RuntimeError("construct with remember_unacked=True to keep unacknowledged messages")
        return list(self._unacked.values())

    async def _wait_for_room(self) -> None:
        while self._inflight >= self._limit:
            if self._lost is not None:
                raise self._lost
            self._room.clear()
            await self._room.wait()

    def _new_packet_id(self) -> int:
        packet_id = self._next_id % 65535 + 1
        busy = self._unacked if self._unacked is not None else self._waiters
        while packet_id in busy:  # an id may only be reused once its PUBACK came back
            packet_id = packet_id % 65535 + 1
        self._next_id = packet_id
        return packet_id

    def _write(self, data: bytes) -> None:
        if self._lost is not None:
            raise self._lost
        if self._transport is None:
            raise MqttConnectionLost("not connected")
        self._transport.write(data)

    def _keepalive_tick(self) -> None:
        # Every keepalive/2: with traffic both ways since the last tick nothing is
        # needed; otherwise ping, so the broker's 1.5x keep alive deadline never
        # passes and a half-open connection is found within one more tick.
        if self._lost is not None or self._transport is None:
            return
        if self._ping_outstanding:
            self._lost = MqttConnectionLost(f"no PINGRESP within {self._keepalive_s / 2:.0f} s")
            self._transport.abort()
            return
        if not self._heard or self.published == self._published_at_tick:
            self._transport.write(_PINGREQ)
            self._ping_outstanding = True
        self._heard, self._published_at_tick = False, self.published
        self._ping = asyncio.get_running_loop().call_later(self._keepalive_s / 2, self._keepalive_tick)

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            self._lost = MqttConnectionLost(f"publisher connection lost: {exc or 'closed'}")
            self._lost.__cause__ = exc
        lost = self._lost
        if self._ping is not None:
            self._ping.cancel()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(lost)
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(lost)
        self._room.set()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self.on_lost is not None:
            self.on_lost(lost)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        self._heard = True
        pos = acks = 0
        while len(buf) - pos >= 2:
            length, body = decode_varint(bytes(buf[pos + 1 : pos + 5]), 0)
            if body < 0:
                break
            body += pos + 1
            if len(buf) < body + length:
                break
            kind = buf[pos] >> 4
            if kind == 4:
                acks += 1
                self._on_puback(buf[body] << 8 | buf[body + 1], buf[body + 2] if length > 2 else 0)
            elif kind == 2:
                self._on_connack(bytes(buf[body : body + length]))
            elif kind == 13:
                self._ping_outstanding = False
            elif kind == 14 and self.protocol == 5 and length:
                props = decode_properties(bytes(buf), body + 1, body + length)[0] if length > 1 else {}
                reason = reason_name(buf[body], props)
                self._lost = MqttConnectionLost(f"broker sent DISCONNECT: {reason}", reason_code=buf[body])
            pos = body + length
        del buf[:pos]
        if self._inflight < self._limit:
            self._room.set()
        if acks and self.on_ack is not None:
            self.on_ack()

    def _on_puback(self, packet_id: int, reason_code: int) -> None:
        self.acked += 1
        if self._inflight > 0:
            self._inflight -= 1
        if self._unacked is not None:
            self._unacked.pop(packet_id, None)
        if reason_code >= 0x80:
            self.refused += 1
        waiter = self._waiters.pop(packet_id, None) if self._waiters else None
        if waiter is not None and not waiter.done():
            if reason_code >= 0x80:
                reason = f"publish refused: {reason_name(reason_code)}"
                waiter.set_exception(MqttConnectError(reason_code, reason))
            else:
                waiter.set_result(None)

    def _on_connack(self, body: bytes) -> None:
        if self._connack is None or self._connack.done() or len(body) < 2:
            return
        code = body[1]
        props = decode_properties(body, 2, len(body))[0] if self.protocol == 5 and len(body) > 2 else {}
        if code:
            reason = _V3_CONNACK.get(code, f"code {code}") if self.protocol == 4 else reason_name(code, props)
            self._connack.set_exception(MqttConnectError(code, f"connection refused: {reason}"))
            return
        receive_maximum = props.get(0x21)
        if isinstance(receive_maximum, int) and receive_maximum:
            self._limit = min(self.window, receive_maximum)
        server_keepalive = props.get(0x13)
        if isinstance(server_keepalive, int):
            self._keepalive_s = server_keepalive  # MQTT 5 §3.2.2.3.14: the server's value wins
        self._connack.set_result(None)


class ConnectGate:
    """Paces the connects of many publishers: ``rate`` per second, ``concurrency`` at once.

    Thousands of simultaneous TCP and MQTT handshakes overflow the broker's
    listen backlog (SOMAXCONN); the refused ones time out and retry in
    lockstep. Used as ``async with gate: await publisher.connect()``.
    """

    def __init__(self, *, rate: float, concurrency: int) -> None:
        if rate <= 0 or concurrency < 1:
            raise ValueError("rate must be positive and concurrency at least 1")
        self.rate = rate
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._next = 0.0

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + 1.0 / self.rate
        if slot > now:
            try:
                await asyncio.sleep(slot - now)
            except BaseException:
                self._slots.release()
                raise

    async def __aexit__(self, *_: object) -> None:
        self._slots.release()

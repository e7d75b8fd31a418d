"""A lean asyncio MQTT subscriber (MQTT 5 and 3.1.1) for the ingest stage.

The ingest acknowledges a message only after the reading it carries is
committed, and then in bulk: ``on_message`` is called synchronously for every
PUBLISH, and ``ack`` later writes all the PUBACKs of a batch in one write.
Un-acknowledged messages stay in the broker's persistent session and are
redelivered after a crash. Off-the-shelf clients either ack on receipt or
spend a task or a packet write per message; this one spends only the topic
string and the payload bytes.

Reconnecting is the caller's job: one instance is one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from ssl import SSLContext
from types import TracebackType
from typing import Literal, Self

from vatio.ingest.mqtt_codec import (
    _DISCONNECT,
    _PINGREQ,
    _SUBSCRIBE_ID,
    _V3_CONNACK,
    TOPIC_ALIAS_MAXIMUM,
    MqttConnectError,
    MqttConnectionLost,
    MqttError,
    MqttProtocolError,
    connect_failure,
    decode_properties,
    decode_varint,
    encode_connect,
    encode_pubacks,
    encode_subscribe,
    reason_name,
)

__all__ = [
    "MqttConnectError",
    "MqttConnectionLost",
    "MqttError",
    "MqttProtocolError",
    "MqttSubscriber",
    "OnMessage",
]

OnMessage = Callable[[str, bytes, int, int], None]

_generations = itertools.count(1)


class MqttSubscriber(asyncio.Protocol):
    """Subscribe, hand every PUBLISH to ``on_message(topic, payload, qos, packet_id)``,
    and PUBACK only what ``ack`` is given.

    ``generation`` is unique per instance and known before connecting, so acks
    tagged with it (``ack_tagged``) from a previous connection are dropped
    rather than acknowledging a different message that reuses the packet id.
    The ``asyncio.Protocol`` methods are internal. Typical use::

        sub = MqttSubscriber(host="broker", port=1883, client_id="ingest-1",
                             subscriptions=["$share/ingest/vatio/v1/+/+/telemetry"],
                             on_message=pipeline.on_message)
        pipeline.generation, pipeline.ack = sub.generation, sub.ack_tagged
        async with sub:
            await sub.wait_closed()  # raises MqttConnectionLost: back off, make a new one
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        subscriptions: Sequence[str],
        on_message: OnMessage,
        qos: int = 1,
        protocol: Literal[4, 5] = 5,
        clean_start: bool = False,
        session_expiry_s: int = 3600,
        keepalive_s: int = 30,
        receive_maximum: int = 65535,
        username: str | None = None,
        password: str | None = None,
        ssl: SSLContext | None = None,
        max_packet_bytes: int = 8 * 1024 * 1024,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if qos not in (0, 1) or protocol not in (4, 5) or not subscriptions:
            raise ValueError("need qos 0 or 1, protocol 4 or 5 and at least one subscription")
        if not 1 <= receive_maximum <= 65535 or not 0 <= keepalive_s <= 65535:
            raise ValueError("receive_maximum must be 1..65535 and keepalive_s 0..65535")
        self.host, self.port, self.client_id = host, port, client_id
        self.subscriptions, self.on_message, self.qos = tuple(subscriptions), on_message, qos
        self.protocol, self.clean_start, self.session_expiry_s = protocol, clean_start, session_expiry_s
        self.keepalive_s, self.receive_maximum = keepalive_s, receive_maximum
        self.username, self.password, self.ssl = username, password, ssl
        self.max_packet_bytes, self.connect_timeout_s = max_packet_bytes, connect_timeout_s
        self.generation = next(_generations)
        self._transport: asyncio.Transport | None = None
        self._inflight = bytearray(65536)  # 1 while a QoS 1 packet id awaits our PUBACK
        self._topic_aliases: dict[int, str] = {}
        self._pending: list[bytes] = []  # bytes of a packet not yet complete
        self._pending_size = self._need = 0
        self._paused = self._closing = self._entered = self._session_present = False
        self._ping_outstanding = self._ping_exempt = False
        self._keepalive_s = keepalive_s
        self._error: BaseException | None = None
        self._connack: asyncio.Future[None] | None = None
        self._suback: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None

    @property
    def session_present(self) -> bool:
        """The broker resumed a stored session (CONNACK flag)."""
        return self._session_present

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("MqttSubscriber is single-use: create one per connection")
        self._entered = True
        loop = asyncio.get_running_loop()
        self._closed, self._connack, self._suback = (loop.create_future() for _ in range(3))
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await loop.create_connection(lambda: self, self.host, self.port, ssl=self.ssl)
                self._write(self._connect_packet())
                await self._connack
                self._write(encode_subscribe(_SUBSCRIBE_ID, self.subscriptions, self.qos, self.protocol))
                await self._suback
        except BaseException as exc:
            for future in (self._connack, self._suback):
                future.cancel()  # nobody will await them now
            self._abort()
            error = connect_failure(exc, f"{self.host}:{self.port}", "CONNACK/SUBACK")
            if error is None:
                raise
            raise error from exc
        name = f"mqtt-keepalive-{self.client_id}"
        self._keepalive_task = asyncio.create_task(self._keepalive(), name=name)
        return self

    def _connect_packet(self) -> bytes:
        return encode_connect(
            client_id=self.client_id,
            protocol=self.protocol,
            clean_start=self.clean_start,
            keepalive_s=self.keepalive_s,
            session_expiry_s=self.session_expiry_s,
            receive_maximum=self.receive_maximum,
            max_packet_bytes=self.max_packet_bytes,
            username=self.username,
            password=self.password,
        )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing = True
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            # Wait for the broker to close after our DISCONNECT: it then has processed every
            # PUBACK before it, so a quick reconnect cannot race them and get acked messages again.
            transport.write(_DISCONNECT)
            if transport.can_write_eof():
                transport.write_eof()  # a broker that ignores DISCONNECT still closes on EOF
            if self._paused:
                transport.resume_reading()  # to see the broker's EOF; data is discarded now
        if self._closed is not None:
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.connect_timeout_s):
                        await asyncio.shield(self._closed)
            finally:
                if not self._closed.done():
                    self._abort()

    def ack(self, packet_ids: Iterable[int], *, generation: int | None = None) -> None:
        """PUBACK the packets whose ids ``on_message`` gave, all in one write.

        Ids not awaiting an ack on this connection (already acked, QoS 0's 0, or
        from another ``generation``) are dropped, as is everything once the
        connection is gone: the broker redelivers those messages anyway.
        """
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if generation is not None and generation != self.generation:
            return
        inflight, acked = self._inflight, []
        for packet_id in packet_ids:
            if inflight[packet_id]:
                inflight[packet_id] = 0
                acked.append(packet_id)
        if acked:
            transport.write(encode_pubacks(acked))

    def ack_tagged(self, acks: Iterable[tuple[int, int]]) -> None:
        """Like ``ack`` for ``(generation, packet_id)`` pairs; other generations are dropped."""
        own = self.generation
        self.ack(packet_id for generation, packet_id in acks if generation == own)

    def pause_reading(self) -> None:
        """Stop reading the socket; takes effect after the current message."""
        if not self._paused:
            self._paused = self._ping_exempt = True  # a PINGRESP cannot be read while paused
            if self._transport is not None and not self._transport.is_closing():
                self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again, first handing over the messages already buffered."""
        if self._paused:
            self._paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()
                asyncio.get_running_loop().call_soon(self.data_received, b"")

    async def wait_closed(self) -> None:
        """Return when we closed the connection; raise the reason when it was lost."""
        if self._closed is None:
            raise RuntimeError("not connected")
        await asyncio.shield(self._closed)
        if self._error is not None:
            raise self._error

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._error is None and not self._closing:
            self._error = MqttConnectionLost(f"connection lost: {exc or 'closed by the broker'}")
            self._error.__cause__ = exc
        handshake = [f for f in (self._connack, self._suback) if f is not None and not f.done()]
        if handshake:  # only the first is being awaited; an exception on the other would be lost
            handshake[0].set_exception(self._error or MqttConnectionLost("connection closed"))
            for future in handshake[1:]:
                future.cancel()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # after our DISCONNECT nothing is delivered: it could not be acknowledged
        pending = self._pending
        if pending:
            pending.append(data)
            self._pending_size += len(data)
            if self._pending_size < self._need or self._paused:
                return
            data = b"".join(pending)
            pending.clear()
        elif self._paused:
            if data:
                pending.append(data)
                self._pending_size = len(data)
            return
        try:
            pos = self._parse(data)
        except Exception as exc:  # a protocol error or on_message's own: both end the connection
            self._fail(exc)
            return
        if pos < len(data):
            # Slices of bytes are bytes, so payloads cost one copy; a bytearray buffer costs two.
            pending.append(data[pos:])
            self._pending_size = len(data) - pos

    # -- internals ----------------------------------------------------------------------
    def _parse(self, data: bytes) -> int:
        pos, end, limit = 0, len(data), self.max_packet_bytes
        on_message, inflight, v5 = self.on_message, self._inflight, int(self.protocol == 5)
        self._need = 0
        while end - pos >= 2:
            first, length, body = data[pos], data[pos + 1], pos + 2
            if length > 0x7F:
                length, body = decode_varint(data, pos + 1)
                if body < 0:
                    return pos
            stop = body + length
            if stop - pos > limit:
                raise MqttProtocolError(f"{stop - pos}-byte packet exceeds {limit}", reason_code=0x95)
            if stop > end:
                self._need = stop - pos
                return pos
            if first & 0xF0 != 0x30:
                self._control(first, data[body:stop])
                pos = stop
                continue
            qos = (first >> 1) & 3
            topic_end = body + 2 + ((data[body] << 8) | data[body + 1]) if length > 2 else end
            at = topic_end + (2 if qos else 0) + v5
            if at > stop or qos > 1:
                raise MqttProtocolError(f"malformed QoS {qos} PUBLISH", reason_code=0x81)
            try:
                topic = data[body + 2 : topic_end].decode()
            except UnicodeDecodeError as exc:
                raise MqttProtocolError("PUBLISH topic is not UTF-8", reason_code=0x81) from exc
            packet_id = 0
            if qos:
                packet_id = (data[topic_end] << 8) | data[topic_end + 1]
                inflight[packet_id] = 1
            if v5 and data[at - 1]:
                at, topic = self._publish_properties(data, at - 1, stop, topic)
            if not topic or (qos and not packet_id):
                raise MqttProtocolError("PUBLISH without topic or packet id", reason_code=0x82)
            on_message(topic, data[at:stop], qos, packet_id)
            pos = stop
            if self._paused:
                return pos
        return pos

    def _publish_properties(self, data: bytes, at: int, stop: int, topic: str) -> tuple[int, str]:
        props, at = decode_properties(data, at, stop)
        alias = props.get(0x23)
        if isinstance(alias, int):
            if not 0 < alias <= TOPIC_ALIAS_MAXIMUM:
                raise MqttProtocolError(f"topic alias {alias} out of range", reason_code=0x94)
            if topic:
                self._topic_aliases[alias] = topic
            else:
                topic = self._topic_aliases.get(alias, "")
        return at, topic

    def _control(self, first: int, body: bytes) -> None:
        try:
            if first == 0xD0:
                self._ping_outstanding = False
            elif first == 0x90:
                self._on_suback(body)
            elif first == 0x20:
                self._on_connack(body)
            elif first == 0xE0 and self.protocol == 5:
                code = body[0] if body else 0
                props = decode_properties(body, 1, len(body))[0] if len(body) > 1 else {}
                reason = f"broker sent DISCONNECT: {reason_name(code, props)}"
                raise MqttConnectionLost(reason, reason_code=code)
            else:
                raise MqttProtocolError(f"unexpected packet type 0x{first:02x}", reason_code=0x82)
        except IndexError as exc:
            raise MqttProtocolError(f"truncated packet 0x{first:02x}", reason_code=0x81) from exc

    def _on_connack(self, body: bytes) -> None:
        future = self._connack
        if future is None or future.done():
            raise MqttProtocolError("unexpected CONNACK", reason_code=0x82)
        code = body[1]
        props = decode_properties(body, 2, len(body))[0] if self.protocol == 5 else {}
        if code:
            reason = _V3_CONNACK.get(code, f"return code {code}") if self.protocol == 4 else reason_name(code, props)
            future.set_exception(MqttConnectError(code, f"connection refused: {reason}"))
            return
        self._session_present = bool(body[0] & 1)
        server_keepalive = props.get(0x13)
        if isinstance(server_keepalive, int):
            self._keepalive_s = server_keepalive  # MQTT 5 §3.2.2.3.14: the server's value wins
        future.set_result(None)

    def _on_suback(self, body: bytes) -> None:
        future = self._suback
        if future is None or future.done() or (body[0] << 8 | body[1]) != _SUBSCRIBE_ID:
            raise MqttProtocolError("unexpected SUBACK", reason_code=0x82)
        props, at = decode_properties(body, 2, len(body)) if self.protocol == 5 else ({}, 2)
        codes = body[at:]
        if len(codes) != len(self.subscriptions):
            raise MqttProtocolError("SUBACK does not match SUBSCRIBE", reason_code=0x82)
        for topic, code in zip(self.subscriptions, codes, strict=True):
            if code >= 0x80:
                reason = reason_name(code, props)
                future.set_exception(MqttConnectError(code, f"subscribe {topic!r}: {reason}"))
                return
            if code < self.qos:  # a QoS 0 grant would make our delayed acks meaningless
                reason = f"subscribe {topic!r}: granted QoS {code} < {self.qos}"
                future.set_exception(MqttConnectError(code, reason))
                return
        future.set_result(None)

    async def _keepalive(self) -> None:
        # Ping at 3/4 of the keep alive so jitter never lets the broker's 1.5x deadline pass.
        interval = self._keepalive_s * 0.75
        while interval:
            await asyncio.sleep(interval)
            if self._ping_outstanding and not self._ping_exempt:
                self._fail(MqttConnectionLost(f"no PINGRESP within {interval:.0f} s"))
                return
            self._ping_exempt, self._ping_outstanding = self._paused, True
            self._write(_PINGREQ)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self.protocol == 5 and isinstance(error, MqttProtocolError) and error.reason_code:
            self._write(bytes((0xE0, 1, error.reason_code)))  # tell the broker why
        self._abort()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        elif self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

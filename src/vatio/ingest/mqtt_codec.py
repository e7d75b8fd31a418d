"""MQTT 3.1.1/5 packet encoding and decoding shared by the subscriber and publishers.

Only what Vatio's clients need: CONNECT, SUBSCRIBE, PUBLISH, PUBACK, the
variable byte integer and the v5 properties (parsed to be skipped or read).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Literal

from vatio.errors import VatioError

#: Announced in CONNECT; a broker may then replace long telemetry topics by 2 bytes.
TOPIC_ALIAS_MAXIMUM = 1024
_SUBSCRIBE_ID = 1
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"  # v5: reason 0 and the session expiry given at CONNECT

# MQTT 5 §2.2.2.2 property identifier -> wire type, needed to skip the ones we ignore.
_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _U32, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _U32, 0x12: _UTF8, 0x13: _U16, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _U32, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16,
    0x22: _U16, 0x23: _U16, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
_REASONS = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8B: "server shutting down", 0x8D: "keep alive timeout", 0x8E: "session taken over",
    0x8F: "topic filter invalid", 0x93: "receive maximum exceeded", 0x94: "topic alias invalid",
    0x95: "packet too large", 0x97: "quota exceeded", 0x98: "administrative action",
    0x9C: "use another server", 0x9D: "server moved", 0x9E: "shared subscriptions not supported",
    0xA2: "wildcard subscriptions not supported",
}  # fmt: skip
_V3_CONNACK = {
    1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
    4: "bad user name or password", 5: "not authorized",
}  # fmt: skip
Properties = dict[int, int | str | bytes]


class MqttError(VatioError):
    """Base class of the MQTT transport's errors."""


class MqttConnectError(MqttError):
    """The broker refused the connection or a subscription (CONNACK/SUBACK)."""

    def __init__(self, reason_code: int, reason: str) -> None:
        self.reason_code = reason_code
        self.reason = reason
        super().__init__(f"{reason} (reason code 0x{reason_code:02x})")


class MqttConnectionLost(MqttError):  # noqa: N818 - the name the ingest is written against
    """The connection ended without our asking; ``reason_code`` if the broker said why."""

    def __init__(self, reason: str, *, reason_code: int | None = None) -> None:
        self.reason = reason
        self.reason_code = reason_code
        super().__init__(reason)


def connect_failure(exc: BaseException, where: str, awaited: str) -> MqttConnectionLost | None:
    """The transport error of a failed connect as the error clients handle, or None to re-raise as is.

    >>> str(connect_failure(TimeoutError(), "h:1883", "CONNACK"))
    'no CONNACK from h:1883 in time'
    """
    if isinstance(exc, TimeoutError):
        return MqttConnectionLost(f"no {awaited} from {where} in time")
    if isinstance(exc, OSError):
        return MqttConnectionLost(f"cannot connect to {where}: {exc}")
    return None


class MqttProtocolError(MqttConnectionLost):
    """The broker sent something MQTT forbids; we closed the connection."""


def reason_name(code: int, props: Properties | None = None) -> str:
    """Name an MQTT 5 reason code, preferring the broker's Reason String property."""
    text = props.get(0x1F) if props else None
    return text if isinstance(text, str) else _REASONS.get(code, f"reason 0x{code:02x}")


def encode_varint(value: int) -> bytes:
    """Encode a Variable Byte Integer (MQTT §1.5.5).

    >>> encode_varint(321)
    b'\\xc1\\x02'
    """
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a Variable Byte Integer at ``pos``: ``(value, next_pos)``, next_pos -1 if cut short.

    >>> decode_varint(b"\\x00\\xc1\\x02", 1)
    (321, 3)
    """
    value = 0
    for shift in (0, 7, 14, 21):
        if pos >= len(data):
            return 0, -1
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
    raise MqttProtocolError("variable byte integer longer than 4 bytes", reason_code=0x81)


def decode_properties(data: bytes, pos: int, limit: int) -> tuple[Properties, int]:
    """Decode an MQTT 5 property block at ``pos`` ending at most at ``limit``.

    Repeated properties (user properties, subscription ids) keep the last value;
    a user property keeps only its name. Returns ``(properties, next_pos)``.
    """
    length, start = decode_varint(data, pos)
    end = start + length
    if start < 0 or end > limit:
        raise MqttProtocolError("property block overruns its packet", reason_code=0x81)
    props: Properties = {}
    pos = start
    try:
        while pos < end:
            ident, kind = data[pos], _PROPERTY_TYPES.get(data[pos])
            pos += 1
            value: int | str | bytes
            if kind == _BYTE:
                value, pos = data[pos], pos + 1
            elif kind == _U16:
                value, pos = (data[pos] << 8) | data[pos + 1], pos + 2
            elif kind == _U32:
                value, pos = int.from_bytes(data[pos : pos + 4]), pos + 4
            elif kind == _VARINT:
                value, pos = decode_varint(data, pos)
            elif kind is None:
                raise MqttProtocolError(f"unknown property 0x{ident:02x}", reason_code=0x81)
            else:
                size = (data[pos] << 8) | data[pos + 1]
                raw, pos = data[pos + 2 : pos + 2 + size], pos + 2 + size
                if kind == _PAIR:
                    pos += 2 + ((data[pos] << 8) | data[pos + 1])
                value = raw if kind == _BINARY else raw.decode()
            props[ident] = value
    except (IndexError, UnicodeDecodeError) as exc:
        raise MqttProtocolError("malformed property block", reason_code=0x81) from exc
    if pos != end:
        raise MqttProtocolError("property overruns its block", reason_code=0x81)
    return props, end


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65535 bytes")
    return len(raw).to_bytes(2) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


def encode_connect(
    *,
    client_id: str,
    protocol: Literal[4, 5],
    clean_start: bool,
    keepalive_s: int,
    session_expiry_s: int = 0,
    receive_maximum: int = 65535,
    max_packet_bytes: int = 0,
    username: str | None = None,
    password: str | None = None,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_qos: int = 0,
    will_retain: bool = False,
) -> bytes:
    """Encode CONNECT; the v5 properties carry the session and flow-control limits.

    ``will_topic`` registers a last will: the broker publishes ``will_payload``
    there (at ``will_qos``, retained if ``will_retain``) when the connection
    ends without a DISCONNECT (MQTT 3.1.1 §3.1.2.5, MQTT 5 §3.1.2.5), which
    is how a device's retained status turns offline when it dies.

    >>> encode_connect(client_id="m", protocol=4, clean_start=True, keepalive_s=30,
    ...                will_topic="s", will_payload=b"off", will_qos=1, will_retain=True)
    b'\\x10\\x15\\x00\\x04MQTT\\x04.\\x00\\x1e\\x00\\x01m\\x00\\x01s\\x00\\x03off'
    """
    if will_topic is None and (will_payload or will_qos or will_retain):
        raise ValueError("will_payload, will_qos and will_retain need a will_topic")
    if will_qos not in (0, 1, 2):
        raise ValueError(f"will_qos must be 0, 1 or 2, not {will_qos}")
    flags = (0x02 if clean_start else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    if will_topic is not None:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
    header = _string("MQTT") + bytes((protocol, flags)) + keepalive_s.to_bytes(2)
    if protocol == 5:
        props = b"\x21" + receive_maximum.to_bytes(2) + b"\x22" + TOPIC_ALIAS_MAXIMUM.to_bytes(2)
        if session_expiry_s:
            props += b"\x11" + session_expiry_s.to_bytes(4)
        if max_packet_bytes:
            props += b"\x27" + max_packet_bytes.to_bytes(4)
        header += encode_varint(len(props)) + props
    payload = _string(client_id)
    if will_topic is not None:
        # v5 puts the (here empty) will properties before the will topic.
        payload += (b"\x00" if protocol == 5 else b"") + _string(will_topic) + _string(will_payload)
    if username is not None:
        payload += _string(username)
    if password is not None:
        payload += _string(password.encode())
    return _packet(0x10, header + payload)


def encode_subscribe(packet_id: int, filters: Sequence[str], qos: int, protocol: Literal[4, 5]) -> bytes:
    """Encode SUBSCRIBE for ``filters``, all at ``qos``."""
    body = packet_id.to_bytes(2) + (b"\x00" if protocol == 5 else b"")
    return _packet(0x82, body + b"".join(_string(f) + bytes((qos,)) for f in filters))


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 0,
    protocol: Literal[4, 5] = 5,
    properties: bytes = b"",
) -> bytes:
    """Encode PUBLISH (for publishers, tests and benchmarks); ``properties`` unframed.

    >>> encode_publish("a/b", b"hi", protocol=4)
    b'0\\x07\\x00\\x03a/bhi'
    """
    body = _string(topic) + (packet_id.to_bytes(2) if qos else b"")
    if protocol == 5:
        body += encode_varint(len(properties)) + properties
    return _packet(0x30 | (qos << 1), body + payload)


def encode_pubacks(packet_ids: Sequence[int]) -> bytes:
    """Encode one PUBACK per id, back to back (v5 allows omitting reason 0 and properties)."""
    return struct.pack(f">{len(packet_ids)}I", *[0x40020000 | pid for pid in packet_ids])

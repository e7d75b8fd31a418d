"""The MQTT codec and the subscriber's parser, without a broker."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vatio.ingest.mqtt import MqttSubscriber
from vatio.ingest.mqtt_codec import (
    MqttProtocolError,
    decode_properties,
    decode_varint,
    encode_connect,
    encode_pubacks,
    encode_publish,
    encode_subscribe,
    encode_varint,
)

Message = tuple[str, bytes, int, int]


class FakeTransport(asyncio.Transport):
    """Records what the subscriber writes; never touches a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.aborted = self.closing = False
        self.reading: list[str] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def abort(self) -> None:
        self.aborted = self.closing = True

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading.append("pause")

    def resume_reading(self) -> None:
        self.reading.append("resume")


def connected(protocol: Literal[4, 5] = 5, **kwargs: Any) -> tuple[MqttSubscriber, list[Message], FakeTransport]:
    received: list[Message] = []
    sub = MqttSubscriber(
        host="127.0.0.1",
        port=1,
        client_id="unit",
        subscriptions=["vatio/v1/+/+/telemetry"],
        protocol=protocol,
        on_message=lambda *message: received.append(message),
        **kwargs,
    )
    transport = FakeTransport()
    sub.connection_made(transport)
    return sub, received, transport


def feed(sub: MqttSubscriber, stream: bytes, cuts: list[int]) -> None:
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        sub.data_received(stream[start:stop])


# -- variable byte integers ----------------------------------------------------------------
@given(st.integers(0, 268_435_455))
def test_varint_round_trips_with_minimal_length(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(b"\xff" + encoded + b"\x07", 1) == (value, 1 + len(encoded))
    assert len(encoded) == 1 + (value > 127) + (value > 16_383) + (value > 2_097_151)


@given(st.integers(128, 268_435_455))
def test_varint_cut_short_asks_for_more(value: int) -> None:
    encoded = encode_varint(value)
    for end in range(len(encoded)):
        assert decode_varint(encoded[:end], 0) == (0, -1)


def test_varint_limits() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError, match="does not fit"):
        encode_varint(268_435_456)
    with pytest.raises(MqttProtocolError, match="longer than 4 bytes"):
        decode_varint(b"\xff\xff\xff\xff\x01", 0)


# -- packets ----------------------------------------------------------------------------
def test_connect_v5_carries_session_and_flow_control() -> None:
    packet = encode_connect(
        client_id="ingest-1",
        protocol=5,
        clean_start=False,
        keepalive_s=30,
        session_expiry_s=3600,
        receive_maximum=65535,
        max_packet_bytes=1 << 20,
        username="u",
        password="p",
    )
    props = b"\x21\xff\xff\x22\x04\x00\x11\x00\x00\x0e\x10\x27\x00\x10\x00\x00"
    body = b"\x00\x04MQTT\x05\xc0\x00\x1e" + bytes([len(props)]) + props
    body += b"\x00\x08ingest-1\x00\x01u\x00\x01p"
    assert packet == b"\x10" + encode_varint(len(body)) + body


def test_connect_v311_clean_session_flag() -> None:
    packet = encode_connect(client_id="c", protocol=4, clean_start=True, keepalive_s=60)
    assert packet == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"


def test_subscribe_v5_and_v311() -> None:
    assert encode_subscribe(1, ["a/+", "$share/g/b"], 1, 5) == (
        b"\x82\x16\x00\x01\x00\x00\x03a/+\x01\x00\x0a$share/g/b\x01"
    )
    assert encode_subscribe(7, ["a"], 0, 4) == b"\x82\x06\x00\x07\x00\x01a\x00"


def test_pubacks_back_to_back() -> None:
    assert encode_pubacks([1, 0x1234, 65535]) == b"\x40\x02\x00\x01\x40\x02\x12\x34\x40\x02\xff\xff"


def test_properties_of_every_wire_type() -> None:
    block = (
        b"\x01\x01"  # payload format indicator (byte)
        + b"\x23\x00\x07"  # topic alias (two bytes)
        + b"\x02\x00\x00\x01\x00"  # message expiry (four bytes)
        + b"\x0b\x80\x01"  # subscription identifier (varint)
        + b"\x03\x00\x04json"  # content type (UTF-8)
        + b"\x09\x00\x02\xab\xcd"  # correlation data (binary)
        + b"\x26\x00\x01k\x00\x01v"  # user property (pair: the name is kept)
    )
    data = encode_varint(len(block)) + block + b"payload"
    props, end = decode_properties(data, 0, len(data))
    assert props == {1: 1, 0x23: 7, 2: 256, 0x0B: 128, 3: "json", 9: b"\xab\xcd", 0x26: "k"}
    assert data[end:] == b"payload"


@pytest.mark.parametrize(
    ("block", "match"),
    [
        (b"\x05\x99\x00\x00\x00\x00", "unknown property"),
        (b"\x03\x03\x00\x05", "malformed|overruns"),
        (b"\x09\x01\x02", "overruns its packet"),
    ],
)
def test_bad_property_blocks(block: bytes, match: str) -> None:
    with pytest.raises(MqttProtocolError, match=match):
        decode_properties(block, 0, len(block))


# -- the parser on fragmented input --------------------------------------------------------
topics = st.text(st.sampled_from("abcxyz019/_-é"), min_size=1, max_size=40)
publishes = st.lists(
    st.tuples(topics, st.binary(max_size=400), st.sampled_from([0, 1]), st.booleans()),
    min_size=1,
    max_size=25,
)


def build_stream(protocol: Literal[4, 5], messages: list[tuple[str, bytes, int, bool]]) -> tuple[bytes, list[Message]]:
    """PUBLISH packets (v5 ones sometimes with properties and topic aliases) plus PINGRESPs."""
    stream, expected, aliases = bytearray(), [], dict[int, str]()
    for index, (topic, payload, qos, with_properties) in enumerate(messages):
        packet_id = index + 1 if qos else 0
        wire_topic, props = topic, b""
        if protocol == 5 and with_properties:
            alias = len(topic) % 3 + 1
            props = b"\x01\x01\x26\x00\x01k\x00\x01v\x23" + alias.to_bytes(2)
            if aliases.get(alias) == topic:
                wire_topic = ""  # the broker may send only the alias for a known topic
            aliases[alias] = topic
        stream += encode_publish(wire_topic, payload, qos=qos, packet_id=packet_id, protocol=protocol, properties=props)
        if index % 7 == 3:
            stream += b"\xd0\x00"
        expected.append((topic, payload, qos, packet_id))
    return bytes(stream), expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([4, 5]), publishes, st.data())
def test_any_fragmentation_yields_the_same_messages(
    protocol: Literal[4, 5], messages: list[tuple[str, bytes, int, bool]], data: st.DataObject
) -> None:
    stream, expected = build_stream(protocol, messages)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=60)))
    sub, received, transport = connected(protocol)
    feed(sub, stream, cuts)
    assert received == expected
    assert all(isinstance(payload, bytes) for _, payload, _, _ in received)
    assert not transport.aborted


def test_large_payload_with_three_byte_length_in_small_chunks() -> None:
    payload = bytes(range(256)) * 400
    stream = encode_publish("t/big", payload, qos=1, packet_id=9) * 2
    sub, received, _ = connected()
    feed(sub, stream, list(range(1000, len(stream), 1000)))
    assert received == [("t/big", payload, 1, 9)] * 2


def failure(sub: MqttSubscriber) -> BaseException | None:
    return sub._error  # the error wait_closed will raise


@pytest.mark.parametrize(
    ("packet", "match"),
    [
        (b"\x32\x03\x00\x09ab", "malformed QoS 1 PUBLISH"),  # topic longer than the packet
        (b"\x36\x06\x00\x01a\x00\x01\x00", "malformed QoS 3"),
        (b"\x30\x05\x00\x02\xff\xfe\x00", "not UTF-8"),
        (b"\x30\x03\x00\x00\x00", "without topic"),
        (b"\x30\xff\xff\xff\xff\x7f", "longer than 4 bytes"),
        (b"\x50\x02\x00\x01", "unexpected packet type 0x50"),
    ],
)
def test_malformed_input_fails_the_connection(packet: bytes, match: str) -> None:
    sub, received, transport = connected()
    sub.data_received(encode_publish("ok", b"1") + packet)
    assert received == [("ok", b"1", 0, 0)]
    assert isinstance(failure(sub), MqttProtocolError)
    assert transport.aborted
    with pytest.raises(MqttProtocolError, match=match):
        raise failure(sub)  # type: ignore[misc]


def test_oversized_packet_fails_before_its_body_arrives() -> None:
    sub, received, transport = connected(max_packet_bytes=1000)
    sub.data_received(encode_publish("big", b"x" * 5000)[:10])
    error = failure(sub)
    assert isinstance(error, MqttProtocolError)
    assert error.reason_code == 0x95
    assert transport.writes == [b"\xe0\x01\x95"]  # v5: the broker is told why
    assert received == []


def test_unknown_topic_alias_is_a_protocol_error() -> None:
    sub, _, transport = connected()
    sub.data_received(encode_publish("", b"x", properties=b"\x23\x00\x05"))
    assert transport.aborted
    assert "without topic" in str(failure(sub))


def test_on_message_errors_end_the_connection_as_themselves() -> None:
    sub, _, transport = connected()

    def broken(topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        raise KeyError("bug in the application")

    sub.on_message = broken
    sub.data_received(encode_publish("t", b"x"))
    assert isinstance(failure(sub), KeyError)
    assert transport.aborted


# -- acknowledgements ------------------------------------------------------------------
def test_ack_writes_once_and_only_for_packets_awaiting_it() -> None:
    sub, _, transport = connected()
    sub.data_received(b"".join(encode_publish("t", b"x", qos=1, packet_id=i) for i in (5, 6, 7)))
    sub.data_received(encode_publish("t", b"q0"))
    sub.ack([5, 7, 7, 0, 9])
    assert transport.writes == [b"\x40\x02\x00\x05\x40\x02\x00\x07"]
    sub.ack([5])  # already acknowledged
    sub.ack([6], generation=sub.generation + 1)  # stale
    assert len(transport.writes) == 1
    sub.ack_tagged([(sub.generation - 1, 6), (sub.generation, 6)])
    assert transport.writes[1:] == [b"\x40\x02\x00\x06"]


def test_generation_is_unique_and_known_before_connecting() -> None:
    first, _, _ = connected()
    second, _, _ = connected()
    assert second.generation > first.generation


def test_ack_after_the_connection_closed_is_dropped() -> None:
    sub, _, transport = connected()
    sub.data_received(encode_publish("t", b"x", qos=1, packet_id=1))
    sub.connection_lost(None)
    sub.ack([1])
    assert transport.writes == []


# -- backpressure ---------------------------------------------------------------------
async def test_pause_stops_delivery_after_the_current_message() -> None:
    sub, received, transport = connected()

    def pause_at_three(topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        received.append((topic, payload, qos, packet_id))
        if len(received) == 3:
            sub.pause_reading()

    sub.on_message = pause_at_three
    stream = b"".join(encode_publish("t", b"%d" % i) for i in range(10))
    sub.data_received(stream)
    assert len(received) == 3
    assert transport.reading == ["pause"]
    sub.resume_reading()
    assert transport.reading == ["pause", "resume"]
    await asyncio.sleep(0)
    assert [payload for _, payload, _, _ in received] == [b"%d" % i for i in range(10)]

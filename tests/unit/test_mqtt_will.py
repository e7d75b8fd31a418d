"""The last will in CONNECT (MQTT 3.1.1 and 5), checked by an independent parser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vatio.ingest.mqtt_codec import decode_varint, encode_connect


@dataclass
class Connect:
    protocol: int
    flags: int
    keepalive_s: int
    client_id: str
    will_topic: str | None
    will_payload: bytes | None
    username: str | None
    password: bytes | None


def _take(data: bytes, pos: int) -> tuple[bytes, int]:
    size = int.from_bytes(data[pos : pos + 2])
    return data[pos + 2 : pos + 2 + size], pos + 2 + size


def parse_connect(packet: bytes) -> Connect:
    """Read a CONNECT the way a broker does (§3.1), failing on any leftover byte."""
    assert packet[0] == 0x10
    length, pos = decode_varint(packet, 1)
    assert pos + length == len(packet), "remaining length must cover the packet exactly"
    name, pos = _take(packet, pos)
    assert name == b"MQTT"
    protocol, flags = packet[pos], packet[pos + 1]
    keepalive = int.from_bytes(packet[pos + 2 : pos + 4])
    pos += 4
    if protocol == 5:
        props, pos = decode_varint(packet, pos)
        pos += props
    client_id, pos = _take(packet, pos)
    will_topic = will_payload = username = password = None
    if flags & 0x04:
        if protocol == 5:
            will_props, pos = decode_varint(packet, pos)
            assert will_props == 0
        raw_topic, pos = _take(packet, pos)
        will_topic = raw_topic.decode()
        will_payload, pos = _take(packet, pos)
    if flags & 0x80:
        raw_user, pos = _take(packet, pos)
        username = raw_user.decode()
    if flags & 0x40:
        password, pos = _take(packet, pos)
    assert pos == len(packet)
    return Connect(protocol, flags, keepalive, client_id.decode(), will_topic, will_payload, username, password)


@pytest.mark.parametrize("protocol", [4, 5])
def test_will_fields_and_flags(protocol: Literal[4, 5]) -> None:
    packet = encode_connect(
        client_id="meter-1",
        protocol=protocol,
        clean_start=True,
        keepalive_s=45,
        username="u",
        password="p",
        will_topic="vatio/v1/home-1/meter-1/status",
        will_payload=b'{"v":1,"online":false}',
        will_qos=1,
        will_retain=True,
    )
    parsed = parse_connect(packet)
    assert parsed.flags == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert (parsed.client_id, parsed.keepalive_s) == ("meter-1", 45)
    assert parsed.will_topic == "vatio/v1/home-1/meter-1/status"
    assert parsed.will_payload == b'{"v":1,"online":false}'
    assert (parsed.username, parsed.password) == ("u", b"p")


@pytest.mark.parametrize("protocol", [4, 5])
@pytest.mark.parametrize(("qos", "retain", "bits"), [(0, False, 0x04), (2, False, 0x14), (0, True, 0x24)])
def test_will_qos_and_retain_bits(protocol: Literal[4, 5], qos: int, retain: bool, bits: int) -> None:
    packet = encode_connect(
        client_id="c", protocol=protocol, clean_start=False, keepalive_s=0,
        will_topic="t", will_qos=qos, will_retain=retain,
    )  # fmt: skip
    parsed = parse_connect(packet)
    assert parsed.flags == bits
    assert parsed.will_payload == b""


@pytest.mark.parametrize("protocol", [4, 5])
def test_without_will_nothing_changes(protocol: Literal[4, 5]) -> None:
    packet = encode_connect(client_id="c", protocol=protocol, clean_start=True, keepalive_s=60)
    parsed = parse_connect(packet)
    assert parsed.flags == 0x02
    assert parsed.will_topic is None


def test_v4_bytes_without_will_are_the_old_bytes() -> None:
    packet = encode_connect(client_id="c", protocol=4, clean_start=True, keepalive_s=60)
    assert packet == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"


@pytest.mark.parametrize(
    "kwargs",
    [{"will_qos": 1}, {"will_retain": True}, {"will_payload": b"x"}, {"will_topic": "t", "will_qos": 3}],
)
def test_inconsistent_will_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="will"):
        encode_connect(client_id="c", protocol=5, clean_start=True, keepalive_s=60, **kwargs)  # type: ignore[arg-type]


@given(
    protocol=st.sampled_from([4, 5]),
    topic=st.text(min_size=1, max_size=80).filter(lambda t: "\x00" not in t),
    payload=st.binary(max_size=300),
    user=st.none() | st.text(max_size=20),
)
def test_will_round_trips(protocol: Literal[4, 5], topic: str, payload: bytes, user: str | None) -> None:
    packet = encode_connect(
        client_id="m", protocol=protocol, clean_start=True, keepalive_s=30,
        username=user, will_topic=topic, will_payload=payload, will_qos=1,
    )  # fmt: skip
    parsed = parse_connect(packet)
    assert (parsed.will_topic, parsed.will_payload, parsed.username) == (topic, payload, user)

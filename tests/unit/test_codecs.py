"""The three encodings of schema v1: round trips, hostile input, and the .proto file."""

from __future__ import annotations

import importlib.util
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import cbor2
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vatio.contracts
from vatio.contracts import (
    CODECS,
    DecodedBatch,
    Limits,
    ParsedTopic,
    decode_telemetry,
    encode_telemetry,
    telemetry_file_descriptor,
    telemetry_topic,
)
from vatio.contracts.codecs import _PbBatch
from vatio.errors import ContractError, TopicError
from vatio.model.reading import Reading

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
LIMITS = Limits()
T0 = datetime(2026, 11, 24, 10, tzinfo=UTC)
ENCODINGS = sorted(CODECS)


def _decode(encoding: str, payload: bytes, device: str = "plug-7", **limits: Any) -> DecodedBatch:
    topic = telemetry_topic("home-1", device, encoding)  # type: ignore[arg-type]
    return decode_telemetry(topic, payload, limits=Limits(**limits), now=NOW)


def _decode_or_contract_error(encoding: str, payload: bytes) -> None:
    """Hostile input may be refused, but only ever with a ContractError."""
    try:
        outcome: object = _decode(encoding, payload)
    except ContractError as exc:
        outcome = exc.reason
    assert isinstance(outcome, DecodedBatch) or (isinstance(outcome, str) and outcome)


# -- round trips ---------------------------------------------------------------------------------


def _measurement(low: float, high: float) -> st.SearchStrategy[float | None]:
    return st.none() | st.floats(low, high, allow_nan=False)


@st.composite
def readings_of(draw: st.DrawFn, device: str = "plug-7") -> Reading:
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2026, 11, 25), timezones=st.just(UTC)))
    reading = Reading(
        device,
        moment.replace(microsecond=moment.microsecond // 1000 * 1000),
        draw(st.none() | st.integers(0, 2**63 - 1)),
        draw(_measurement(-100_000, 100_000)),
        draw(_measurement(0, 1e12)),
        draw(_measurement(0, 1000)),
        draw(_measurement(-2000, 2000)),
        draw(_measurement(-1, 1)),
        draw(st.none() | st.just(0.0) | st.floats(40, 70)),
        draw(_measurement(0, 1e12)),
    )
    if reading.power_w is None and reading.energy_wh is None:
        reading = reading._replace(power_w=draw(st.floats(-100_000, 100_000)))
    return reading


batches = st.lists(readings_of(), min_size=1, max_size=30, unique_by=lambda r: r.ts)


@given(readings=batches)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_random_valid_batches_round_trip_through_every_codec(readings: list[Reading]) -> None:
    for encoding in ENCODINGS:
        batch = _decode(encoding, encode_telemetry("plug-7", readings, encoding))
        assert batch.rejected == []
        assert batch.readings == readings


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_codec_conformance(encoding: str) -> None:
    codec = CODECS[encoding]
    assert codec.name == encoding
    reading = Reading("plug-7", T0, 41, power_w=0.0, energy_export_wh=12.5)
    decoded = codec.decode(codec.encode("plug-7", [reading]))
    assert isinstance(decoded, dict)
    assert decoded["v"] == 1
    assert decoded["device"] == "plug-7"
    # Absent stays absent and zero stays zero, in every encoding.
    item = decoded["readings"][0]
    assert item["power_w"] == 0.0
    assert "energy_wh" not in item
    assert "voltage_v" not in item
    assert item["seq"] == 41


def test_json_spells_ts_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 11, 24, 11, 0, 0, 123999, tzinfo=UTC).astimezone(ZoneInfo("Europe/Madrid"))
    payload = encode_telemetry("plug-7", [Reading("plug-7", moment, power_w=1.0)])
    assert orjson.loads(payload)["readings"][0]["ts"] == "2026-11-24T11:00:00.123Z"
    cbor_item = cbor2.loads(encode_telemetry("plug-7", [Reading("plug-7", moment, power_w=1.0)], "cbor"))
    assert cbor_item["readings"][0]["ts"] == "2026-11-24T11:00:00.123Z"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encode_refuses_what_the_contract_cannot_carry(encoding: str) -> None:
    with pytest.raises(ContractError, match="timezone-aware"):
        encode_telemetry("plug-7", [Reading("plug-7", datetime(2026, 11, 24), power_w=1.0)], encoding)
    with pytest.raises(ContractError) as other_device:
        encode_telemetry("plug-7", [Reading("plug-8", T0, power_w=1.0)], encoding)
    assert other_device.value.field == "device"
    with pytest.raises(ContractError) as bad_id:
        encode_telemetry("plug/7", [Reading("plug/7", T0, power_w=1.0)], encoding)
    assert bad_id.value.field == "device"


def test_encode_unknown_encoding() -> None:
    with pytest.raises(ContractError) as caught:
        encode_telemetry("plug-7", [], "xml")
    assert caught.value.field == "encoding"


# -- decode_telemetry ----------------------------------------------------------------------------


def test_size_limit_is_checked_before_decoding() -> None:
    with pytest.raises(ContractError, match="1001 bytes, more than the limit of 1000") as caught:
        _decode("json", b"\xff" * 1001, max_payload_bytes=1000)
    assert caught.value.field is None
    with pytest.raises(ContractError, match="not valid JSON"):
        _decode("json", b"\xff" * 1000, max_payload_bytes=1000)


def test_topic_selects_codec_and_device() -> None:
    payload = encode_telemetry("plug-7", [Reading("plug-7", T0, power_w=1.0)], "cbor")
    parsed = ParsedTopic("home-1", "plug-7", "telemetry", "cbor")
    assert decode_telemetry(parsed, payload, limits=LIMITS, now=NOW).readings[0].power_w == 1.0
    with pytest.raises(ContractError, match="not valid JSON"):
        decode_telemetry("vatio/v1/home-1/plug-7/telemetry", payload, limits=LIMITS, now=NOW)
    with pytest.raises(ContractError) as mismatch:
        decode_telemetry("vatio/v1/home-1/plug-8/telemetry/cbor", payload, limits=LIMITS, now=NOW)
    assert mismatch.value.field == "device"


@pytest.mark.parametrize("topic", ["vatio/v1/home-1/plug-7/status", "vatio/v1/home-1/alerts", "x/y"])
def test_non_telemetry_topics_are_refused(topic: str) -> None:
    with pytest.raises(TopicError):
        decode_telemetry(topic, b"{}", limits=LIMITS, now=NOW)


@pytest.mark.parametrize(
    ("encoding", "payload", "reason"),
    [
        ("json", b"", "not valid JSON"),
        ("json", b'{"v": 1,', "not valid JSON"),
        ("json", b'{"v": NaN}', "not valid JSON"),
        ("json", b"\xc3\x28", "not valid JSON"),
        ("cbor", b"", "not valid CBOR"),
        ("cbor", b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", "not valid CBOR"),  # 2**64-1 items promised
        ("cbor", b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff", "not valid CBOR"),  # 2**63 bytes promised
        ("cbor", b"\x81" * 100_000 + b"\x00", "not valid CBOR"),  # nesting
        ("cbor", b"\xa1\x01\x02", "not valid CBOR"),  # integer map key
        ("cbor", b"\xa2\x61v\x01\x61v\x01", "not valid CBOR"),  # duplicate key
        ("cbor", cbor2.dumps({"v": 1}) + b"\x00", "1 bytes after the item"),
        ("cbor", b"\xc1\x1b\x7f\xff\xff\xff\xff\xff\xff\xff", "not valid CBOR"),  # epoch out of range
        ("pb", b"\xff\xff\xff", "not valid Protobuf"),
        ("pb", b"\x1a\x05\x08", "not valid Protobuf"),  # truncated sub-message
        ("pb", b"\x53" * 100_000, "not valid Protobuf"),  # nested groups
        ("pb", b"\x12\x02\xc3\x28", "not valid Protobuf"),  # device not UTF-8
    ],
)
def test_malformed_bytes_raise_contract_error(encoding: str, payload: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as caught:
        _decode(encoding, payload)
    assert reason in caught.value.reason
    if encoding != "json" or payload:
        assert caught.value.__cause__ is not None or "after the item" in reason


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["v", "device", "readings", "ts", "power_w", "plug-7", "2026-11-24T10:00:00Z"]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(["v", "device", "readings", "ts", "power_w", "x"]), children)
    ),
    max_leaves=30,
)
envelopes = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 2, "1"]), "device": st.sampled_from(["plug-7", "x", 7])},
    optional={"readings": json_like},
)


@given(obj=json_like | envelopes)
def test_fuzz_json_like_objects(obj: object) -> None:
    _decode_or_contract_error("json", orjson.dumps(obj))
    _decode_or_contract_error("cbor", cbor2.dumps(obj))


@given(payload=st.binary(max_size=300), encoding=st.sampled_from(ENCODINGS))
def test_fuzz_random_bytes(payload: bytes, encoding: str) -> None:
    _decode_or_contract_error(encoding, payload)


@given(
    readings=st.lists(readings_of(), min_size=1, max_size=3),
    encoding=st.sampled_from(ENCODINGS),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_corrupted_valid_payloads(readings: list[Reading], encoding: str, edits: list[tuple[int, int]]) -> None:
    payload = bytearray(encode_telemetry("plug-7", readings, encoding))
    for position, value in edits:
        payload[position % len(payload)] = value
    _decode_or_contract_error(encoding, bytes(payload))


# -- CBOR specifics ------------------------------------------------------------------------------


def _cbor(readings: list[dict[str, object]], **options: Any) -> bytes:
    return cbor2.dumps({"v": 1, "device": "plug-7", "readings": readings}, **options)


def test_cbor_accepts_tagged_timestamps() -> None:
    local = T0.astimezone(ZoneInfo("America/New_York"))
    tag0 = _decode("cbor", _cbor([{"ts": local, "power_w": 1.0}]))
    tag1 = _decode("cbor", _cbor([{"ts": T0, "power_w": 1.0}], datetime_as_timestamp=True))
    assert tag0.readings[0].ts == tag1.readings[0].ts == T0
    assert tag0.readings[0].ts.tzinfo is UTC


def test_cbor_non_finite_values_reject_their_reading() -> None:
    batch = _decode(
        "cbor",
        _cbor(
            [
                {"ts": "2026-11-24T10:00:00Z", "power_w": math.nan},
                {"ts": "2026-11-24T10:00:01Z", "energy_wh": math.inf},
                {"ts": "2026-11-24T10:00:02Z", "power_w": 1.0, "voltage_v": b"230"},
                {"ts": "2026-11-24T10:00:03Z", "power_w": 2.0},
            ]
        ),
    )
    assert [r.power_w for r in batch.readings] == [2.0]
    assert [(e.field, e.reason) for e in batch.rejected] == [
        ("readings[0].power_w", "is NaN"),
        ("readings[1].energy_wh", "is inf, not a finite number"),
        ("readings[2].voltage_v", "must be a number, not bytes"),
    ]


# -- Protobuf specifics --------------------------------------------------------------------------


def _pb(**batch: Any) -> bytes:
    message = _PbBatch(**batch)
    payload: bytes = message.SerializeToString()
    return payload


def test_pb_presence_and_defaults() -> None:
    ts_ms = int(T0.timestamp() * 1000)
    batch = _decode(
        "pb",
        _pb(
            v=1,
            device="plug-7",
            readings=[
                {"ts_ms": ts_ms, "power_w": 0.0},
                {"power_w": 1.0},
                {"ts_ms": ts_ms + 1, "power_w": math.nan},
                {"ts_ms": 2**62, "power_w": 1.0},
                {"ts_ms": -(2**62), "power_w": 1.0},
                {"ts_ms": ts_ms + 2, "seq": 2**64 - 1, "power_w": 1.0},
                {"ts_ms": ts_ms + 3, "voltage_v": 230.0},
            ],
        ),
    )
    assert batch.readings == [Reading("plug-7", T0, power_w=0.0)]
    assert [(e.field, e.reason.split(" ")[0]) for e in batch.rejected] == [
        ("readings[1].ts", "missing;"),
        ("readings[2].power_w", "is"),
        ("readings[3].ts", "9999-12-31T23:59:59.999Z"),
        ("readings[4].ts", "0001-01-01T00:00:00.000Z"),
        ("readings[5].seq", "18446744073709551615"),
        ("readings[6]", "carries"),
    ]


@pytest.mark.parametrize(
    ("batch", "field", "reason"),
    [
        ({"device": "plug-7", "readings": [{"ts_ms": 1, "power_w": 1.0}]}, "v", "missing version"),
        ({"v": 2, "device": "plug-7", "readings": [{"ts_ms": 1}]}, "v", "unknown version 2"),
        ({"v": 1, "readings": [{"ts_ms": 1}]}, "device", "missing device id"),
        ({"v": 1, "device": "plug-7"}, "readings", "is empty"),
    ],
)
def test_pb_envelope_errors(batch: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ContractError) as caught:
        _decode("pb", _pb(**batch))
    assert caught.value.field == field
    assert reason in caught.value.reason


def _compile_proto(tmp_path: Path) -> ModuleType:
    from grpc_tools import protoc

    proto = Path(vatio.contracts.__file__).parent / "telemetry.proto"
    status = protoc.main(["protoc", f"-I{proto.parent}", f"--python_out={tmp_path}", str(proto)])
    assert status == 0
    spec = importlib.util.spec_from_file_location("telemetry_pb2", tmp_path / "telemetry_pb2.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_telemetry_proto_matches_the_runtime_descriptor(tmp_path: Path) -> None:
    from google.protobuf import descriptor_pb2

    generated = _compile_proto(tmp_path)
    compiled = descriptor_pb2.FileDescriptorProto()
    generated.DESCRIPTOR.CopyToProto(compiled)
    runtime = telemetry_file_descriptor()
    assert (compiled.package, compiled.syntax) == (runtime.package, runtime.syntax) == ("vatio.v1", "proto3")
    assert list(compiled.message_type) == list(runtime.message_type)

    # Generated class -> runtime codec.
    ts_ms = int(T0.timestamp() * 1000)
    message = generated.TelemetryBatch(v=1, device="plug-7")
    message.readings.add(ts_ms=ts_ms, seq=3, power_w=0.0, energy_export_wh=7.5)
    batch = _decode("pb", message.SerializeToString())
    assert batch.readings == [Reading("plug-7", T0, 3, power_w=0.0, energy_export_wh=7.5)]

    # Runtime codec -> generated class.
    parsed = generated.TelemetryBatch.FromString(encode_telemetry("plug-7", batch.readings, "pb"))
    assert (parsed.v, parsed.device, parsed.readings[0].ts_ms) == (1, "plug-7", ts_ms)
    assert parsed.readings[0].HasField("power_w")
    assert not parsed.readings[0].HasField("energy_wh")


def test_absurd_timestamps_in_any_encoding_are_rejected_not_raised() -> None:
    far = T0 + timedelta(days=400)
    for encoding in ENCODINGS:
        batch = _decode(encoding, encode_telemetry("plug-7", [Reading("plug-7", far, power_w=1.0)], encoding))
        assert batch.readings == []
        assert batch.rejected[0].field == "readings[0].ts"

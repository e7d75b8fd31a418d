"""The three encodings of telemetry schema v1 (JSON, CBOR, Protobuf) and the ingest entry point.

Every codec decodes to the same JSON-shaped object, so one validator
(:func:`~vatio.contracts.schema.validate_batch`) serves them all. Decoding
hostile bytes raises only :class:`ContractError`; the payload size is checked
before any decoder sees the bytes, which bounds the work and memory a
message can cost.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol, overload

import cbor2
import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from vatio.contracts.schema import VERSION, DecodedBatch, Limits, format_ts, validate_batch
from vatio.contracts.topics import ParsedTopic, id_problem, parse_topic
from vatio.errors import ContractError, TopicError
from vatio.model.instants import from_ms, to_ms
from vatio.model.reading import MEASUREMENTS, Reading

# Containers of a v1 batch nest three deep; anything much deeper is hostile.
_CBOR_MAX_DEPTH: Final = 8
_MIN_TS: Final = datetime.min.replace(tzinfo=UTC)
_MAX_TS: Final = datetime.max.replace(tzinfo=UTC)


class Codec(Protocol):
    """One encoding of schema v1.

    ``encode`` writes a batch; ``decode`` turns bytes into the JSON-shaped
    object (``{"v", "device", "readings": [{"ts", "seq", "power_w", ...}]}``,
    ``readings`` a sequence of dicts, ``ts`` a string or an aware datetime)
    without checking the schema, and raises only :class:`ContractError`.
    """

    name: str

    def encode(self, device: str, readings: Sequence[Reading]) -> bytes: ...

    def decode(self, payload: bytes) -> object: ...


def _check_device(device: str, readings: Sequence[Reading]) -> None:
    problem = id_problem(device)
    if problem is not None:
        raise ContractError(f"device id {problem}", field="device")
    for reading in readings:
        if reading.device_id != device:
            raise ContractError(f"reading of {reading.device_id!r} in a batch of {device!r}", field="device")


def _reading_map(reading: Reading) -> dict[str, object]:
    """A reading as JSON/CBOR map; absent measurements are left out, not null."""
    item: dict[str, object] = {"ts": format_ts(reading.ts)}
    if reading.seq is not None:
        item["seq"] = reading.seq
    for name, value in zip(MEASUREMENTS, reading[3:], strict=True):
        if value is not None:
            item[name] = value
    return item


def _batch_map(device: str, readings: Sequence[Reading]) -> dict[str, object]:
    _check_device(device, readings)
    return {"v": VERSION, "device": device, "readings": [_reading_map(r) for r in readings]}


class JsonCodec:
    """JSON (orjson); ``ts`` as ``2026-11-24T10:00:00.000Z``.

    >>> from datetime import UTC, datetime
    >>> r = Reading("plug-7", datetime(2026, 11, 24, 10, tzinfo=UTC), 41, power_w=123.4)
    >>> JsonCodec().encode("plug-7", [r])
    b'{"v":1,"device":"plug-7","readings":[{"ts":"2026-11-24T10:00:00.000Z","seq":41,"power_w":123.4}]}'
    >>> JsonCodec().decode(b'{"v": 1}')
    {'v': 1}
    """

    name = "json"

    def encode(self, device: str, readings: Sequence[Reading]) -> bytes:
        return orjson.dumps(_batch_map(device, readings))

    def decode(self, payload: bytes) -> object:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ContractError(f"payload is not valid JSON: {exc}") from exc


class CborCodec:
    """CBOR (RFC 8949, cbor2); ``ts`` as the same RFC 3339 text as JSON.

    Decoding also accepts ``ts`` as tag 0 (date/time string) or tag 1 (epoch
    seconds). Maps with duplicate or non-text keys and trailing bytes are
    malformed; they would make map lookups collide or hide data.

    >>> from datetime import UTC, datetime
    >>> r = Reading("plug-7", datetime(2026, 11, 24, 10, tzinfo=UTC), 41, power_w=123.4)
    >>> CborCodec().decode(CborCodec().encode("plug-7", [r]))["readings"]
    [{'ts': '2026-11-24T10:00:00.000Z', 'seq': 41, 'power_w': 123.4}]
    """

    name = "cbor"

    def encode(self, device: str, readings: Sequence[Reading]) -> bytes:
        return cbor2.dumps(_batch_map(device, readings))

    def decode(self, payload: bytes) -> object:
        try:
            decoded, end = _cbor_loads(payload)
        # cbor2's tag decoders surface whatever their constructors raise
        # (ValueError, OverflowError, TypeError...); all mean malformed input.
        except Exception as exc:
            raise ContractError(f"payload is not valid CBOR: {exc}") from exc
        if end != len(payload):
            raise ContractError(f"payload is not valid CBOR: {len(payload) - end} bytes after the item")
        return decoded


def _cbor_loads(payload: bytes) -> tuple[object, int]:
    """The first data item and the offset where it ends."""
    # cbor2.loads() ignores trailing bytes; a decoder on a stream shows where the item ends.
    stream = io.BytesIO(payload)
    decoder = cbor2.CBORDecoder(
        stream,
        max_depth=_CBOR_MAX_DEPTH,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )
    return decoder.decode(), stream.tell()


# Field numbers are the wire format: never renumber, never reuse (telemetry.proto).
_PB_MEASUREMENTS: Final = (
    ("power_w", 3),
    ("energy_wh", 4),
    ("voltage_v", 5),
    ("current_a", 6),
    ("power_factor", 7),
    ("frequency_hz", 8),
    ("energy_export_wh", 9),
)
_F = descriptor_pb2.FieldDescriptorProto


def telemetry_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The schema of ``telemetry.proto``, built in code so no protoc step is needed.

    >>> [m.name for m in telemetry_file_descriptor().message_type]
    ['Reading', 'TelemetryBatch']
    """
    proto = descriptor_pb2.FileDescriptorProto(name="vatio/v1/telemetry.proto", package="vatio.v1", syntax="proto3")
    reading = proto.message_type.add(name="Reading")
    _add_field(reading, "ts_ms", 1, _F.TYPE_INT64)
    _add_field(reading, "seq", 2, _F.TYPE_UINT64, optional=True)
    for name, number in _PB_MEASUREMENTS:
        _add_field(reading, name, number, _F.TYPE_DOUBLE, optional=True)
    batch = proto.message_type.add(name="TelemetryBatch")
    _add_field(batch, "v", 1, _F.TYPE_UINT32)
    _add_field(batch, "device", 2, _F.TYPE_STRING)
    readings = _add_field(batch, "readings", 3, _F.TYPE_MESSAGE)
    readings.label = _F.LABEL_REPEATED
    readings.type_name = ".vatio.v1.Reading"
    return proto


def _add_field(message: Any, name: str, number: int, kind: int, *, optional: bool = False) -> Any:
    field = message.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)
    if optional:
        # proto3 `optional` is a synthetic one-field oneof named after the field.
        field.proto3_optional = True
        field.oneof_index = len(message.oneof_decl)
        message.oneof_decl.add(name=f"_{name}")
    return field


def _pb_batch_class() -> Any:
    # A private pool: the default one may already hold a protoc-generated
    # telemetry_pb2 with the same message names.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(telemetry_file_descriptor())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("vatio.v1.TelemetryBatch"))


_PbBatch: Final = _pb_batch_class()


class ProtobufCodec:
    """Protocol Buffers, message ``vatio.v1.TelemetryBatch`` of ``telemetry.proto``.

    ``ts`` travels as ``ts_ms``, int64 milliseconds since the Unix epoch. A
    zero ``v``, empty ``device`` or zero ``ts_ms`` (proto3 defaults) decode as
    absent. Unknown fields are ignored, as protobuf's compatibility rules want.

    >>> from datetime import UTC, datetime
    >>> r = Reading("plug-7", datetime(2026, 11, 24, 10, tzinfo=UTC), 41, power_w=123.4)
    >>> item = ProtobufCodec().decode(ProtobufCodec().encode("plug-7", [r]))["readings"][0]
    >>> item["seq"], item["power_w"], item["ts"].isoformat()
    (41, 123.4, '2026-11-24T10:00:00+00:00')
    """

    name = "pb"

    def encode(self, device: str, readings: Sequence[Reading]) -> bytes:
        _check_device(device, readings)
        batch = _PbBatch(v=VERSION, device=device)
        add = batch.readings.add
        for reading in readings:
            message = add(ts_ms=_ts_ms(reading.ts))
            if reading.seq is not None:
                message.seq = reading.seq
            for (name, _), value in zip(_PB_MEASUREMENTS, reading[3:], strict=True):
                if value is not None:
                    setattr(message, name, value)
        payload: bytes = batch.SerializeToString()
        return payload

    def decode(self, payload: bytes) -> object:
        batch = _PbBatch()
        try:
            batch.ParseFromString(payload)
        # upb raises DecodeError, but a truncated or mistyped buffer may also
        # raise TypeError/ValueError: all mean malformed input.
        except Exception as exc:
            raise ContractError(f"payload is not valid Protobuf: {exc}") from exc
        decoded: dict[str, object] = {"readings": _PbReadings(batch.readings)}
        if batch.v:
            decoded["v"] = batch.v
        if batch.device:
            decoded["device"] = batch.device
        return decoded


def _ts_ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ContractError("ts must be timezone-aware", field="ts")
    return to_ms(ts)


_PB_OPTIONAL: Final = ("seq", *(name for name, _ in _PB_MEASUREMENTS))


def _pb_reading(message: Any) -> dict[str, object]:
    item: dict[str, object] = {}
    for name in _PB_OPTIONAL:
        value = getattr(message, name)
        # Reading a value is cheaper than HasField(); only a 0 may be an absent field.
        if value or message.HasField(name):
            item[name] = value
    ts_ms = message.ts_ms
    if ts_ms:
        try:
            item["ts"] = from_ms(ts_ms)
        except OverflowError:
            # Past datetime's range: clamp so the validator rejects it as too old/new.
            item["ts"] = _MAX_TS if ts_ms > 0 else _MIN_TS
    return item


class _PbReadings(Sequence[dict[str, object]]):
    """The readings of a parsed batch as dicts, converted only when read.

    A 4 MiB payload holds two million empty readings: converting lazily lets
    the validator refuse an oversized batch from its length alone.
    """

    __slots__ = ("_messages",)

    def __init__(self, messages: Any) -> None:
        self._messages = messages

    def __len__(self) -> int:
        return len(self._messages)

    @overload
    def __getitem__(self, index: int) -> dict[str, object]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, object]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, object] | list[dict[str, object]]:
        if isinstance(index, slice):
            return [_pb_reading(message) for message in self._messages[index]]
        return _pb_reading(self._messages[index])

    def __iter__(self) -> Iterator[dict[str, object]]:
        return map(_pb_reading, self._messages)

    def __repr__(self) -> str:
        return repr(list(self))


CODECS: Final[dict[str, Codec]] = {codec.name: codec for codec in (JsonCodec(), CborCodec(), ProtobufCodec())}


def encode_telemetry(device: str, readings: Sequence[Reading], encoding: str = "json") -> bytes:
    """Encode a batch for publishing on ``telemetry_topic(site, device, encoding)``.

    >>> from datetime import UTC, datetime
    >>> r = Reading("plug-7", datetime(2026, 11, 24, 10, tzinfo=UTC), power_w=5.0)
    >>> len(encode_telemetry("plug-7", [r], "pb"))
    28
    """
    codec = CODECS.get(encoding)
    if codec is None:
        raise ContractError(f"unknown encoding {encoding!r}; expected json, cbor or pb", field="encoding")
    return codec.encode(device, readings)


def decode_telemetry(topic: ParsedTopic | str, payload: bytes, *, limits: Limits, now: datetime) -> DecodedBatch:
    """Decode and validate one telemetry message; the encoding comes from the topic.

    Raises :class:`ContractError` (:class:`TopicError` for the topic) when the
    message as a whole is unusable; bad readings are in ``rejected``.

    >>> from datetime import UTC, datetime
    >>> batch = decode_telemetry(
    ...     "vatio/v1/home-1/plug-7/telemetry",
    ...     b'{"v":1,"device":"plug-7","readings":[{"ts":"2026-11-24T10:00:00Z","power_w":5}]}',
    ...     limits=Limits(), now=datetime(2026, 11, 24, 12, tzinfo=UTC))
    >>> batch.readings[0].power_w, batch.rejected
    (5.0, [])
    """
    parsed = parse_topic(topic) if isinstance(topic, str) else topic
    if parsed.kind != "telemetry" or parsed.encoding is None:
        raise TopicError(f"{parsed.kind!r} is not a telemetry topic")
    if len(payload) > limits.max_payload_bytes:
        raise ContractError(f"payload is {len(payload)} bytes, more than the limit of {limits.max_payload_bytes}")
    decoded = CODECS[parsed.encoding].decode(payload)
    return validate_batch(decoded, topic_device=parsed.device, limits=limits, now=now)

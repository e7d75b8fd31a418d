"""Bad input at a running ingest: every bad message becomes a dead letter with its reason.

Hypothesis generates storms of 150-300 MQTT messages. Valid telemetry batches (JSON,
CBOR, Protobuf, from the codecs and hand-made) and status messages are mixed with every
kind of bad input the contract knows: malformed JSON/CBOR/Protobuf, random bytes, wrong
types, NaN and infinities, physically absurd values, timestamps years ahead or before
2000 or without an offset, unknown versions, a payload device that is not the topic's,
unknown fields, oversized payloads and batches, malformed topics and garbage status
messages. The storm goes through a private mosquitto at QoS 1 into a running ingest
(`IngestService` around `IngestPipeline`, the objects `vatio ingest` runs, in process
so the `Limits` can be small and oversize payloads cheap) that writes to SQLite and to
a fresh PostgreSQL database. Then:

1. every valid reading is stored with exactly its values;
2. every bad message left exactly one dead letter, byte for byte and on its topic,
   whose reason names the problem (the field path and what is wrong there);
3. a batch with good and bad readings stores the good ones and its dead letter names
   each bad one;
4. the consumer never stopped: a valid message sent after the storm is stored, over
   the first and only connection;
5. the store holds nothing else: readings, dead letters and devices counted exactly.

Which malformations can reach the ingest is the broker's decision; the second test
pins it down:

* Topics outside the subscriptions (``vatio/v1/+/+/telemetry``, ``.../telemetry/cbor``,
  ``.../telemetry/pb``, ``vatio/v1/+/+/status``) are never delivered: ``vatio/v2/...``,
  ``.../telemetry/xml``, missing or extra levels, ``config``/``ota``/``alerts``.
* mosquitto disconnects a publisher whose topic is not valid MQTT UTF-8 (U+0000, other
  control characters, non-characters, broken UTF-8) or contains a wildcard.
* Everything else does reach it: any text in the site and device levels, which ``+``
  matches (spaces, ``$``, non-ASCII, ids over 64 characters, empty levels), and any
  payload on a subscribed topic. That is what the storm throws.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import cbor2
import orjson
import pytest
from google.protobuf import descriptor_pool, message_factory
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from vatio.contracts import (
    CODECS,
    ENCODINGS,
    Encoding,
    Limits,
    decode_telemetry,
    encode_telemetry,
    format_ts,
    id_problem,
    status_topic,
    telemetry_file_descriptor,
    telemetry_topic,
)
from vatio.errors import ContractError
from vatio.ingest.mqtt_codec import encode_connect, encode_varint
from vatio.ingest.pipeline import MAX_REASONS, IngestPipeline
from vatio.ingest.service import IngestOptions, IngestService
from vatio.model import Reading
from vatio.model.instants import to_ms
from vatio.model.reading import MEASUREMENTS
from vatio.sim.wire import FastPublisher
from vatio.store import Store, open_store
from vatio.testing import create_database, drop_database, mosquitto
from vatio.transport import BrokerUrl

pytestmark = pytest.mark.integration

NOW: Final = datetime(2026, 11, 24, 12, tzinfo=UTC)
# Small limits make oversize payloads and overlong batches cheap to build; the checks are the same.
LIMITS: Final = Limits(max_payload_bytes=32 * 1024, max_readings=200)
FIRST_TS: Final = NOW - timedelta(days=2)
EARLIEST: Final = datetime(1990, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
#: Device -> site of the storm; the last ids are as long as contract v1 allows.
DEVICES: Final = {"plug-1": "home-1", "meter_2": "home-1", "P1-3": "home-2", "d" * 64: "s" * 64}
STATUS_SITE: Final = "home-3"
SUFFIX_ENCODINGS: Final[dict[str, Encoding]] = {
    "telemetry": "json",
    "telemetry/cbor": "cbor",
    "telemetry/pb": "pb",
}
MESSAGES_PER_STORM: Final = (150, 300)
EXAMPLES: Final = 8
ID_CHARS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
PADDABLE: Final[tuple[Encoding, ...]] = ("json", "pb")  # can grow without changing meaning
ENCODING_NAMES: Final = {"json": "JSON", "cbor": "CBOR", "pb": "Protobuf"}
READING_KEYS: Final = frozenset({"ts", "seq", *MEASUREMENTS})
ENVELOPE_KEYS: Final = frozenset({"v", "device", "readings"})

RANGES: Final[dict[str, tuple[float, float]]] = {
    "power_w": (-LIMITS.max_abs_power_w, LIMITS.max_abs_power_w),
    "energy_wh": (0.0, LIMITS.max_energy_wh),
    "voltage_v": (0.0, LIMITS.max_voltage_v),
    "current_a": (-LIMITS.max_abs_current_a, LIMITS.max_abs_current_a),
    "power_factor": (-1.0, 1.0),
    "frequency_hz": (LIMITS.min_frequency_hz, LIMITS.max_frequency_hz),
    "energy_export_wh": (0.0, LIMITS.max_energy_wh),
}
# Valid values at and on the limits, ints among them (the wire may carry 230 for 230.0).
EDGES: Final[dict[str, tuple[float, ...]]] = {
    "power_w": (-100_000.0, 100_000.0, 0.0, -0.0, 5e-324, 0, 2300, -150),
    "energy_wh": (0.0, 1e12, 0, 100_500.5),
    "voltage_v": (0.0, 1000.0, 230, 229.87),
    "current_a": (-2000.0, 2000.0, 0, -0.54),
    "power_factor": (-1.0, 1.0, 0, 0.98),
    "frequency_hz": (0.0, 0, 40.0, 70.0, 50, 49.98),  # 0 Hz: the mains is down
    "energy_export_wh": (0.0, 1e12, 0, 12.5),
}
TS_OFFSETS: Final = (None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-3)))


def _pb_batch_class() -> Any:
    # Built from the public descriptor, as a third-party device would build it.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(telemetry_file_descriptor())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("vatio.v1.TelemetryBatch"))


PbBatch: Final = _pb_batch_class()


class TsMs(int):
    """A raw protobuf ``ts_ms``, for instants no datetime can hold."""


# -- what each message must do to the store ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Expectation:
    """Something the dead letter's reason must say: ``phrase``, within the item for ``path``.

    Reasons read ``path: what is wrong``; a batch's reason joins one such item per bad
    reading, so the phrase must come before the next ``readings[`` item.
    """

    path: str | None
    phrase: str

    def found_in(self, reason: str) -> bool:
        if self.path is None:
            return self.phrase in reason
        pattern = re.escape(self.path) + r": (?:(?!readings\[).)*?" + re.escape(self.phrase)
        return re.search(pattern, reason, re.DOTALL) is not None


@dataclass(frozen=True, slots=True)
class Published:
    """One message of a storm and what the ingest must make of it.

    ``reason`` is None for a good message (no dead letter); ``stored`` are the readings
    it must leave in the store; ``status`` is ``(device, online, firmware)``.
    """

    tags: tuple[str, ...]
    topic: str
    payload: bytes
    stored: tuple[Reading, ...] = ()
    reason: tuple[Expectation, ...] | None = None
    status: tuple[str, bool, str | None] | None = None

    def describe(self) -> str:
        shown = self.payload if len(self.payload) <= 120 else self.payload[:120] + b"..."
        return f"{'/'.join(self.tags)} on {self.topic!r}: {shown!r}"


class Storm:
    """The messages of one storm, in publishing order."""

    def __init__(self, messages: tuple[Published, ...]) -> None:
        self.messages = messages

    @property
    def bad(self) -> list[Published]:
        return [m for m in self.messages if m.reason is not None]

    def __repr__(self) -> str:
        # Hypothesis prints the falsifying example; a summary reads better than 200 payloads.
        tags = Counter(tag for m in self.messages for tag in m.tags)
        return f"Storm({len(self.messages)} messages, {len(self.bad)} bad: {dict(sorted(tags.items()))})"


class Draft:
    """Unique instants and seqs for every reading of a storm, good values from a seeded RNG.

    Hypothesis draws the structure and every bad value; the bulk of good measurements
    would blow its per-example budget, so a seed it draws decides those.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.count = 0

    def instant(self) -> datetime:
        self.count += 1
        return FIRST_TS + timedelta(milliseconds=1500 * self.count + self.count % 7)

    def good_values(self) -> dict[str, float]:
        rng = self.rng
        carries = rng.choice((("power_w",), ("energy_wh",), ("power_w", "energy_wh")))
        values: dict[str, float] = {}
        for name in MEASUREMENTS:
            if name in carries or (name not in ("power_w", "energy_wh") and rng.random() < 0.4):
                low, high = RANGES[name]
                values[name] = rng.choice(EDGES[name]) if rng.random() < 0.25 else rng.uniform(low, high)
        return values

    def wire_ts(self, ts: datetime, encoding: str) -> object:
        """``ts`` as a device might spell it: any UTC offset in JSON, tag 0 or text in CBOR."""
        if encoding == "pb" or (encoding == "cbor" and self.rng.random() < 0.5):
            return ts
        offset = self.rng.choice(TS_OFFSETS)
        return format_ts(ts) if offset is None else ts.astimezone(offset).isoformat(timespec="milliseconds")

    def good_row(self, device: str, encoding: str) -> tuple[dict[object, object], Reading]:
        ts = self.instant()
        seq = self.count if self.rng.random() < 0.7 else None
        values = self.good_values()
        row: dict[object, object] = {"ts": self.wire_ts(ts, encoding)}
        if seq is not None:
            row["seq"] = seq
        row.update(values)
        absent = [name for name in MEASUREMENTS if name not in values]
        if encoding != "pb" and absent and self.rng.random() < 0.3:
            row[self.rng.choice(absent)] = None  # null equals absent
        measured = (float(values[name]) if name in values else None for name in MEASUREMENTS)
        return row, Reading(device, ts, seq, *measured)


def _ms(ts: datetime) -> datetime:
    return ts - timedelta(microseconds=ts.microsecond % 1000)


def _shown_name(key: object) -> str:
    """How a reason names an unknown key (the ingest escapes NUL: PostgreSQL text cannot hold it)."""
    return _as_stored(str(key)[:64])


def _as_stored(reason: str) -> str:
    return reason.replace("\x00", "\\x00")


def _not_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return True
    return False


def _serialise(encoding: str, envelope: object, *, indent: bool = False) -> bytes:
    if encoding == "json":
        return orjson.dumps(envelope, option=orjson.OPT_INDENT_2 if indent else None)
    if encoding == "cbor":
        return cbor2.dumps(envelope)
    assert isinstance(envelope, Mapping)
    return _pb_bytes(envelope)


def _pb_bytes(envelope: Mapping[str, Any]) -> bytes:
    batch = PbBatch()
    if envelope.get("v"):
        batch.v = envelope["v"]
    if envelope.get("device"):
        batch.device = envelope["device"]
    for row in envelope["readings"]:
        message = batch.readings.add()
        ts = row.get("ts")
        if isinstance(ts, datetime):
            message.ts_ms = to_ms(ts)
        elif isinstance(ts, int):
            message.ts_ms = ts
        for name in ("seq", *MEASUREMENTS):
            if row.get(name) is not None:
                setattr(message, name, row[name])
    payload: bytes = batch.SerializeToString()
    return payload


def _padded(encoding: str, body: bytes, size: int) -> bytes:
    """``body`` grown to ``size`` bytes without changing what it says."""
    if encoding == "json":
        return body + b" " * (size - len(body))  # insignificant whitespace
    # An unknown length-delimited field 15, which receivers ignore; its length takes 3 bytes.
    assert encoding == "pb"
    assert size - len(body) >= 2**14 + 4
    blob = size - len(body) - 4
    return body + b"\x7a" + encode_varint(blob) + b"\x00" * blob


# -- strategies: one builder per kind of message -------------------------------------------

encodings = st.sampled_from(ENCODINGS)
devices = st.sampled_from(sorted(DEVICES))
json_ints = st.integers(-(2**63), 2**63 - 1)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
# Text mosquitto accepts in a topic level: no control characters, surrogates or non-characters.
topic_text = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Cn"), exclude_characters="/+#"),
    min_size=1,
    max_size=20,
)
bad_ids = st.one_of(
    topic_text.filter(lambda text: id_problem(text) is not None).map(lambda text: (text, "contains", "chars")),
    st.text(alphabet=ID_CHARS, min_size=65, max_size=100).map(
        lambda text: (text, "characters long, more than 64", "too-long")
    ),
    st.just(("", "is empty", "empty")),
)

READING_CORRUPTIONS: Final[dict[str, frozenset[str]]] = {
    "wrong-type": frozenset({"json", "cbor"}),
    "non-finite": frozenset({"cbor", "pb"}),  # JSON has no NaN: see malformed "non-finite-token"
    "absurd": frozenset(ENCODINGS),
    "ts-future": frozenset(ENCODINGS),
    "ts-past": frozenset(ENCODINGS),
    "ts-naive": frozenset({"json", "cbor"}),
    "ts-garbage": frozenset({"json", "cbor"}),
    "ts-overflow": frozenset({"json", "cbor"}),
    "ts-missing": frozenset(ENCODINGS),
    "ts-type": frozenset({"json", "cbor"}),
    "seq": frozenset(ENCODINGS),
    "unknown-field": frozenset({"json", "cbor"}),  # protobuf ignores unknown fields by design
    "neither": frozenset(ENCODINGS),
    "duplicate-ts": frozenset(ENCODINGS),
    "not-object": frozenset({"json", "cbor"}),
}
ENVELOPE_CORRUPTIONS: Final[dict[str, tuple[str, ...]]] = {
    "json": (
        "version", "version-missing", "device-mismatch", "device-missing", "device-type",
        "device-invalid", "extra-field", "readings-missing", "readings-type", "readings-empty",
        "not-an-object",
    ),
    "pb": ("version", "version-missing", "device-mismatch", "device-missing", "device-invalid",
           "readings-empty"),
}  # fmt: skip
ENVELOPE_CORRUPTIONS["cbor"] = ENVELOPE_CORRUPTIONS["json"]
MALFORMATIONS: Final = {
    "json": ("non-finite-token", "truncated", "garbage"),
    "cbor": ("truncated", "trailing-bytes", "non-text-key", "garbage"),
    "pb": ("broken-field", "garbage"),
}
STATUS_PROBLEMS: Final = ("not-json", "shape", "fw-type", "fw-nul")
status_bodies_of_wrong_shape: st.SearchStrategy[object] = st.one_of(
    st.sampled_from(([], 1, "online", None, {}, {"v": 1}, {"online": True})),
    st.fixed_dictionaries(
        {
            "v": st.one_of(json_ints.filter(lambda v: v != 1), st.booleans(), finite_floats, st.text(max_size=3)),
            "online": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {"v": st.just(1), "online": st.one_of(json_ints, st.text(max_size=3), st.none(), finite_floats)}
    ),
)


def _typed(strategy: st.SearchStrategy[Any], kind: str) -> st.SearchStrategy[tuple[object, str]]:
    return strategy.map(lambda value: (value, kind))


def _wrong_types(encoding: str) -> st.SearchStrategy[tuple[object, str]]:
    options = [
        _typed(st.booleans(), "bool"),
        _typed(st.text(max_size=8), "str"),
        _typed(st.lists(st.integers(0, 9), max_size=2), "list"),
        _typed(st.dictionaries(st.sampled_from(("value", "unit")), st.integers(0, 9), max_size=2), "object"),
    ]
    if encoding == "cbor":
        options.append(_typed(st.binary(max_size=4), "bytes"))
    return st.one_of(options)


def _absurd(encoding: str) -> st.SearchStrategy[tuple[str, float]]:
    named = st.sampled_from(
        [("power_w", 1e7), ("power_w", -1e7), ("energy_wh", -1.0), ("voltage_v", 5000.0),
         ("energy_export_wh", -0.001), ("power_factor", 1.01), ("frequency_hz", 400.0)]
    )  # fmt: skip

    def beyond(name: str) -> st.SearchStrategy[tuple[str, float]]:
        low, high = RANGES[name]
        values: st.SearchStrategy[float] = st.floats(min_value=high, exclude_min=True, allow_infinity=False)
        values |= st.floats(max_value=low, exclude_max=True, allow_infinity=False)
        if encoding != "pb":
            values |= st.integers(int(high) + 1, 2**53) | st.integers(-(2**53), math.ceil(low) - 1)
        # -0.0 lies below 0.0 for hypothesis but not for the validator; 0 Hz is valid (mains down).
        values = values.filter(lambda value: not low <= value <= high and value != 0)
        return values.map(lambda value: (name, value))

    return named | st.sampled_from(MEASUREMENTS).flatmap(beyond)


def _corrupt(
    draw: st.DrawFn,
    draft: Draft,
    row: dict[object, object],
    index: int,
    encoding: str,
    earlier: list[tuple[int, datetime]],
) -> tuple[str, object, Expectation]:
    """Spoil one reading: its tag, its new wire form, and what the dead letter must say."""
    kinds = [k for k, where in READING_CORRUPTIONS.items() if encoding in where]
    kind = draw(st.sampled_from([k for k in kinds if k != "duplicate-ts" or earlier]))
    path = f"readings[{index}]"
    if kind == "wrong-type":
        name = draw(st.sampled_from(MEASUREMENTS))
        row[name], what = draw(_wrong_types(encoding))
        return kind, row, Expectation(f"{path}.{name}", f"must be a number, not {what}")
    if kind == "non-finite":
        name = draw(st.sampled_from(MEASUREMENTS))
        non_finite = draw(st.sampled_from((math.nan, math.inf, -math.inf)))
        row[name] = non_finite
        phrase = "is NaN" if math.isnan(non_finite) else f"is {non_finite}, not a finite number"
        return kind, row, Expectation(f"{path}.{name}", phrase)
    if kind == "absurd":
        name, row[name] = draw(_absurd(encoding))
        return kind, row, Expectation(f"{path}.{name}", "is outside")
    if kind in ("ts-future", "ts-past"):
        row["ts"] = _bad_instant(draw, kind, encoding)
        phrase = "(now + max_future)" if kind == "ts-future" else "is before 2000-01-01T00:00:00.000Z"
        return kind, row, Expectation(f"{path}.ts", phrase)
    if kind == "ts-naive":
        naive = draft.instant().replace(tzinfo=None)
        spec = draw(st.sampled_from(("seconds", "milliseconds", "microseconds", "date")))
        row["ts"] = naive.date().isoformat() if spec == "date" else naive.isoformat(timespec=spec)
        return kind, row, Expectation(f"{path}.ts", "has no UTC offset")
    if kind == "ts-garbage":
        named = st.sampled_from(("yesterday", "2026-13-01T00:00:00Z", "24/11/2026 10:00", "", "NaN"))
        row["ts"] = draw(named | st.text(max_size=24).filter(_not_iso))
        return kind, row, Expectation(f"{path}.ts", "is not an ISO 8601 timestamp")
    if kind == "ts-overflow":  # valid text whose offset pushes it past datetime's range
        hours = draw(st.integers(1, 23))
        row["ts"] = draw(
            st.sampled_from((f"0001-01-01T00:00:00+{hours:02d}:00", f"9999-12-31T23:59:59-{hours:02d}:00"))
        )
        return kind, row, Expectation(f"{path}.ts", "is out of range")
    if kind == "ts-missing":
        if encoding != "pb" and draw(st.booleans()):
            row["ts"] = None
        else:
            del row["ts"]  # protobuf: ts_ms 0, the proto3 default, counts as missing
        return kind, row, Expectation(f"{path}.ts", "missing; every reading needs a ts")
    if kind == "ts-type":
        row["ts"], what = draw(
            _typed(json_ints, "int") | _typed(finite_floats, "float") | _typed(st.booleans(), "bool")
            | _typed(st.lists(st.integers(0, 9), max_size=3), "list")
        )  # fmt: skip
        return kind, row, Expectation(f"{path}.ts", f"must be an ISO 8601 string, not {what}")
    if kind == "seq":
        row["seq"], phrase = draw(_bad_seqs(encoding))
        return kind, row, Expectation(f"{path}.seq", phrase)
    if kind == "unknown-field":
        keys: st.SearchStrategy[object] = st.sampled_from(
            ("voltage", "power", "reactive_power_var", "ts_ms", "Power_W", "power\x00_w", "device", "v")
        ) | st.text(min_size=1, max_size=80)
        if encoding == "cbor":
            keys |= st.binary(min_size=1, max_size=8)  # byte-string keys decode; other kinds do not
        key = draw(keys.filter(lambda key: key not in READING_KEYS))
        row[key] = 1.0
        return kind, row, Expectation(f"{path}.{_shown_name(key)}", "unknown field")
    if kind == "neither":
        row.pop("power_w", None)
        row.pop("energy_wh", None)
        if encoding != "pb" and draw(st.booleans()):
            row["power_w"] = None
        return kind, row, Expectation(path, "carries neither power_w nor energy_wh")
    if kind == "duplicate-ts":
        first, ts = draw(st.sampled_from(earlier))
        row["ts"] = draft.wire_ts(ts, encoding)  # maybe another spelling of the same instant
        return kind, row, Expectation(f"{path}.ts", f"repeats the instant of readings[{first}]")
    assert kind == "not-object"
    value, what = draw(
        _typed(st.integers(-10, 10), "int") | _typed(st.text(max_size=5), "str")
        | _typed(st.lists(st.integers(0, 3), max_size=2), "list") | _typed(st.none(), "null")
        | _typed(st.booleans(), "bool") | _typed(finite_floats, "float")
    )  # fmt: skip
    return kind, value, Expectation(path, f"must be an object, not {what}")


def _bad_instant(draw: st.DrawFn, kind: str, encoding: str) -> object:
    if kind == "ts-future":
        if encoding == "pb" and draw(st.booleans()):
            return TsMs(draw(st.integers(to_ms(NOW) + 10**12, 2**63 - 1)))  # up to past year 9999
        late = draw(st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=30 * 365)))
        ts = _ms(NOW + LIMITS.max_future + late)
    else:
        if encoding == "pb" and draw(st.booleans()):
            return TsMs(draw(st.integers(-(2**63), -1)))  # down to before year 1
        early = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1999, 12, 31, 23, 59, 59)))
        ts = _ms(early.replace(tzinfo=UTC))
    return ts if encoding == "pb" else format_ts(ts)


def _bad_seqs(encoding: str) -> st.SearchStrategy[tuple[object, str]]:
    outside = "is outside 0..2**63-1"
    too_big = _typed(st.integers(2**63, 2**64 - 1), outside)
    if encoding == "pb":
        return too_big  # uint64 on the wire: only too big is possible
    return st.one_of(
        too_big,
        _typed(st.integers(-(2**63), -1), outside),
        _typed(finite_floats, "must be an integer, not float"),
        _typed(st.booleans(), "must be an integer, not bool"),
        _typed(st.text(max_size=6), "must be an integer, not str"),
    )


def _good_rows(draft: Draft, device: str, encoding: str, count: int) -> list[dict[object, object]]:
    return [draft.good_row(device, encoding)[0] for _ in range(count)]


def valid_batch(draw: st.DrawFn, draft: Draft) -> Published:
    encoding, device = draw(encodings), draw(devices)
    rows, readings = zip(*(draft.good_row(device, encoding) for _ in range(draw(st.integers(1, 12)))), strict=True)
    topic = telemetry_topic(DEVICES[device], device, encoding)
    if draw(st.booleans()):
        payload = encode_telemetry(device, readings, encoding)
        return Published(("valid:codec", f"encoding:{encoding}"), topic, payload, tuple(readings))
    envelope: dict[str, object] = {"v": 1, "device": device, "readings": list(rows)}
    if draw(st.booleans()):
        envelope = dict(reversed(envelope.items()))
    payload = _serialise(encoding, envelope, indent=draw(st.booleans()))
    if encoding == "pb" and draw(st.booleans()):
        payload += b"\x78\x01"  # unknown field 15 = 1: ignored, as protobuf's rules want
    return Published(("valid:handmade", f"encoding:{encoding}"), topic, payload, tuple(readings))


def valid_at_size_limit(draw: st.DrawFn, draft: Draft) -> Published:
    encoding, device = draw(st.sampled_from(PADDABLE)), draw(devices)
    rows, readings = zip(*(draft.good_row(device, encoding) for _ in range(3)), strict=True)
    body = _serialise(encoding, {"v": 1, "device": device, "readings": list(rows)})
    payload = _padded(encoding, body, LIMITS.max_payload_bytes)
    topic = telemetry_topic(DEVICES[device], device, encoding)
    return Published(("valid:at-size-limit",), topic, payload, tuple(readings))


def valid_status(draw: st.DrawFn, draft: Draft) -> Published:
    draft.count += 1
    device = f"st-{draft.count}"
    online = draw(st.booleans())
    firmware = draw(st.none() | st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00")))
    body: dict[str, object] = {"v": 1, "online": online, "ts": format_ts(NOW - timedelta(seconds=5))}
    if firmware is not None:
        body["fw"] = firmware
    topic = status_topic(STATUS_SITE, device)
    return Published(("valid:status",), topic, orjson.dumps(body), status=(device, online, firmware))


def batch_with_bad_readings(draw: st.DrawFn, draft: Draft) -> Published:
    encoding, device = draw(encodings), draw(devices)
    count = draw(st.integers(1, 12))
    bad_count = min(count, draw(st.integers(1, 3) | st.integers(MAX_REASONS + 1, MAX_REASONS + 3)))
    bad = set(draw(st.lists(st.integers(0, count - 1), min_size=bad_count, max_size=bad_count, unique=True)))
    rows: list[object] = []
    stored: list[Reading] = []
    expected: list[Expectation] = []
    tags = [f"encoding:{encoding}"]
    earlier: list[tuple[int, datetime]] = []
    for index in range(count):
        row, reading = draft.good_row(device, encoding)
        if index in bad:
            tag, wire, expectation = _corrupt(draw, draft, row, index, encoding, earlier)
            rows.append(wire)
            expected.append(expectation)
            tags.append(f"reading:{tag}")
        else:
            rows.append(row)
            stored.append(reading)
            earlier.append((index, reading.ts))
    reason = [Expectation(None, f"{len(bad)} reading(s) rejected, {len(stored)} accepted: ")]
    reason += expected[:MAX_REASONS]
    if len(bad) > MAX_REASONS:
        reason.append(Expectation(None, f"; and {len(bad) - MAX_REASONS} more"))
        tags.append("more-than-shown")
    tags.append("mixed" if stored else "all-bad")
    payload = _serialise(encoding, {"v": 1, "device": device, "readings": rows})
    topic = telemetry_topic(DEVICES[device], device, encoding)
    return Published(tuple(tags), topic, payload, tuple(stored), tuple(reason))


def bad_envelope(draw: st.DrawFn, draft: Draft) -> Published:
    encoding, device = draw(encodings), draw(devices)
    rows = _good_rows(draft, device, encoding, draw(st.integers(1, 3)))
    envelope: dict[object, object] = {"v": 1, "device": device, "readings": rows}
    kind = draw(st.sampled_from(ENVELOPE_CORRUPTIONS[encoding]))
    pb = encoding == "pb"
    expectation: Expectation
    if kind == "version":
        envelope["v"] = draw(
            st.integers(2, 2**32 - 1) if pb
            else st.one_of(json_ints.filter(lambda v: v != 1), st.booleans(), finite_floats, st.none(),
                           st.sampled_from(("1", "v1")), st.lists(st.just(1), max_size=2))
        )  # fmt: skip
        expectation = Expectation("v", "unknown version")
    elif kind == "version-missing":
        if pb:
            envelope["v"] = 0  # the proto3 default counts as missing
        else:
            del envelope["v"]
        expectation = Expectation("v", 'missing version; expected "v": 1')
    elif kind == "device-mismatch":
        envelope["device"] = draw(st.sampled_from([d for d in sorted(DEVICES) if d != device] + ["plug-99"]))
        expectation = Expectation("device", f"differs from the topic's device {device!r}")
    elif kind == "device-missing":
        if pb or draw(st.booleans()):
            envelope["device"] = "" if pb else None
        else:
            del envelope["device"]
        expectation = Expectation("device", "missing device id")
    elif kind == "device-type":
        value, what = draw(
            _typed(json_ints, "int") | _typed(finite_floats, "float") | _typed(st.booleans(), "bool")
            | _typed(st.lists(st.just("plug-1"), max_size=2), "list")
            | _typed(st.fixed_dictionaries({"id": st.just("plug-1")}), "dict")
        )  # fmt: skip
        envelope["device"] = value
        expectation = Expectation("device", f"must be a string, not {what}")
    elif kind == "device-invalid":
        invalid = st.text(min_size=1, max_size=64).filter(lambda text: id_problem(text) is not None)
        candidates = _typed(invalid, "contains") | _typed(
            st.text(alphabet=ID_CHARS, min_size=65, max_size=100), "characters long, more than 64"
        )
        if not pb:
            candidates |= st.just(("", "is empty"))
        envelope["device"], phrase = draw(candidates)
        expectation = Expectation("device", phrase)
    elif kind == "extra-field":
        keys: st.SearchStrategy[object] = st.sampled_from(("fw", "site", "ts", "seq", "version", "v\x00")) | st.text(
            min_size=1, max_size=80
        )
        if encoding == "cbor":
            keys |= st.binary(min_size=1, max_size=8)
        key = draw(keys.filter(lambda key: key not in ENVELOPE_KEYS))
        envelope[key] = "1.4.2"
        expectation = Expectation(_shown_name(key), "unknown field; a v1 batch has only v, device, readings")
    elif kind == "readings-missing":
        if draw(st.booleans()):
            envelope["readings"] = None
        else:
            del envelope["readings"]
        expectation = Expectation("readings", "missing")
    elif kind == "readings-type":
        options = (
            _typed(st.fixed_dictionaries({"ts": st.just(format_ts(NOW))}), "object")
            | _typed(st.text(max_size=8), "str") | _typed(json_ints, "int") | _typed(st.booleans(), "bool")
        )  # fmt: skip
        if encoding == "cbor":
            options |= _typed(st.binary(max_size=8), "bytes")
        envelope["readings"], what = draw(options)
        expectation = Expectation("readings", f"must be a list, not {what}")
    elif kind == "readings-empty":
        envelope["readings"] = []
        expectation = Expectation("readings", "is empty; a batch carries at least one reading")
    else:
        assert kind == "not-an-object"
        value, what = draw(
            _typed(st.lists(st.integers(0, 9), max_size=3), "list") | _typed(json_ints, "int")
            | _typed(st.text(max_size=8), "str") | _typed(st.none(), "null") | _typed(st.booleans(), "bool")
        )  # fmt: skip
        topic = telemetry_topic(DEVICES[device], device, encoding)
        reason = Expectation(None, f"payload must be an object with v, device, readings, not {what}")
        return Published((f"envelope:{kind}",), topic, _serialise(encoding, value), (), (reason,))
    topic = telemetry_topic(DEVICES[device], device, encoding)
    return Published((f"envelope:{kind}",), topic, _serialise(encoding, envelope), (), (expectation,))


def malformed(draw: st.DrawFn, draft: Draft) -> Published:
    encoding, device = draw(encodings), draw(devices)
    topic = telemetry_topic(DEVICES[device], device, encoding)
    kind = draw(st.sampled_from(MALFORMATIONS[encoding]))
    rows = _good_rows(draft, device, encoding, draw(st.integers(1, 3)))
    body = _serialise(encoding, {"v": 1, "device": device, "readings": rows})
    not_valid = Expectation(None, f"payload is not valid {ENCODING_NAMES[encoding]}")
    if kind == "non-finite-token":  # JSON has no NaN or infinity; orjson refuses the tokens
        rows[draw(st.integers(0, len(rows) - 1))][draw(st.sampled_from(MEASUREMENTS))] = "@non-finite@"
        token = draw(st.sampled_from((b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf")))
        payload = _serialise("json", {"v": 1, "device": device, "readings": rows}).replace(b'"@non-finite@"', token)
        return Published((f"malformed:{kind}",), topic, payload, (), (not_valid,))
    if kind == "truncated":  # any proper prefix of a JSON object or a CBOR map is incomplete
        payload = body[: draw(st.integers(0, len(body) - 1))]
        return Published((f"malformed:{kind}",), topic, payload, (), (not_valid,))
    if kind == "trailing-bytes":
        payload = body + draw(st.binary(min_size=1, max_size=8))
        return Published((f"malformed:{kind}",), topic, payload, (), (not_valid,))
    if kind == "non-text-key":  # the CBOR codec refuses maps keyed by numbers, bools or null
        key = draw(st.one_of(st.integers(), finite_floats, st.booleans(), st.none()))
        rows[draw(st.integers(0, len(rows) - 1))][key] = 1.0
        payload = _serialise("cbor", {"v": 1, "device": device, "readings": rows})
        return Published((f"malformed:{kind}",), topic, payload, (), (not_valid,))
    if kind == "broken-field":  # a readings field longer than what follows it
        length = draw(st.integers(1, 100))
        payload = body + b"\x1a" + encode_varint(length) + draw(st.binary(max_size=length - 1))
        return Published((f"malformed:{kind}",), topic, payload, (), (not_valid,))
    assert kind == "garbage"
    payload = draw(st.binary(max_size=64))
    tag, expectation = _garbage_reason(encoding, topic, payload)
    return Published((f"malformed:{kind}", tag), topic, payload, (), (expectation,))


def _garbage_reason(encoding: str, topic: str, payload: bytes) -> tuple[str, Expectation]:
    """What random bytes should be called: the codec alone decides whether they decode."""
    try:
        decoded = CODECS[encoding].decode(payload)
    except ContractError:
        return "garbage:undecodable", Expectation(None, f"payload is not valid {ENCODING_NAMES[encoding]}")
    if not isinstance(decoded, Mapping):
        return "garbage:not-an-object", Expectation(None, "payload must be an object")
    try:  # a map (every protobuf parse is one): the contract's validator names the problem
        batch = decode_telemetry(topic, payload, limits=LIMITS, now=NOW)
    except ContractError as exc:
        return "garbage:bad-envelope", Expectation(None, _as_stored(str(exc)))
    assume(not batch.readings)  # random bytes that make a valid reading are no bad input
    return "garbage:bad-readings", Expectation(None, f"{len(batch.rejected)} reading(s) rejected, 0 accepted")


def oversize(draw: st.DrawFn, draft: Draft) -> Published:
    encoding, device = draw(encodings), draw(devices)
    size = LIMITS.max_payload_bytes + draw(st.integers(1, 2000))
    if encoding == "cbor":  # CBOR cannot be padded; random bytes of that size
        payload = random.Random(draw(st.integers(0, 2**32 - 1))).randbytes(size)
    else:  # a valid batch, too big only by padding
        rows = _good_rows(draft, device, encoding, 3)
        payload = _padded(encoding, _serialise(encoding, {"v": 1, "device": device, "readings": rows}), size)
    assert len(payload) == size
    reason = Expectation(None, f"payload is {size} bytes, more than the limit of {LIMITS.max_payload_bytes}")
    return Published(("oversize",), telemetry_topic(DEVICES[device], device, encoding), payload, (), (reason,))


def too_many_readings(draw: st.DrawFn, draft: Draft) -> Published:
    encoding, device = draw(encodings), draw(devices)
    count = LIMITS.max_readings + draw(st.integers(1, 20))
    rows = []
    for k in range(count):
        ts = draft.instant()
        rows.append({"ts": ts if encoding == "pb" else format_ts(ts), "power_w": k % 100})
    payload = _serialise(encoding, {"v": 1, "device": device, "readings": rows})
    reason = Expectation("readings", f"batch has {count} readings, more than the limit of {LIMITS.max_readings}")
    return Published(("too-many",), telemetry_topic(DEVICES[device], device, encoding), payload, (), (reason,))


def bad_topic(draw: st.DrawFn, draft: Draft) -> Published:
    """A fine payload on a topic whose site or device level the ``+`` filter lets through."""
    suffix = draw(st.sampled_from(("telemetry", "telemetry/cbor", "telemetry/pb", "status")))
    level = draw(st.sampled_from(("site", "device")))
    bad_id, phrase, kind = draw(bad_ids)
    device = draw(devices)
    site = DEVICES[device]
    if suffix == "status":
        payload = orjson.dumps({"v": 1, "online": True})
    else:
        encoding = SUFFIX_ENCODINGS[suffix]
        payload = _serialise(encoding, {"v": 1, "device": device, "readings": _good_rows(draft, device, encoding, 2)})
    site, device = (bad_id, device) if level == "site" else (site, bad_id)
    topic = f"vatio/v1/{site}/{device}/{suffix}"
    return Published((f"bad-topic:{kind}", f"bad-topic:{level}"), topic, payload, (), (Expectation(level, phrase),))


def bad_status(draw: st.DrawFn, draft: Draft) -> Published:
    device = draw(devices)
    topic = status_topic(DEVICES[device], device)
    kind = draw(st.sampled_from(STATUS_PROBLEMS))
    if kind == "not-json":
        payload = draw(
            st.sampled_from((b"", b"online", b"{'v': 1, 'online': true}", b'{"v":1,"online":true'))
            | st.binary(max_size=24).map(lambda raw: b"\xff" + raw)  # 0xff never starts UTF-8
        )
        expectation = Expectation(None, "status payload is not valid JSON")
    elif kind == "shape":
        payload = orjson.dumps(draw(status_bodies_of_wrong_shape))
        expectation = Expectation(None, 'status must be {"v": 1, "online": bool, ...}')
    else:
        firmware = draw(
            json_ints | finite_floats | st.booleans() | st.lists(st.just("1.2"), max_size=2)
            if kind == "fw-type"
            else st.tuples(st.text(max_size=6), st.text(max_size=6)).map(lambda parts: "\x00".join(parts))
        )  # fmt: skip
        payload = orjson.dumps({"v": 1, "online": draw(st.booleans()), "fw": firmware})
        expectation = Expectation("fw", "must be a string")
    return Published((f"bad-status:{kind}",), topic, payload, (), (expectation,))


Builder = Callable[[st.DrawFn, Draft], Published]
# (builder, weight): about half the messages are bad, spread over every kind.
BUILDERS: Final[tuple[tuple[Builder, int], ...]] = (
    (valid_batch, 8),
    (valid_status, 1),
    (valid_at_size_limit, 1),
    (batch_with_bad_readings, 6),
    (bad_envelope, 4),
    (malformed, 3),
    (oversize, 1),
    (too_many_readings, 1),
    (bad_topic, 2),
    (bad_status, 2),
)
REQUIRED_TAGS: Final = (
    {"valid:codec", "valid:handmade", "valid:status", "valid:at-size-limit", "oversize", "too-many"}
    | {"mixed", "all-bad", "more-than-shown", "malformed:garbage"}
    | {f"encoding:{encoding}" for encoding in ENCODINGS}
    | {f"reading:{kind}" for kind in READING_CORRUPTIONS}
    | {f"envelope:{kind}" for kinds in ENVELOPE_CORRUPTIONS.values() for kind in kinds}
    | {f"malformed:{kind}" for kinds in MALFORMATIONS.values() for kind in kinds}
    | {f"bad-topic:{kind}" for kind in ("chars", "too-long", "empty", "site", "device")}
    | {f"bad-status:{kind}" for kind in STATUS_PROBLEMS}
)


@st.composite
def storms(draw: st.DrawFn) -> Storm:
    draft = Draft(draw(st.integers(0, 2**32 - 1)))
    weighted = [builder for builder, weight in BUILDERS for _ in range(weight)]
    count = draw(st.integers(*MESSAGES_PER_STORM))
    return Storm(tuple(draw(st.sampled_from(weighted))(draw, draft) for _ in range(count)))


def final_message(name: str) -> Published:
    """The message after the storm: stored only if the consumer survived it."""
    device = f"final-{name}"
    readings = tuple(Reading(device, NOW - timedelta(hours=1, seconds=k), k, 100.0 + k) for k in range(3))
    topic = telemetry_topic("home-9", device)
    return Published(("final",), topic, encode_telemetry(device, readings), readings)


# -- the running ingest -------------------------------------------------------------------


@dataclass(slots=True)
class RunningIngest:
    service: IngestService
    pipeline: IngestPipeline
    store: Store
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_ingest(url: str, port: int, name: str) -> AsyncIterator[RunningIngest]:
    """`vatio ingest` in process: subscribed, connected, writing to the store at ``url``."""
    store = open_store(url)
    await store.migrate()
    pipeline = IngestPipeline(store=store, limits=LIMITS, flush_interval_s=0.05, clock=lambda: NOW)
    service = IngestService(
        broker=BrokerUrl.parse(f"mqtt://127.0.0.1:{port}"),
        pipeline=pipeline,
        # A group per run: a previous run's session must not share the stream.
        options=IngestOptions(group=f"bad-input-{name}", instance="0", session_expiry_s=60),
    )
    task = asyncio.create_task(service.run(), name=f"ingest-{name}")
    try:
        async with asyncio.timeout(10):
            await service.connected.wait()
        yield RunningIngest(service, pipeline, store, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def _eventually(condition: Callable[[], object], timeout_s: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.02)
            return True
    return False


async def _stored_readings(store: Store, device_ids: set[str]) -> list[Reading]:
    stored: list[Reading] = []
    for device in sorted(device_ids):
        stored += await store.readings(device, EARLIEST, LATEST)
    return stored


async def _wait_stored(store: Store, message: Published, timeout_s: float) -> bool:
    device = message.stored[0].device_id
    async with asyncio.timeout(timeout_s):
        while len(await store.readings(device, EARLIEST, LATEST)) < len(message.stored):
            await asyncio.sleep(0.05)
    return True


async def _publish_storm(ingest: RunningIngest, port: int, storm: Storm, name: str) -> Published:
    final = final_message(name)
    async with (
        asyncio.timeout(60),
        FastPublisher(host="127.0.0.1", port=port, client_id=f"pub-{name}", window=100) as publisher,
    ):
        for message in storm.messages:
            await publisher.publish(message.topic, message.payload, qos=1)
        await publisher.drain()
        delivered = await _eventually(lambda: ingest.pipeline.counters.messages >= len(storm.messages), 30)
        assert delivered, f"the ingest received {ingest.pipeline.counters.messages} of {len(storm.messages)}"
        await publisher.publish(final.topic, final.payload, qos=1)
        await publisher.drain()
    try:
        await _wait_stored(ingest.store, final, timeout_s=20)
    except TimeoutError:
        pytest.fail(f"the consumer stopped: the message after the storm was never stored ({ingest.pipeline.counters})")
    return final


def _reading_problems(expected: list[Reading], stored: list[Reading]) -> list[str]:
    missing = Counter(expected) - Counter(stored)
    extra = Counter(stored) - Counter(expected)
    by_key = {(r.device_id, r.ts): r for r in stored}
    problems = []
    for reading in list(missing)[:5]:
        found = by_key.get((reading.device_id, reading.ts))
        problems.append(f"not stored: {reading}" + (f"\n  stored as {found}" if found else ""))
    problems += [f"stored but never valid: {reading}" for reading in list(extra)[:5]]
    if len(missing) + len(extra) > 10:
        problems.append(f"... {len(missing)} missing and {len(extra)} unexpected readings in all")
    return problems


def _dead_letter_problems(bad: list[Published], letters: list[tuple[str, bytes, str]]) -> list[str]:
    reasons: dict[tuple[str, bytes], list[str]] = defaultdict(list)
    for topic, payload, reason in letters:
        reasons[(topic, payload)].append(reason)
    problems = []
    for message in bad:
        assert message.reason is not None
        left = reasons.get((message.topic, message.payload))
        if not left:
            problems.append(f"no dead letter (with these exact bytes and topic) for {message.describe()}")
            continue
        reason = left.pop()
        lacking = [e for e in message.reason if not e.found_in(reason)]
        if lacking:
            problems.append(f"{message.describe()}\n  reason {reason!r}\n  does not say {lacking}")
    unexpected = [(topic, payload[:80], r) for (topic, payload), rs in reasons.items() for r in rs]
    problems += [f"dead letter for no bad message: {letter}" for letter in unexpected[:5]]
    return problems


async def _check_store(ingest: RunningIngest, storm: Storm, final: Published) -> None:
    store, counters = ingest.store, ingest.pipeline.counters
    messages = [*storm.messages, final]
    expected = [reading for message in messages for reading in message.stored]
    statuses = [message.status for message in messages if message.status is not None]
    stored = await _stored_readings(store, {*DEVICES, final.stored[0].device_id, *(s[0] for s in statuses)})
    problems = _reading_problems(expected, stored)
    letters = await store.dead_letters(limit=len(storm.bad) + 100)
    problems += _dead_letter_problems(storm.bad, [(d.topic, d.payload, d.reason) for d in letters])
    for device_id, online, firmware in statuses:
        device = await store.get_device(device_id)
        got = None if device is None else (device.site_id, device.status_online, device.firmware)
        if got != (STATUS_SITE, online, firmware):
            problems.append(f"status of {device_id}: stored {got}, sent {(STATUS_SITE, online, firmware)}")
    assert not problems, f"{storm!r}\n" + "\n".join(problems)

    stats = await store.stats()
    devices = {reading.device_id for reading in expected} | {status[0] for status in statuses}
    assert (stats.readings, stats.dead_letters, stats.devices) == (
        len(expected),
        len(storm.bad),
        len(devices),
    )
    assert (counters.dead_letters, counters.write_errors) == (len(storm.bad), 0)


async def _storm_at_ingest(storm: Storm, backend: str, port: int, name: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="vatio-bad-input-"))
            url = f"sqlite:///{folder}/vatio.db"
        else:
            url = await create_database("vatio_bad_input")
            stack.push_async_callback(drop_database, url)
        ingest = await stack.enter_async_context(running_ingest(url, port, name))
        final = await _publish_storm(ingest, port, storm, name)
        # The consumer survived on its first connection, without a reconnect.
        assert not ingest.task.done()
        assert ingest.service.connected.is_set()
        assert ingest.service.connections == 1
        await _check_store(ingest, storm, final)


@pytest.fixture(scope="module")
def broker_port() -> Iterator[int]:
    with mosquitto() as port:
        yield port


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_bad_input_storm_is_dead_lettered_and_valid_readings_stored(backend: str, broker_port: int) -> None:
    seen: Counter[str] = Counter()
    runs = iter(range(1_000))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # Shrinking re-runs whole storms against the broker; the failure report names the messages.
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.large_base_example,
            HealthCheck.data_too_large,
        ],
    )
    @given(storm=storms())
    def storm_at_running_ingest(storm: Storm) -> None:
        seen.update(tag for message in storm.messages for tag in message.tags)
        asyncio.run(_storm_at_ingest(storm, backend, broker_port, f"{backend}-{next(runs)}"))

    storm_at_running_ingest()
    # Every kind of bad input was thrown at least once (else the storms test less than they claim).
    assert set(seen) >= REQUIRED_TAGS, f"never generated: {sorted(REQUIRED_TAGS - set(seen))}"


# -- what never reaches the ingest ---------------------------------------------------------

#: Topics no subscription of the ingest matches; the broker delivers them to nobody.
UNSUBSCRIBED_TOPICS: Final = (
    "vatio/v2/home-1/plug-1/telemetry",  # another contract version
    "vatio/v0/home-1/plug-1/telemetry",
    "vatio/v1/home-1/plug-1/telemetry/xml",  # an unknown encoding
    "vatio/v1/home-1/plug-1/telemetry/cbor/extra",
    "vatio/v1/home-1/plug-1/config",  # kinds the ingest does not consume
    "vatio/v1/home-1/plug-1/config/reported",
    "vatio/v1/home-1/plug-1/ota",
    "vatio/v1/home-1/alerts",
    "vatio/v1/home-1/plug-1",  # levels missing or extra
    "vatio/v1/home-1/plug-1/x/telemetry",
    "vatio/v1/telemetry",
    "/vatio/v1/home-1/plug-1/telemetry",
    "Vatio/v1/home-1/plug-1/telemetry",
    "vatio/V1/home-1/plug-1/telemetry",
)
#: Topics mosquitto refuses outright: it drops the publisher's connection.
BROKER_REFUSED_TOPICS: Final = (
    b"vatio/v1/home-1/plug\x00/telemetry",
    b"vatio/v1/home-1/plug\x01/telemetry",
    b"vatio/v1/home-1/plug\x7f/telemetry",
    "vatio/v1/home-1/plug\ufffe/telemetry".encode(),
    b"vatio/v1/home-1/plug\xff/telemetry",  # not UTF-8
    b"vatio/v1/+/plug-1/telemetry",
    b"vatio/v1/home-1/#",
)


async def _broker_drops_publisher(port: int, topic: bytes) -> bool:
    """Publish on a raw topic (bytes FastPublisher cannot write); True if the broker hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(encode_connect(client_id="raw-publisher", protocol=5, clean_start=True, keepalive_s=30))
        kind, length = await reader.readexactly(2)
        assert kind == 0x20, "expected CONNACK"
        await reader.readexactly(length)
        body = len(topic).to_bytes(2) + topic + b"\x00" + b'{"v":1,"device":"plug-1","readings":[]}'
        writer.write(b"\x30" + encode_varint(len(body)) + body)
        async with asyncio.timeout(5):
            while await reader.read(1024):
                pass
        return True
    except TimeoutError:
        return False
    finally:
        writer.close()


@pytest.mark.timeout(60)
async def test_topics_outside_the_subscriptions_never_reach_the_ingest(tmp_path: Path) -> None:
    with mosquitto() as port:
        async with running_ingest(f"sqlite:///{tmp_path}/vatio.db", port, "unreachable") as ingest:
            device = "plug-1"
            readings = [Reading(device, NOW - timedelta(minutes=5), 1, 50.0)]
            payload = encode_telemetry(device, readings)
            async with FastPublisher(host="127.0.0.1", port=port, client_id="pub-unreachable") as publisher:
                for topic in UNSUBSCRIBED_TOPICS:
                    await publisher.publish(topic, payload, qos=1)
                await publisher.drain()
            refused = [topic for topic in BROKER_REFUSED_TOPICS if not await _broker_drops_publisher(port, topic)]
            assert refused == [], "mosquitto accepted these topics"
            final = final_message("unreachable")
            async with FastPublisher(host="127.0.0.1", port=port, client_id="pub-final") as publisher:
                await publisher.publish(final.topic, final.payload, qos=1)
                await publisher.drain()
            assert await _wait_stored(ingest.store, final, timeout_s=20)
            stats = await ingest.store.stats()
            assert (ingest.pipeline.counters.messages, stats.dead_letters, stats.readings) == (1, 0, 3)
            assert ingest.service.connections == 1

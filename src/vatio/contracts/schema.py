"""Telemetry batch schema v1: plausibility limits and the validator on the ingest hot path.

A batch is ``{"v": 1, "device": id, "readings": [...]}`` whatever the encoding.
Envelope problems reject the whole batch (``ContractError`` is raised); a bad
reading rejects only itself and lands in :attr:`DecodedBatch.rejected`, so one
glitching sample never costs the other readings of a batch.

Choices the contract leaves open, made here:

* Unknown keys are errors, in the envelope (whole batch) and in a reading
  (that reading): v1 changes only by adding v2, and a silently dropped
  ``voltage`` typo is worse than a dead letter.
* An empty ``readings`` list is an error: it is always a publisher bug.
* ``seq`` is optional (P1 ports and many plugs have none); when present it is
  an integer in ``0..2**63-1`` (bool and float are rejected).
* ``null`` equals absent for ``seq`` and every measurement.
* ``frequency_hz`` accepts exactly 0 besides its range: meters report 0 Hz
  while the mains is down, which is the signal outage detection wants.
* Two readings of one batch with the same instant: the first wins, the later
  one is rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from math import isnan
from typing import Final

from vatio.contracts.topics import id_problem
from vatio.errors import ConfigError, ContractError
from vatio.model.reading import MEASUREMENTS, Reading

VERSION: Final = 1
SEQ_MAX: Final = 2**63 - 1

_ENVELOPE_KEYS: Final = frozenset({"v", "device", "readings"})
_READING_KEYS: Final = frozenset({"ts", "seq", *MEASUREMENTS})
_new_tuple = tuple.__new__


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What a plausible residential message looks like; anything beyond is rejected.

    * ``max_payload_bytes``: checked before decoding (4 MiB; 20,000 JSON
      readings take about 2 MB). Decoding can briefly take up to ~75 times
      the payload in memory (a hostile CBOR array of empty maps: 4 MiB ->
      ~300 MB), so lower it on small machines, together with the broker's
      maximum packet size.
    * ``max_readings``: readings per batch (20,000, a day of 5 s samples).
    * ``max_abs_power_w``: ``|power_w|`` (100 kW; a house connection is below
      50 kW and negative power is export).
    * ``max_energy_wh``: both counters lie in ``0..max_energy_wh`` (1 TWh).
    * ``max_voltage_v``: ``voltage_v`` in ``0..max_voltage_v`` (1000 V).
    * ``max_abs_current_a``: ``|current_a|`` (2000 A; signed for export).
    * ``min_frequency_hz``/``max_frequency_hz``: 40..70 Hz, or exactly 0.
    * ``min_ts``: oldest accepted instant (2000-01-01, before any meter clock
      that was set at all).
    * ``max_future``: how far past ``now`` a ts may lie (1 day of clock skew).

    ``power_factor`` is always -1..1 and ``seq`` 0..2**63-1: those are
    definitions, not limits.

    >>> Limits().max_readings
    20000
    >>> Limits(max_readings=100).max_readings
    100
    """

    max_payload_bytes: int = 4 * 1024 * 1024
    max_readings: int = 20_000
    max_abs_power_w: float = 100_000.0
    max_energy_wh: float = 1e12
    max_voltage_v: float = 1000.0
    max_abs_current_a: float = 2000.0
    min_frequency_hz: float = 40.0
    max_frequency_hz: float = 70.0
    min_ts: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    max_future: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if self.max_payload_bytes < 1 or self.max_readings < 1:
            raise ConfigError("max_payload_bytes and max_readings must be at least 1")
        if not 0 < self.min_frequency_hz <= self.max_frequency_hz:
            raise ConfigError("frequency limits must satisfy 0 < min_frequency_hz <= max")
        if self.min_ts.tzinfo is None:
            raise ConfigError("min_ts must be timezone-aware")
        if self.max_future < timedelta(0):
            raise ConfigError("max_future must not be negative")


@dataclass(slots=True)
class DecodedBatch:
    """A validated batch: its device, the readings that passed and the ones that did not.

    >>> DecodedBatch("plug-7", [], []).device
    'plug-7'
    """

    device: str
    readings: list[Reading] = field(default_factory=list)
    rejected: list[ContractError] = field(default_factory=list)


def format_ts(ts: datetime) -> str:
    """The wire spelling of an instant: UTC, millisecond precision (truncated), ``Z``.

    >>> format_ts(datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC))
    '2026-11-24T10:00:00.123Z'
    """
    if ts.tzinfo is not UTC:
        if ts.tzinfo is None:
            raise ContractError("ts must be timezone-aware", field="ts")
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:-6] + "Z"


def validate_batch(obj: object, *, topic_device: str | None, limits: Limits, now: datetime) -> DecodedBatch:
    """Check a decoded batch against schema v1 and turn its readings into :class:`Reading`.

    ``topic_device`` is the device id of the topic the batch arrived on (None
    when there is no topic); the payload's ``device`` must equal it. Raises
    :class:`ContractError` for envelope errors; per-reading errors go into
    ``rejected``, each naming its field path (``readings[3].power_w``).

    >>> now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    >>> batch = validate_batch(
    ...     {"v": 1, "device": "plug-7", "readings": [
    ...         {"ts": "2026-11-24T10:00:00.000Z", "seq": 41, "power_w": 123.4},
    ...         {"ts": "2026-11-24T10:00:05.000Z", "seq": 42, "power_w": True}]},
    ...     topic_device="plug-7", limits=Limits(), now=now)
    >>> batch.readings[0].power_w, batch.readings[0].ts.isoformat()
    (123.4, '2026-11-24T10:00:00+00:00')
    >>> str(batch.rejected[0])
    'readings[1].power_w: must be a number, not bool'
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    device, raw_readings = _check_envelope(obj, topic_device, limits)
    batch = DecodedBatch(device)
    _check_readings(batch, raw_readings, limits, now)
    return batch


def _check_envelope(obj: object, topic_device: str | None, limits: Limits) -> tuple[str, Sequence[object]]:
    if not isinstance(obj, Mapping):
        raise ContractError(f"payload must be an object with v, device, readings, not {_kind(obj)}")
    if "v" not in obj:
        raise ContractError('missing version; expected "v": 1', field="v")
    version = obj["v"]
    if type(version) is not int or version != VERSION:
        raise ContractError(f"unknown version {_show(version)}; this consumer speaks v1", field="v")
    unknown = obj.keys() - _ENVELOPE_KEYS
    if unknown:
        reason = "unknown field; a v1 batch has only v, device, readings"
        raise ContractError(reason, field=_first_name(unknown))
    device = obj.get("device")
    if device is None:
        raise ContractError("missing device id", field="device")
    problem = id_problem(device)
    if problem is not None:
        raise ContractError(f"device id {_show(device)} {problem}", field="device")
    assert isinstance(device, str)  # id_problem() accepts only strings
    if topic_device is not None and device != topic_device:
        raise ContractError(f"device {device!r} differs from the topic's device {topic_device!r}", field="device")
    readings = obj.get("readings")
    if type(readings) is not list and (
        not isinstance(readings, Sequence) or isinstance(readings, str | bytes | bytearray)
    ):
        what = "missing" if readings is None else f"must be a list, not {_kind(readings)}"
        raise ContractError(what, field="readings")
    if not readings:
        raise ContractError("is empty; a batch carries at least one reading", field="readings")
    if len(readings) > limits.max_readings:
        raise ContractError(
            f"batch has {len(readings)} readings, more than the limit of {limits.max_readings}",
            field="readings",
        )
    return device, readings


@lru_cache(maxsize=64)
def _ranges(limits: Limits) -> tuple[tuple[str, float, float], ...]:
    """(field, low, high) per measurement, in Reading field order."""
    ranges = {
        "power_w": (-limits.max_abs_power_w, limits.max_abs_power_w),
        "energy_wh": (0.0, limits.max_energy_wh),
        "voltage_v": (0.0, limits.max_voltage_v),
        "current_a": (-limits.max_abs_current_a, limits.max_abs_current_a),
        "power_factor": (-1.0, 1.0),
        "frequency_hz": (limits.min_frequency_hz, limits.max_frequency_hz),
        "energy_export_wh": (0.0, limits.max_energy_wh),
    }
    return tuple((name, *ranges[name]) for name in MEASUREMENTS)


def _check_readings(batch: DecodedBatch, raw: Sequence[object], limits: Limits, now: datetime) -> None:
    # One loop, no helper call per field: this runs for every reading ingested.
    ranges = _ranges(limits)
    ts_low, ts_high = limits.min_ts, now + limits.max_future
    device, accepted, rejected = batch.device, batch.readings, batch.rejected
    first_at: dict[datetime, int] = {}
    for index, item in enumerate(raw):
        if type(item) is not dict and not isinstance(item, Mapping):
            rejected.append(_reject(index, None, f"must be an object, not {_kind(item)}"))
            continue
        if not item.keys() <= _READING_KEYS:
            rejected.append(_reject(index, _first_name(item.keys() - _READING_KEYS), "unknown field"))
            continue
        ts = _parse_ts(item.get("ts"), ts_low, ts_high)
        if isinstance(ts, str):
            rejected.append(_reject(index, "ts", ts))
            continue
        seq = item.get("seq")
        if seq is not None and (type(seq) is not int or not 0 <= seq <= SEQ_MAX):
            rejected.append(_reject(index, "seq", _seq_problem(seq)))
            continue
        row: list[object] = [device, ts, seq]
        for name, low, high in ranges:
            value = item.get(name)
            kind = type(value)
            # NaN fails every comparison, so the range test also rejects NaN and inf.
            if value is None or (kind is float and low <= value <= high):
                row.append(value)
            elif kind is int and low <= value <= high:
                row.append(float(value))
            elif name == "frequency_hz" and (kind is float or kind is int) and value == 0:
                row.append(0.0)
            else:
                rejected.append(_reject(index, name, _value_problem(value, low, high)))
                break
        else:
            if row[3] is None and row[4] is None:
                rejected.append(_reject(index, None, "carries neither power_w nor energy_wh"))
            elif ts in first_at:
                reason = f"repeats the instant of readings[{first_at[ts]}]"
                rejected.append(_reject(index, "ts", reason))
            else:
                first_at[ts] = index
                accepted.append(_new_tuple(Reading, row))


def _parse_ts(value: object, low: datetime, high: datetime) -> datetime | str:
    """The instant as aware UTC datetime, or why it is not acceptable."""
    if type(value) is str:
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return f"{_show(value)} is not an ISO 8601 timestamp"
    elif isinstance(value, datetime):  # CBOR tags 0/1 and protobuf ts_ms decode to datetimes
        ts = value
    elif value is None:
        return "missing; every reading needs a ts"
    else:
        return f"must be an ISO 8601 string, not {_kind(value)}"
    if ts.tzinfo is not UTC:
        if ts.tzinfo is None or ts.utcoffset() is None:
            return f"{_show(value)} has no UTC offset; send UTC with a Z"
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:
            return f"{_show(value)} is out of range"
    if ts < low:
        return f"{format_ts(ts)} is before {format_ts(low)}"
    if ts > high:
        return f"{format_ts(ts)} is after {format_ts(high)} (now + max_future)"
    return ts


def _reject(index: int, name: str | None, reason: str) -> ContractError:
    path = f"readings[{index}]" if name is None else f"readings[{index}].{name}"
    return ContractError(reason, field=path)


def _seq_problem(seq: object) -> str:
    if type(seq) is not int:
        return f"must be an integer, not {_kind(seq)}"
    return f"{_show(seq)} is outside 0..2**63-1"


def _value_problem(value: object, low: float, high: float) -> str:
    if type(value) is float:
        if isnan(value):
            return "is NaN"
        if value in (float("inf"), float("-inf")):
            return f"is {value}, not a finite number"
    elif type(value) is not int:
        return f"must be a number, not {_kind(value)}"
    return f"{_show(value)} is outside {low:g}..{high:g}"


def _first_name(keys: Iterable[object]) -> str:
    """The alphabetically first key, cut short: a hostile key may be megabytes long."""
    return min(str(key)[:64] for key in keys)


def _kind(value: object) -> str:
    """A JSON-ish type name for error messages."""
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return "null" if value is None else type(value).__name__


def _show(value: object) -> str:
    """A short repr of a scalar; containers only by kind (a repr could be megabytes deep)."""
    if type(value) is int and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    if isinstance(value, str | int | float | bool):
        text = repr(value)
        return text if len(text) <= 60 else text[:56] + "...'"
    return _kind(value)

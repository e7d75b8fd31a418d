"""Schema v1 validation: envelope errors raise, bad readings are rejected one by one."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vatio.contracts import DecodedBatch, Limits, decode_telemetry, format_ts, validate_batch
from vatio.errors import ConfigError, ContractError
from vatio.model.reading import Reading

FIXTURES = Path(__file__).parents[1] / "fixtures" / "telemetry"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
LIMITS = Limits()
T0 = "2026-11-24T10:00:00.000Z"


def _validate(obj: object, topic_device: str | None = "plug-7", **limits: Any) -> DecodedBatch:
    return validate_batch(obj, topic_device=topic_device, limits=Limits(**limits), now=NOW)


def _batch(*readings: object, device: str = "plug-7") -> dict[str, object]:
    return {"v": 1, "device": device, "readings": list(readings)}


def _reject_one(**fields: object) -> ContractError:
    """Validate [a good reading, the given one]; return the single rejection."""
    good = {"ts": "2026-11-24T09:00:00Z", "power_w": 1.0}
    bad = {"ts": T0, "power_w": 5.0, **fields}
    batch = _validate(_batch(good, {k: v for k, v in bad.items() if v is not _ABSENT}))
    assert [r.power_w for r in batch.readings] == [1.0]
    assert len(batch.rejected) == 1
    return batch.rejected[0]


_ABSENT = object()


# -- recorded payloads ---------------------------------------------------------------------------

ACCEPTED = {
    "shelly_plug_batch.json": ("plug-7", 3, []),
    "p1_meter_energy_only.json": ("p1-meter", 3, []),
    "solar_inverter_offsets.json": ("inverter_1", 2, []),
    "outage_zero_hz.json": ("plug-7", 1, []),
    "mixed_bad_readings.json": (
        "plug-7",
        2,
        [
            "readings[1].power_w",
            "readings[2].ts",
            "readings[3].energy_wh",
            "readings[4].ts",
            "readings[5].power_w",
            "readings[6]",
        ],
    ),
    "tasmota_string_numbers.json": ("tasmota-3", 1, ["readings[0].power_w"]),
    "future_clock.json": ("plug-9", 1, ["readings[1].ts", "readings[2].ts"]),
}
REFUSED = {
    "unknown_version.json": ("plug-7", "v", "unknown version 2"),
    "device_mismatch.json": ("plug-7", "device", "differs from the topic's device 'plug-7'"),
    "extra_envelope_field.json": ("plug-7", "fw", "unknown field"),
}


def test_every_fixture_has_an_expectation() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} == set(ACCEPTED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_recorded_payloads_decode(name: str) -> None:
    device, accepted, rejected_fields = ACCEPTED[name]
    topic = f"vatio/v1/home-1/{device}/telemetry"
    batch = decode_telemetry(topic, (FIXTURES / name).read_bytes(), limits=LIMITS, now=NOW)
    assert batch.device == device
    assert len(batch.readings) == accepted
    assert [e.field for e in batch.rejected] == rejected_fields
    for reading in batch.readings:
        assert reading.ts.tzinfo is UTC
        assert reading.power_w is not None or reading.energy_wh is not None


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_recorded_payloads_refused(name: str) -> None:
    device, field, reason = REFUSED[name]
    with pytest.raises(ContractError) as caught:
        decode_telemetry(
            f"vatio/v1/home-1/{device}/telemetry",
            (FIXTURES / name).read_bytes(),
            limits=LIMITS,
            now=NOW,
        )
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_architecture_example_reading_exactly() -> None:
    batch = decode_telemetry(
        "vatio/v1/home-1/plug-7/telemetry",
        (FIXTURES / "shelly_plug_batch.json").read_bytes(),
        limits=LIMITS,
        now=NOW,
    )
    ts = datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert batch.readings[0] == Reading("plug-7", ts, 41, 123.4, 100500.5, 230.1, 0.54, 0.98, 50.0, None)
    # Integers on the wire become floats in the Reading.
    assert type(batch.readings[2].power_w) is float


def test_offsets_are_converted_to_utc() -> None:
    batch = decode_telemetry(
        "vatio/v1/home-1/inverter_1/telemetry",
        (FIXTURES / "solar_inverter_offsets.json").read_bytes(),
        limits=LIMITS,
        now=NOW,
    )
    assert [format_ts(r.ts) for r in batch.readings] == [
        "2026-11-24T10:00:00.250Z",
        "2026-11-24T10:01:00.250Z",
    ]
    assert all(r.ts.tzinfo is UTC for r in batch.readings)


# -- per-reading rejections ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("power_w", math.nan, "is NaN"),
        ("power_w", math.inf, "not a finite number"),
        ("energy_wh", -math.inf, "not a finite number"),
        ("power_w", True, "must be a number, not bool"),
        ("power_w", "123.4", "must be a number, not str"),
        ("power_w", [1.0], "must be a number, not list"),
        ("power_w", {"value": 1.0}, "must be a number, not object"),
        ("power_w", 1e7, "10000000.0 is outside -100000..100000"),
        ("power_w", -100_001, "-100001 is outside -100000..100000"),
        ("power_w", 2**200, "a 201-bit integer is outside"),
        ("energy_wh", -0.5, "is outside 0..1e+12"),
        ("energy_wh", 1e13, "is outside 0..1e+12"),
        ("energy_export_wh", -1, "is outside 0..1e+12"),
        ("voltage_v", -1.0, "is outside 0..1000"),
        ("voltage_v", 1200.0, "is outside 0..1000"),
        ("current_a", 2500.0, "is outside -2000..2000"),
        ("power_factor", 1.01, "is outside -1..1"),
        ("frequency_hz", 30.0, "is outside 40..70"),
        ("frequency_hz", 0.5, "is outside 40..70"),
        ("frequency_hz", False, "must be a number, not bool"),
        ("seq", -1, "-1 is outside 0..2**63-1"),
        ("seq", 2**63, "is outside 0..2**63-1"),
        ("seq", 41.0, "must be an integer, not float"),
        ("seq", True, "must be an integer, not bool"),
        ("seq", "41", "must be an integer, not str"),
        ("ts", _ABSENT, "missing"),
        ("ts", None, "missing"),
        ("ts", 1795514400, "must be an ISO 8601 string, not int"),
        ("ts", "2026-11-24T10:00:00", "has no UTC offset"),
        ("ts", "2026-11-24", "has no UTC offset"),
        ("ts", "yesterday", "'yesterday' is not an ISO 8601 timestamp"),
        ("ts", "2026-13-24T10:00:00Z", "is not an ISO 8601 timestamp"),
        ("ts", "2026-11-26T10:00:00Z", "is after 2026-11-25T12:00:00.000Z (now + max_future)"),
        ("ts", "1999-12-31T23:59:59Z", "is before 2000-01-01T00:00:00.000Z"),
        ("ts", datetime(2026, 11, 24, 10), "has no UTC offset"),
        ("reactive_power_var", 3.0, "unknown field"),
    ],
)
def test_bad_field_rejects_only_its_reading(field: str, value: object, reason: str) -> None:
    error = _reject_one(**{field: value})
    assert error.field == f"readings[1].{field}"
    assert reason in error.reason
    assert str(error).startswith(f"readings[1].{field}: ")


def test_reading_without_power_or_energy_is_rejected() -> None:
    error = _reject_one(power_w=None, voltage_v=230.0)
    assert error.field == "readings[1]"
    assert "neither power_w nor energy_wh" in error.reason


@pytest.mark.parametrize("item", [[1, 2], "reading", 5, None])
def test_reading_that_is_not_an_object_is_rejected(item: object) -> None:
    batch = _validate(_batch({"ts": T0, "power_w": 1.0}, item))
    assert len(batch.readings) == 1
    assert batch.rejected[0].field == "readings[1]"
    assert "must be an object" in batch.rejected[0].reason


def test_duplicate_instant_keeps_the_first() -> None:
    batch = _validate(
        _batch(
            {"ts": T0, "power_w": 1.0},
            {"ts": "2026-11-24T11:00:00+01:00", "power_w": 2.0},  # same instant, other spelling
            {"ts": "2026-11-24T10:00:00.001Z", "power_w": 3.0},
        )
    )
    assert [r.power_w for r in batch.readings] == [1.0, 3.0]
    assert batch.rejected[0].field == "readings[1].ts"
    assert "readings[0]" in batch.rejected[0].reason


def test_nulls_and_missing_optionals_are_fine() -> None:
    batch = _validate(
        _batch(
            {"ts": T0, "seq": None, "energy_wh": 5.0, "energy_export_wh": None, "power_w": None},
            {"ts": "2026-11-24T10:00:01Z", "power_w": 0},
        )
    )
    assert batch.rejected == []
    assert batch.readings[0] == Reading("plug-7", datetime(2026, 11, 24, 10, tzinfo=UTC), energy_wh=5.0)
    assert batch.readings[1].power_w == 0.0


def test_limits_are_inclusive_and_configurable() -> None:
    edge = {"ts": T0, "power_w": 100_000.0, "power_factor": -1, "frequency_hz": 70, "seq": 2**63 - 1}
    assert len(_validate(_batch(edge)).readings) == 1
    assert _validate(_batch(edge), max_abs_power_w=50_000.0).rejected[0].field == "readings[0].power_w"
    soon = {"ts": "2026-11-24T12:00:05Z", "power_w": 1.0}
    assert _validate(_batch(soon)).readings
    assert _validate(_batch(soon), max_future=timedelta(0)).rejected[0].field == "readings[0].ts"


# -- envelope errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "field", "reason"),
    [
        ([1, 2], None, "payload must be an object"),
        ("v1", None, "payload must be an object"),
        (None, None, "readings, not null"),
        ({"device": "plug-7", "readings": []}, "v", "missing version"),
        ({"v": 2, "device": "plug-7", "readings": []}, "v", "unknown version 2"),
        ({"v": True, "device": "plug-7", "readings": []}, "v", "unknown version True"),
        ({"v": "1", "device": "plug-7", "readings": []}, "v", "unknown version '1'"),
        ({"v": 1.0, "device": "plug-7", "readings": []}, "v", "unknown version 1.0"),
        ({"v": 1, "device": "plug-7", "readings": [], "extra": 1}, "extra", "unknown field"),
        ({"v": 1, "readings": []}, "device", "missing device id"),
        ({"v": 1, "device": 7, "readings": []}, "device", "must be a string, not int"),
        ({"v": 1, "device": "plug 7", "readings": []}, "device", "contains ' '"),
        ({"v": 1, "device": "plug-8", "readings": []}, "device", "differs from the topic's device"),
        ({"v": 1, "device": "plug-7"}, "readings", "missing"),
        ({"v": 1, "device": "plug-7", "readings": {"ts": T0}}, "readings", "must be a list, not object"),
        ({"v": 1, "device": "plug-7", "readings": []}, "readings", "is empty"),
    ],
)
def test_envelope_errors_refuse_the_batch(obj: object, field: str | None, reason: str) -> None:
    with pytest.raises(ContractError) as caught:
        _validate(obj)
    assert caught.value.field == field
    assert reason in caught.value.reason


def test_too_many_readings() -> None:
    readings = [{"ts": T0, "power_w": 1.0}] * 11
    with pytest.raises(ContractError, match="11 readings, more than the limit of 10") as caught:
        _validate(_batch(*readings), max_readings=10)
    assert caught.value.field == "readings"


def test_topic_device_none_skips_the_topic_check() -> None:
    batch = _validate(_batch({"ts": T0, "power_w": 1.0}, device="other"), topic_device=None)
    assert batch.device == "other"
    assert batch.readings[0].device_id == "other"


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_batch(_batch(), topic_device=None, limits=LIMITS, now=datetime(2026, 11, 24))


@pytest.mark.parametrize(
    "bad",
    [
        {"max_readings": 0},
        {"max_payload_bytes": 0},
        {"min_frequency_hz": 0.0},
        {"min_frequency_hz": 60.0, "max_frequency_hz": 50.0},
        {"min_ts": datetime(2000, 1, 1)},
        {"max_future": timedelta(seconds=-1)},
    ],
)
def test_implausible_limits_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Limits(**bad)


# -- properties ----------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from([T0, "2026-11-24T10:00:00+02:00", "2026-11-24T10:00:00", "2100-01-01T00:00:00Z"]),
)
field_names = st.sampled_from(
    [
        "ts",
        "seq",
        "power_w",
        "energy_wh",
        "voltage_v",
        "current_a",
        "power_factor",
        "frequency_hz",
        "energy_export_wh",
        "bogus",
        "",
    ]
)
readings_strategy = st.lists(
    st.one_of(st.dictionaries(field_names, json_scalars, max_size=10), json_scalars),
    min_size=1,
    max_size=8,
)


@given(readings=readings_strategy)
def test_every_rejection_names_its_reading_and_field(readings: list[object]) -> None:
    batch = _validate(_batch(*readings))
    assert len(batch.readings) + len(batch.rejected) == len(readings)
    for error in batch.rejected:
        assert error.field is not None
        assert error.field.startswith("readings[")
        assert str(error).startswith(f"{error.field}: ")
        assert error.reason
    for reading in batch.readings:
        assert reading.ts.tzinfo is UTC
        assert all(v is None or (type(v) is float and math.isfinite(v)) for v in reading[3:])

"""Topic builders and the strict parser of wire contract v1."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vatio.contracts import (
    TELEMETRY_SUBSCRIPTIONS,
    ParsedTopic,
    alerts_topic,
    check_id,
    config_reported_topic,
    config_topic,
    id_problem,
    ota_topic,
    parse_topic,
    status_topic,
    telemetry_topic,
)
from vatio.errors import ContractError, TopicError

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


def _mqtt_match(pattern: str, topic: str) -> bool:
    """MQTT filter matching for ``+`` (enough for the subscriptions under test)."""
    want, have = pattern.split("/"), topic.split("/")
    return len(want) == len(have) and all(w in ("+", h) for w, h in zip(want, have, strict=True))


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: telemetry_topic("home-1", "plug-7"), "vatio/v1/home-1/plug-7/telemetry"),
        (lambda: telemetry_topic("home-1", "plug-7", "json"), "vatio/v1/home-1/plug-7/telemetry"),
        (lambda: telemetry_topic("home-1", "plug-7", "cbor"), "vatio/v1/home-1/plug-7/telemetry/cbor"),
        (lambda: telemetry_topic("home-1", "plug-7", "pb"), "vatio/v1/home-1/plug-7/telemetry/pb"),
        (lambda: status_topic("h", "d"), "vatio/v1/h/d/status"),
        (lambda: config_topic("h", "d"), "vatio/v1/h/d/config"),
        (lambda: config_reported_topic("h", "d"), "vatio/v1/h/d/config/reported"),
        (lambda: ota_topic("h", "d"), "vatio/v1/h/d/ota"),
        (lambda: alerts_topic("h"), "vatio/v1/h/alerts"),
    ],
)
def test_builders_spell_the_contract_topics(build: Callable[[], str], expected: str) -> None:
    assert build() == expected
    assert parse_topic(expected).topic == expected


@given(site=ids, device=ids, encoding=st.sampled_from(["json", "cbor", "pb"]))
def test_telemetry_topic_round_trips(site: str, device: str, encoding: str) -> None:
    topic = telemetry_topic(site, device, encoding)  # type: ignore[arg-type]
    assert parse_topic(topic) == ParsedTopic(site, device, "telemetry", encoding)  # type: ignore[arg-type]
    assert sum(_mqtt_match(pattern, topic) for pattern in TELEMETRY_SUBSCRIPTIONS) == 1


@given(site=ids, device=ids)
def test_device_topics_round_trip(site: str, device: str) -> None:
    for build, kind in [
        (status_topic, "status"),
        (config_topic, "config"),
        (config_reported_topic, "config/reported"),
        (ota_topic, "ota"),
    ]:
        parsed = parse_topic(build(site, device))
        assert (parsed.site, parsed.device, parsed.kind, parsed.encoding) == (site, device, kind, None)
        assert not any(_mqtt_match(pattern, parsed.topic) for pattern in TELEMETRY_SUBSCRIPTIONS)
    assert parse_topic(alerts_topic(site)) == ParsedTopic(site, None, "alerts")


@pytest.mark.parametrize(
    ("topic", "reason", "field"),
    [
        ("vatio/v1/+/plug-7/telemetry", "wildcard", None),
        ("vatio/v1/home/#", "wildcard", None),
        ("vatia/v1/home/plug/telemetry", "does not start with 'vatio/'", None),
        ("/vatio/v1/home/plug/telemetry", "does not start with 'vatio/'", None),
        ("vatio", "unsupported contract version ''", None),
        ("vatio/v2/home/plug/telemetry", "unsupported contract version 'v2'", None),
        ("vatio/V1/home/plug/telemetry", "unsupported contract version 'V1'", None),
        ("vatio/v1/home", "too short", None),
        ("vatio/v1//plug/telemetry", "is empty", "site"),
        ("vatio/v1/home/pl.ug/telemetry", "contains '.'", "device"),
        ("vatio/v1/hö/plug/telemetry", "contains 'ö'", "site"),
        ("vatio/v1/home/plug-7", "ends after the device id", None),
        ("vatio/v1/home/pl ug", "contains ' '", "device"),
        (f"vatio/v1/{'s' * 65}/plug/telemetry", "65 characters long, more than 64", "site"),
        (f"vatio/v1/home/{'d' * 65}/status", "65 characters long, more than 64", "device"),
        ("vatio/v1/home/plug/telemetry/json", "unknown topic suffix 'telemetry/json'", None),
        ("vatio/v1/home/plug/telemetry/", "unknown topic suffix 'telemetry/'", None),
        ("vatio/v1/home/plug/state", "unknown topic suffix 'state'", None),
        ("vatio/v1/home/plug/config/desired", "unknown topic suffix 'config/desired'", None),
    ],
)
def test_parse_topic_says_what_is_wrong(topic: str, reason: str, field: str | None) -> None:
    with pytest.raises(TopicError) as caught:
        parse_topic(topic)
    assert reason in caught.value.reason
    assert caught.value.field == field
    assert isinstance(caught.value, ContractError)


def test_parse_topic_rejects_non_strings() -> None:
    with pytest.raises(TopicError, match="must be a string"):
        parse_topic(b"vatio/v1/h/d/telemetry")  # type: ignore[arg-type]


def test_ids_of_64_characters_are_fine_65_are_not() -> None:
    assert parse_topic(f"vatio/v1/{'s' * 64}/{'d' * 64}/telemetry").device == "d" * 64
    with pytest.raises(TopicError) as caught:
        status_topic("home", "d" * 65)
    assert caught.value.field == "device"


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "a#b", "a b", "ä", "x" * 65])
def test_builders_validate_ids(bad: str) -> None:
    with pytest.raises(TopicError) as site_error:
        telemetry_topic(bad, "plug-7")
    assert site_error.value.field == "site"
    with pytest.raises(TopicError) as device_error:
        config_topic("home", bad)
    assert device_error.value.field == "device"
    with pytest.raises(TopicError):
        alerts_topic(bad)


def test_telemetry_topic_rejects_unknown_encoding() -> None:
    with pytest.raises(TopicError) as caught:
        telemetry_topic("home", "plug", "xml")  # type: ignore[arg-type]
    assert caught.value.field == "encoding"


def test_id_problem_and_check_id() -> None:
    assert id_problem("Plug_7-a") is None
    assert id_problem(7) == "must be a string, not int"
    with pytest.raises(TopicError, match="site: id must be a string, not NoneType"):
        check_id(None, "site")  # type: ignore[arg-type]


def test_subscriptions_cover_exactly_the_telemetry_encodings() -> None:
    assert TELEMETRY_SUBSCRIPTIONS == (
        "vatio/v1/+/+/telemetry",
        "vatio/v1/+/+/telemetry/cbor",
        "vatio/v1/+/+/telemetry/pb",
    )

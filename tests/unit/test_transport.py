"""Broker URLs and reconnect backoff."""

from __future__ import annotations

import ssl

import pytest

from vatio.errors import ConfigError
from vatio.transport import Backoff, BrokerUrl

# -- BrokerUrl --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://broker.local", "broker.local", 1883, False),
        ("mqtt://broker.local:1884", "broker.local", 1884, False),
        ("mqtts://broker.local", "broker.local", 8883, True),
        ("mqtts://broker.local:443", "broker.local", 443, True),
        ("mqtt://127.0.0.1:65535", "127.0.0.1", 65535, False),
        ("mqtt://[::1]:1884", "::1", 1884, False),
    ],
)
def test_parse_host_port_and_tls(url: str, host: str, port: int, tls: bool) -> None:
    parsed = BrokerUrl.parse(url)
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)
    assert (parsed.username, parsed.password) == (None, None)


def test_credentials_are_percent_decoded() -> None:
    parsed = BrokerUrl.parse("mqtts://meter%40home:p%3Ass%2Fw%40rd%25@broker.local")
    assert parsed.username == "meter@home"
    assert parsed.password == "p:ss/w@rd%"
    assert (parsed.host, parsed.port, parsed.tls) == ("broker.local", 8883, True)


def test_username_without_password() -> None:
    parsed = BrokerUrl.parse("mqtt://gateway@broker.local")
    assert (parsed.username, parsed.password) == ("gateway", None)


def test_str_names_the_endpoint_without_credentials() -> None:
    parsed = BrokerUrl.parse("mqtts://user:secret@broker.local")
    assert str(parsed) == "mqtts://broker.local:8883"
    assert "secret" not in str(parsed)


def test_ssl_context_only_for_mqtts() -> None:
    assert BrokerUrl.parse("mqtt://broker.local").ssl_context() is None
    context = BrokerUrl.parse("mqtts://broker.local").ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://broker.local", "must start with mqtt:// or mqtts://"),
        ("broker.local:1883", "must start with mqtt:// or mqtts://"),
        ("", "must start with mqtt:// or mqtts://"),
        ("ws://broker.local", "must start with mqtt:// or mqtts://"),
        ("mqtt://", "has no host"),
        ("mqtt://:1883", "has no host"),
        ("mqtts://user:pw@", "has no host"),
        ("mqtt://broker.local:port", "invalid port"),
        ("mqtt://broker.local:65536", "invalid port"),
        ("mqtt://broker.local:-1", "invalid port"),
    ],
)
def test_invalid_urls_raise_config_error(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match="broker URL") as info:
        BrokerUrl.parse(url)
    assert words in str(info.value)
    assert repr(url) in str(info.value)


def test_port_zero_is_invalid() -> None:
    with pytest.raises(ConfigError, match="invalid port"):
        BrokerUrl.parse("mqtt://broker.local:0")


# -- Backoff ----------------------------------------------------------------------------


def delays(backoff: Backoff, n: int) -> list[float]:
    return [backoff.next() for _ in range(n)]


def ceilings(initial_s: float, cap_s: float, n: int) -> list[float]:
    return [min(cap_s, initial_s * 2**attempt) for attempt in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_each_delay_is_jittered_within_half_to_full_ceiling(seed: int) -> None:
    backoff = Backoff(initial_s=0.5, cap_s=30.0, seed=seed)
    for delay, ceiling in zip(delays(backoff, 40), ceilings(0.5, 30.0, 40), strict=True):
        assert ceiling / 2 <= delay <= ceiling


def test_delays_grow_until_the_cap() -> None:
    backoff = Backoff(initial_s=1.0, cap_s=16.0, seed=3)
    got = delays(backoff, 5)  # ceilings 1, 2, 4, 8, 16
    # [c/2, c] ranges of consecutive doublings touch, so delays never shrink...
    assert got == sorted(got)
    # ...and the jitter ranges of attempts two apart do not overlap at all.
    assert all(later > earlier for earlier, later in zip(got, got[2:], strict=False))
    assert got[-1] >= 8.0


def test_delays_cap_at_cap_s() -> None:
    backoff = Backoff(initial_s=1.0, cap_s=5.0, seed=9)
    got = delays(backoff, 200)
    assert max(got) <= 5.0
    assert all(2.5 <= d <= 5.0 for d in got[3:])  # from the 4th attempt the ceiling is the cap


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(initial_s=0.5, cap_s=30.0, seed=0)
    assert all(15.0 <= d <= 30.0 for d in delays(backoff, 5000)[10:])


def test_reset_starts_from_the_initial_delay() -> None:
    backoff = Backoff(initial_s=2.0, cap_s=60.0, seed=4)
    delays(backoff, 10)
    backoff.reset()
    first, second = delays(backoff, 2)
    assert 1.0 <= first <= 2.0
    assert 2.0 <= second <= 4.0


def test_same_seed_same_delays() -> None:
    a = delays(Backoff(initial_s=0.5, cap_s=30.0, seed=42), 30)
    b = delays(Backoff(initial_s=0.5, cap_s=30.0, seed=42), 30)
    c = delays(Backoff(initial_s=0.5, cap_s=30.0, seed=43), 30)
    assert a == b
    assert a != c


def test_constructor_arguments_are_kept() -> None:
    backoff = Backoff(initial_s=0.25, cap_s=8.0, seed=11)
    assert (backoff.initial_s, backoff.cap_s, backoff.seed) == (0.25, 8.0, 11)

"""MQTT topics of wire contract v1: builders, a strict parser and the subscriptions.

Every topic is ``vatio/v1/{site}/...``; ids are ``[A-Za-z0-9_-]{1,64}`` so they
can never contain a level separator or an MQTT wildcard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal, get_args

from vatio.errors import TopicError

Kind = Literal["telemetry", "status", "config", "config/reported", "ota", "alerts"]
Encoding = Literal["json", "cbor", "pb"]

PREFIX: Final = "vatio/v1"
ENCODINGS: Final[tuple[Encoding, ...]] = get_args(Encoding)
MAX_ID_LENGTH: Final = 64

#: What an ingest consumer subscribes to: every site, every device, every encoding.
TELEMETRY_SUBSCRIPTIONS: Final = (
    "vatio/v1/+/+/telemetry",
    "vatio/v1/+/+/telemetry/cbor",
    "vatio/v1/+/+/telemetry/pb",
)

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID_BAD_CHAR = re.compile(r"[^A-Za-z0-9_-]")

# Suffix after ``{site}/{device}/`` -> (kind, encoding).
_DEVICE_SUFFIXES: Final[dict[str, tuple[Kind, Encoding | None]]] = {
    "telemetry": ("telemetry", "json"),
    "telemetry/cbor": ("telemetry", "cbor"),
    "telemetry/pb": ("telemetry", "pb"),
    "status": ("status", None),
    "config": ("config", None),
    "config/reported": ("config/reported", None),
    "ota": ("ota", None),
}
_TELEMETRY_SUFFIX: Final[dict[Encoding, str]] = {
    "json": "telemetry",
    "cbor": "telemetry/cbor",
    "pb": "telemetry/pb",
}


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A v1 topic taken apart; ``device`` is None for ``alerts``, ``encoding`` set for telemetry.

    >>> parse_topic("vatio/v1/home-1/plug-7/telemetry/cbor")
    ParsedTopic(site='home-1', device='plug-7', kind='telemetry', encoding='cbor')
    >>> parse_topic("vatio/v1/home-1/plug-7/status").topic
    'vatio/v1/home-1/plug-7/status'
    """

    site: str
    device: str | None
    kind: Kind
    encoding: Encoding | None = None

    @property
    def topic(self) -> str:
        """The topic string this was parsed from (topics have one spelling only)."""
        if self.device is None:
            return f"{PREFIX}/{self.site}/{self.kind}"
        suffix = _TELEMETRY_SUFFIX[self.encoding] if self.encoding else self.kind
        return f"{PREFIX}/{self.site}/{self.device}/{suffix}"


def id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid site or device id, or None when it is.

    >>> id_problem("plug-7") is None
    True
    >>> id_problem("plug 7")
    "contains ' ' (allowed: A-Z a-z 0-9 _ -)"
    """
    if type(value) is not str:
        return f"must be a string, not {type(value).__name__}"
    if _ID.fullmatch(value):
        return None
    if not value:
        return "is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"is {len(value)} characters long, more than {MAX_ID_LENGTH}"
    bad = _ID_BAD_CHAR.search(value)
    assert bad is not None  # the id regex only fails on length or a character
    return f"contains {bad.group()!r} (allowed: A-Z a-z 0-9 _ -)"


def check_id(value: str, what: Literal["site", "device"]) -> str:
    """Return ``value`` if it is a valid id, else raise :class:`TopicError` naming ``what``.

    >>> check_id("home-1", "site")
    'home-1'
    >>> check_id("a/b", "device")
    Traceback (most recent call last):
    vatio.errors.TopicError: device: id 'a/b' contains '/' (allowed: A-Z a-z 0-9 _ -)
    """
    problem = id_problem(value)
    if problem is not None:
        shown = f" {_short(value)}" if isinstance(value, str) else ""
        raise TopicError(f"id{shown} {problem}", field=what)
    return value


def telemetry_topic(site: str, device: str, encoding: Encoding = "json") -> str:
    """Topic a device or gateway publishes telemetry batches on.

    >>> telemetry_topic("home-1", "plug-7")
    'vatio/v1/home-1/plug-7/telemetry'
    >>> telemetry_topic("home-1", "plug-7", "pb")
    'vatio/v1/home-1/plug-7/telemetry/pb'
    """
    suffix = _TELEMETRY_SUFFIX.get(encoding)
    if suffix is None:
        raise TopicError(f"unknown encoding {encoding!r}; expected json, cbor or pb", field="encoding")
    return _device_topic(site, device, suffix)


def status_topic(site: str, device: str) -> str:
    """Retained online/offline status of a device (also its last will).

    >>> status_topic("home-1", "plug-7")
    'vatio/v1/home-1/plug-7/status'
    """
    return _device_topic(site, device, "status")


def config_topic(site: str, device: str) -> str:
    """Desired configuration, cloud to device.

    >>> config_topic("home-1", "plug-7")
    'vatio/v1/home-1/plug-7/config'
    """
    return _device_topic(site, device, "config")


def config_reported_topic(site: str, device: str) -> str:
    """Configuration version the device has applied.

    >>> config_reported_topic("home-1", "plug-7")
    'vatio/v1/home-1/plug-7/config/reported'
    """
    return _device_topic(site, device, "config/reported")


def ota_topic(site: str, device: str) -> str:
    """Signed firmware manifest, cloud to device.

    >>> ota_topic("home-1", "plug-7")
    'vatio/v1/home-1/plug-7/ota'
    """
    return _device_topic(site, device, "ota")


def alerts_topic(site: str) -> str:
    """Alert events for a whole site, cloud to home.

    >>> alerts_topic("home-1")
    'vatio/v1/home-1/alerts'
    """
    return f"{PREFIX}/{check_id(site, 'site')}/alerts"


def parse_topic(topic: str) -> ParsedTopic:
    """Take a v1 topic apart, or raise :class:`TopicError` saying exactly what is wrong.

    >>> parse_topic("vatio/v1/home-1/alerts")
    ParsedTopic(site='home-1', device=None, kind='alerts', encoding=None)
    >>> parse_topic("vatio/v2/home-1/plug-7/telemetry")
    Traceback (most recent call last):
    vatio.errors.TopicError: unsupported contract version 'v2' in topic; this build speaks v1
    """
    if type(topic) is not str:
        raise TopicError(f"topic must be a string, not {type(topic).__name__}")
    # Ingest parses every message's topic and devices publish on a handful of
    # topics each, so the cache turns parsing into one dict lookup.
    return _parse_cached(topic)


@lru_cache(maxsize=16384)
def _parse_cached(topic: str) -> ParsedTopic:
    if "+" in topic or "#" in topic:
        raise TopicError(f"topic {_short(topic)} contains an MQTT wildcard; publish topics cannot")
    levels = topic.split("/")
    if levels[0] != "vatio":
        raise TopicError(f"topic {_short(topic)} does not start with 'vatio/'")
    if len(levels) < 2 or levels[1] != "v1":
        version = levels[1] if len(levels) > 1 else ""
        raise TopicError(f"unsupported contract version {_short(version)} in topic; this build speaks v1")
    if len(levels) < 4:
        raise TopicError(f"topic {_short(topic)} is too short: expected vatio/v1/{{site}}/...")
    site = check_id(levels[2], "site")
    if len(levels) == 4:
        if levels[3] == "alerts":
            return ParsedTopic(site, None, "alerts")
        check_id(levels[3], "device")
        raise TopicError(f"topic {_short(topic)} ends after the device id; expected a suffix")
    device = check_id(levels[3], "device")
    suffix = "/".join(levels[4:])
    known = _DEVICE_SUFFIXES.get(suffix)
    if known is None:
        expected = ", ".join(_DEVICE_SUFFIXES)
        raise TopicError(f"unknown topic suffix {_short(suffix)}; expected one of {expected}")
    return ParsedTopic(site, device, *known)


def _device_topic(site: str, device: str, suffix: str) -> str:
    return f"{PREFIX}/{check_id(site, 'site')}/{check_id(device, 'device')}/{suffix}"


def _short(text: str) -> str:
    """repr() cut to a length that keeps error messages and logs readable."""
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:76] + "...'"

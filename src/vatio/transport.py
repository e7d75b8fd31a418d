"""Broker URLs and reconnect backoff, shared by every MQTT-speaking stage."""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from vatio.errors import ConfigError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerUrl:
    """A parsed ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://`` URL.

    >>> BrokerUrl.parse("mqtt://127.0.0.1:1884")
    BrokerUrl(host='127.0.0.1', port=1884, tls=False, username=None, password=None)
    >>> BrokerUrl.parse("http://x")
    Traceback (most recent call last):
    ...
    vatio.errors.ConfigError: broker URL 'http://x' must start with mqtt:// or mqtts://
    """

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ConfigError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
        try:
            port = parts.port if parts.port is not None else DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ConfigError(f"broker URL {url!r} has an invalid port") from exc
        if port == 0:
            raise ConfigError(f"broker URL {url!r} has an invalid port")
        if not parts.hostname:
            raise ConfigError(f"broker URL {url!r} has no host")
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context() if self.tls else None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


class Backoff:
    """Capped exponential backoff with full jitter.

    >>> b = Backoff(initial_s=1.0, cap_s=8.0, seed=1)
    >>> delays = [b.next() for _ in range(6)]
    >>> all(0 <= d <= 8.0 for d in delays)
    True
    """

    def __init__(self, *, initial_s: float = 0.5, cap_s: float = 30.0, seed: int | None = None) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.seed = seed
        self._rng = random.Random(seed)
        self._attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.initial_s * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0

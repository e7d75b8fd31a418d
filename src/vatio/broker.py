"""The in-process MQTT broker `vatio up` starts when no broker URL is given.

It is a real broker (amqtt, MQTT 3.1.1) on a local TCP port, so outside
clients — a real plug, ``mosquitto_sub`` — can use it too.
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType
from typing import Self

from vatio.transport import BrokerUrl

log = logging.getLogger(__name__)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


class EmbeddedBroker:
    """An amqtt broker on ``host:port``; falls back to a free port when ``port`` is taken."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port if port_free(host, port) else free_port(host)
        self.requested_port = port
        self._broker: object | None = None

    @property
    def url(self) -> BrokerUrl:
        return BrokerUrl(host=self.host, port=self.port)

    async def __aenter__(self) -> Self:
        from amqtt.broker import Broker

        # amqtt logs every connection at INFO and a client's early disconnect at
        # WARNING; the terminal stays for our own output, amqtt's errors still show.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        await broker.start()
        self._broker = broker
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        broker = self._broker
        self._broker = None
        if broker is not None:
            await broker.shutdown()  # type: ignore[attr-defined]

"""Alert events on MQTT: ``vatio/v1/{site}/alerts`` at QoS 1, confirmed by PUBACK.

:class:`MqttLink` is one reconnecting publisher shared by the alert channel,
Home Assistant discovery and (in ``vatio up``) detection's anomaly events.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson

from vatio.alert.channels.base import DeliveryError
from vatio.alert.routes import Route
from vatio.contracts import alerts_topic
from vatio.errors import ContractError
from vatio.ingest.mqtt_codec import MqttError
from vatio.model import OutboxMessage
from vatio.sim.wire import FastPublisher
from vatio.transport import BrokerUrl


class MqttLink:
    """Publishes at QoS 1 and waits for the PUBACK; connects on first use and after a loss.

    A failed publish raises :class:`DeliveryError` (retryable) and drops the
    connection, so the next call reconnects; the caller's loop does the backoff.
    """

    def __init__(
        self, broker: BrokerUrl, *, client_id: str, timeout_s: float = 10.0, protocol: Literal[4, 5] = 5
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.connections = 0
        self._publisher: FastPublisher | None = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> FastPublisher:
        async with self._lock:
            if self._publisher is not None and self._publisher.connected:
                return self._publisher
            publisher = FastPublisher(
                host=self.broker.host, port=self.broker.port, client_id=self.client_id, window=100,
                ssl=self.broker.ssl_context(), username=self.broker.username, password=self.broker.password,
                connect_timeout_s=self.timeout_s, protocol=self.protocol,
            )  # fmt: skip
            await publisher.connect()
            self._publisher = publisher
            self.connections += 1
            return publisher

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        try:
            publisher = await self._connected()
            async with asyncio.timeout(self.timeout_s):
                await publisher.publish_confirmed(topic, payload, retain=retain)
        except (MqttError, OSError, TimeoutError) as exc:
            self.close()
            raise DeliveryError(f"MQTT {self.broker}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None


class MqttChannel:
    """Publishes the event JSON on the site's alerts topic (route setting ``topic`` overrides it)."""

    def __init__(self, link: MqttLink) -> None:
        self.link = link

    async def send(self, route: Route, message: OutboxMessage, body: bytes) -> None:
        topic = route.settings.get("topic")
        if topic is None:
            try:
                topic = alerts_topic(str(orjson.loads(body)["site"]))
            except (KeyError, ContractError) as exc:
                raise DeliveryError(f"mqtt {route.name}: no valid site in the event", permanent=True) from exc
        await self.link.publish(str(topic), body)

    async def aclose(self) -> None:
        self.link.close()

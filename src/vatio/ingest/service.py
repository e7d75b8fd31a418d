"""`vatio ingest`: the broker consumer with reconnects around the pipeline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from vatio.contracts import PREFIX, TELEMETRY_SUBSCRIPTIONS
from vatio.ingest.mqtt import MqttError, MqttSubscriber
from vatio.transport import Backoff, BrokerUrl

log = logging.getLogger(__name__)

STATUS_SUBSCRIPTION = f"{PREFIX}/+/+/status"


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestOptions:
    """How the consumer joins the broker.

    ``instance`` must be stable across restarts of one process and distinct
    between processes: it names the persistent session that holds the
    messages while the process is down. ``group`` is the MQTT v5 shared
    subscription group the instances split the stream in.
    """

    group: str = "vatio-ingest"
    instance: str = "0"
    protocol: Literal[4, 5] = 5
    shared: bool = True
    qos: int = 1
    session_expiry_s: int = 7 * 24 * 3600
    status: bool = True

    @property
    def client_id(self) -> str:
        return f"{self.group}-{self.instance}"

    def subscriptions(self) -> list[str]:
        topics: list[str] = list(TELEMETRY_SUBSCRIPTIONS)
        if self.status:
            topics.append(STATUS_SUBSCRIPTION)
        if self.shared and self.protocol == 5:
            return [f"$share/{self.group}/{topic}" for topic in topics]
        return topics


class Consumer(Protocol):
    """A pipeline fed by :class:`IngestService`: ingest's, or detection's."""

    generation: int
    ack: Callable[[Iterable[tuple[int, int]]], object]
    pause: Callable[[], None]
    resume: Callable[[], None]

    def on_message(self, topic: str, payload: bytes, qos: int, packet_id: int) -> None: ...

    def on_connected(self) -> None: ...

    async def run(self) -> None: ...

    async def flush(self) -> None: ...


class IngestService:
    """Keeps one subscriber connected and feeding a consumer pipeline, forever."""

    def __init__(self, *, broker: BrokerUrl, pipeline: Consumer, options: IngestOptions) -> None:
        self.broker = broker
        self.pipeline = pipeline
        self.options = options
        self.connected = asyncio.Event()
        self.connections = 0

    async def run(self) -> None:
        """Run until cancelled; on cancellation the open batch is committed and acked."""
        # One TaskGroup: if the flusher dies, the consumer stops with it (and its
        # unacknowledged messages wait in the broker) instead of running on idle.
        async with asyncio.TaskGroup() as group:
            group.create_task(self.pipeline.run(), name="ingest-flusher")
            group.create_task(self._connect_forever(self.options.subscriptions()), name="ingest-mqtt")

    async def _connect_forever(self, subscriptions: Sequence[str]) -> None:
        backoff = Backoff()
        while True:
            subscriber = MqttSubscriber(
                host=self.broker.host,
                port=self.broker.port,
                ssl=self.broker.ssl_context(),
                username=self.broker.username,
                password=self.broker.password,
                client_id=self.options.client_id,
                subscriptions=subscriptions,
                qos=self.options.qos,
                protocol=self.options.protocol,
                session_expiry_s=self.options.session_expiry_s,
                on_message=self.pipeline.on_message,
            )
            # Set before connecting: a resumed session redelivers right after CONNACK.
            self.pipeline.generation = subscriber.generation
            self.pipeline.ack = subscriber.ack_tagged
            self.pipeline.pause = subscriber.pause_reading
            self.pipeline.resume = subscriber.resume_reading
            try:
                async with subscriber:
                    self.pipeline.on_connected()
                    self.connections += 1
                    self.connected.set()
                    backoff.reset()
                    log.info("ingest connected to %s as %s", self.broker, self.options.client_id)
                    try:
                        await subscriber.wait_closed()
                    except asyncio.CancelledError:
                        await self.pipeline.flush()
                        raise
            except (MqttError, OSError) as exc:
                self.connected.clear()
                delay = backoff.next()
                log.warning("ingest lost the broker (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)

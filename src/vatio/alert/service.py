"""`vatio alert`: the alerting stage alone (lifecycle engine, delivery worker, Home Assistant sync).

    vatio alert --db postgresql://... --broker mqtt://host:1883 [--routes routes.toml]

The engine, the delivery worker and the Home Assistant sync run as named
tasks of one TaskGroup; each logs and retries through store and broker
outages. Everything that must survive a crash is in the store (alerts,
audit, outbox), so a killed process resumes where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from vatio.alert.channels.base import Channel, DeliveryError
from vatio.alert.channels.email import EmailChannel
from vatio.alert.channels.homeassistant import HomeAssistantSync
from vatio.alert.channels.mqtt import MqttChannel, MqttLink
from vatio.alert.channels.webhook import WebhookChannel
from vatio.alert.lifecycle import AlertEngine
from vatio.alert.outbox import DeliveryOptions, DeliveryWorker
from vatio.alert.routes import AlertConfig, load_config
from vatio.store import Store, open_store
from vatio.transport import BrokerUrl

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertStageOptions:
    poll_s: float = 1.0
    home_assistant: bool = True
    ha_interval_s: float = 10.0
    client_id: str = "vatio-alert"
    #: 4 for MQTT 3.1.1-only brokers (the embedded one of ``vatio up``).
    protocol: Literal[4, 5] = 5
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)


class AlertStage:
    """Engine + delivery worker (+ Home Assistant sync when there is a broker) over one store."""

    def __init__(
        self,
        *,
        store: Store,
        broker: BrokerUrl | None,
        config: AlertConfig | None = None,
        options: AlertStageOptions | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.config = config or AlertConfig()
        self.options = options or AlertStageOptions()
        self.link = (
            MqttLink(broker, client_id=self.options.client_id, protocol=self.options.protocol) if broker else None
        )
        self.engine = AlertEngine(store=store, config=self.config)
        channels: dict[str, Channel] = {"webhook": WebhookChannel(), "email": EmailChannel()}
        if self.link is not None:
            channels["mqtt"] = MqttChannel(self.link)
        self.channels = channels
        self.worker = DeliveryWorker(store=store, config=self.config, channels=channels, options=self.options.delivery)
        self._deliver_now = asyncio.Event()
        self._notified = 0

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 on the shared link, for a co-located detector's anomaly events.

        Those events only wake consumers early (the store is the hand-off), so
        a broker outage is logged, not raised into the detector.
        """
        if self.link is None:
            return
        try:
            await self.link.publish(topic, payload)
        except DeliveryError as exc:
            log.warning("anomaly event on %s not published: %s", topic, exc)

    def _after_tick(self) -> None:
        # The worker is woken right after a tick that wrote notifications.
        if self.engine.counters.notifications != self._notified:
            self._notified = self.engine.counters.notifications
            self._deliver_now.set()

    async def run(self) -> None:
        """Run until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    self.engine.run(interval_s=self.options.poll_s, after_tick=self._after_tick), name="alert-engine"
                )
                group.create_task(self.worker.run(self._deliver_now), name="alert-delivery")
                if self.link is not None and self.options.home_assistant:
                    ha = HomeAssistantSync(store=self.store, link=self.link, interval_s=self.options.ha_interval_s)
                    group.create_task(ha.run(), name="alert-homeassistant")
        finally:
            for channel in self.channels.values():
                await channel.aclose()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vatio alert", description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database URL")
    parser.add_argument("--broker", required=True, help="mqtt://host:port (alert events, Home Assistant)")
    parser.add_argument("--routes", default=os.environ.get("VATIO_ROUTES"), help="routes TOML file")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between engine ticks")
    parser.add_argument("--client-id", default="vatio-alert")
    parser.add_argument("--lease", type=float, default=120.0, help="seconds a claimed message is hidden from others")
    parser.add_argument("--no-home-assistant", action="store_true", help="skip MQTT discovery")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


async def _serve(args: argparse.Namespace) -> None:
    config = load_config(args.routes)
    broker = BrokerUrl.parse(args.broker)
    store = open_store(args.db)
    await store.migrate()
    options = AlertStageOptions(
        poll_s=args.poll_interval,
        home_assistant=not args.no_home_assistant,
        client_id=args.client_id,
        delivery=DeliveryOptions(poll_s=args.poll_interval, lease_s=args.lease),
    )
    log.info("alert %s -> routes %s", broker, [r.name for r in config.routes])
    try:
        await AlertStage(store=store, broker=broker, config=config, options=options).run()
    finally:
        await store.close()


def main(argv: Sequence[str]) -> int:
    """Entry point of ``vatio alert`` (delegated by :mod:`vatio.cli`); VatioError → exit 2 there."""
    args = build_parser().parse_args(list(argv))
    if args.poll_interval <= 0 or args.lease <= 0:
        build_parser().error("--poll-interval and --lease must be > 0")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 130
    return 0

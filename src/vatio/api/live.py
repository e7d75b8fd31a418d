"""The live feed: one MQTT subscription per API process, fanned out to WebSocket clients by site.

:class:`LiveHub` subscribes ONCE to the telemetry of every site (all three
encodings) and to every site's alert events, and hands each message to the
clients watching its site. It never waits for a client: every client has a
bounded queue (:class:`LiveClient`) that drops its oldest messages when the
client reads too slowly and tells it so with a ``{"type": "lag"}`` note, so
one slow browser can neither slow the others nor make the subscriber fall
behind the broker.

Messages (JSON text frames)::

    {"type": "subscribed", "site": "home-1"}                     # first, once
    {"type": "reading", "site", "device", "ts", "power_w", "energy_wh"}
    {"type": "alert", ...the event as published on vatio/v1/{site}/alerts}
    {"type": "lag", "dropped": 12}                               # this client missed 12 messages

Readings are coalesced per device: the newest reading of a message, and at
most one per ``reading_interval_s`` per device (the newest one wins, it is
sent when the interval has passed). A reading older than one already sent is
dropped: store-and-forward backfill is history, not live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import orjson

from vatio.contracts import (
    PREFIX,
    TELEMETRY_SUBSCRIPTIONS,
    Limits,
    ParsedTopic,
    decode_telemetry,
    format_ts,
    parse_topic,
)
from vatio.errors import ContractError
from vatio.ingest.mqtt import MqttError, MqttSubscriber
from vatio.model import Reading
from vatio.transport import Backoff, BrokerUrl

log = logging.getLogger(__name__)

ALERTS_SUBSCRIPTION = f"{PREFIX}/+/alerts"
#: Readings per device reach clients at most this often (4 per second).
READING_INTERVAL_S = 0.25
#: Messages a client may have queued before its oldest are dropped.
CLIENT_QUEUE = 256


class LiveClient:
    """One WebSocket client's bounded queue of JSON messages.

    ``offer`` never blocks: when the queue is full the oldest message goes and
    is counted; ``get`` returns the next message, first a lag note if any were
    dropped since the last one.

    >>> client = LiveClient("home-1", capacity=2)
    >>> for n in range(5):
    ...     client.offer(str(n))
    >>> [client.get_nowait() for _ in range(3)]
    ['{"type":"lag","dropped":3}', '3', '4']
    >>> client.get_nowait() is None
    True
    """

    def __init__(self, site: str, *, capacity: int = CLIENT_QUEUE) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.site = site
        self.capacity = capacity
        self.delivered = 0
        self.dropped_total = 0
        self._queue: deque[str] = deque()
        self._dropped = 0  # since the last lag note
        self._ready = asyncio.Event()

    def offer(self, message: str) -> None:
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self._dropped += 1
            self.dropped_total += 1
        self._queue.append(message)
        self._ready.set()

    def get_nowait(self) -> str | None:
        if self._dropped:
            note = orjson.dumps({"type": "lag", "dropped": self._dropped}).decode()
            self._dropped = 0
            return note
        if self._queue:
            self.delivered += 1
            return self._queue.popleft()
        self._ready.clear()
        return None

    async def get(self) -> str:
        while (message := self.get_nowait()) is None:
            await self._ready.wait()
        return message


@dataclass(slots=True)
class _DeviceFeed:
    """Coalescing state of one device: what was sent last and what waits for its turn."""

    last_ts: datetime | None = None
    next_at: float = 0.0
    pending: Reading | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


@dataclass(slots=True)
class LiveCounters:
    messages: int = 0
    readings_sent: int = 0
    alerts_sent: int = 0
    rejected: int = 0
    connections: int = 0


class LiveHub:
    """Keeps one MQTT subscription and fans its messages out to :class:`LiveClient` s by site.

    ``protocol`` 4 (MQTT 3.1.1) for brokers that speak nothing newer (the
    embedded amqtt broker of ``vatio up``). The subscription is QoS 0 with a
    clean session: a live view wants the present, not a backlog after a
    reconnect. ``client_id`` must differ between API processes (each needs
    every message); the default is random.

    >>> hub = LiveHub(broker=BrokerUrl.parse("mqtt://127.0.0.1:1883"))
    >>> with hub.client("home-1") as client:
    ...     hub.on_message("vatio/v1/home-1/alerts", b'{"event":"anomaly_opened"}', 0, 0)
    ...     client.get_nowait()
    '{"type":"alert","event":"anomaly_opened","site":"home-1"}'
    """

    def __init__(
        self,
        *,
        broker: BrokerUrl,
        protocol: Literal[4, 5] = 5,
        client_id: str | None = None,
        capacity: int = CLIENT_QUEUE,
        reading_interval_s: float = READING_INTERVAL_S,
        limits: Limits | None = None,
    ) -> None:
        self.broker = broker
        self.protocol = protocol
        self.client_id = client_id or f"vatio-api-live-{secrets.token_hex(4)}"
        self.capacity = capacity
        self.reading_interval_s = reading_interval_s
        self.limits = limits or Limits()
        self.counters = LiveCounters()
        self.connected = asyncio.Event()
        self._clients: dict[str, set[LiveClient]] = {}
        self._feeds: dict[tuple[str, str], _DeviceFeed] = {}

    @contextlib.contextmanager
    def client(self, site: str) -> Iterator[LiveClient]:
        """Register a client of ``site`` for the duration of the ``with`` block."""
        client = LiveClient(site, capacity=self.capacity)
        self._clients.setdefault(site, set()).add(client)
        try:
            yield client
        finally:
            clients = self._clients.get(site)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._clients[site]
                    self._forget_site(site)

    def clients(self, site: str) -> int:
        return len(self._clients.get(site, ()))

    async def run(self) -> None:
        """Stay subscribed until cancelled, reconnecting with capped backoff."""
        backoff = Backoff()
        while True:
            subscriber = MqttSubscriber(
                host=self.broker.host, port=self.broker.port, ssl=self.broker.ssl_context(),
                username=self.broker.username, password=self.broker.password, client_id=self.client_id,
                subscriptions=[*TELEMETRY_SUBSCRIPTIONS, ALERTS_SUBSCRIPTION], on_message=self.on_message,
                qos=0, protocol=self.protocol, clean_start=True, session_expiry_s=0,
            )  # fmt: skip
            try:
                async with subscriber:
                    self.counters.connections += 1
                    self.connected.set()
                    backoff.reset()
                    log.info("live feed subscribed to %s as %s", self.broker, self.client_id)
                    await subscriber.wait_closed()
            except (MqttError, OSError) as exc:
                delay = backoff.next()
                log.warning("live feed lost the broker %s (%s); reconnecting in %.1fs", self.broker, exc, delay)
                self.connected.clear()
                await asyncio.sleep(delay)
            except Exception:  # a bug must not end the feed for the life of the process
                delay = backoff.next()
                log.exception("live feed failed; reconnecting in %.1fs", delay)
                self.connected.clear()
                await asyncio.sleep(delay)
            finally:
                self.connected.clear()

    def on_message(self, topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        """Route one PUBLISH; never raises (an exception would end the subscription)."""
        self.counters.messages += 1
        try:
            parsed = parse_topic(topic)
            if parsed.site not in self._clients:
                return  # nobody watches this site: not even worth decoding
            if parsed.kind == "alerts":
                self._on_alert(parsed.site, payload)
            elif parsed.kind == "telemetry":
                self._on_telemetry(parsed, payload)
        except (ContractError, ValueError) as exc:
            self.counters.rejected += 1
            log.debug("live feed ignores a message on %s: %s", topic, exc)
        except Exception:
            self.counters.rejected += 1
            log.exception("live feed: unexpected error on a message on %s", topic)

    def _on_alert(self, site: str, payload: bytes) -> None:
        event = orjson.loads(payload)
        if not isinstance(event, dict):
            raise ValueError("an alert event must be a JSON object")
        event.pop("type", None)
        event.setdefault("site", site)
        self._broadcast(site, orjson.dumps({"type": "alert", **event}).decode())
        self.counters.alerts_sent += 1

    def _on_telemetry(self, parsed: ParsedTopic, payload: bytes) -> None:
        batch = decode_telemetry(parsed, payload, limits=self.limits, now=datetime.now(UTC))
        if batch.readings:
            self._coalesce(parsed.site, batch.device, max(batch.readings, key=lambda r: r.ts))

    def _coalesce(self, site: str, device: str, reading: Reading) -> None:
        feed = self._feeds.get((site, device))
        if feed is None:
            feed = self._feeds[(site, device)] = _DeviceFeed()
        newest = feed.pending.ts if feed.pending is not None else feed.last_ts
        if newest is not None and reading.ts <= newest:
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= feed.next_at:
            self._send_reading(site, device, feed, reading)
            return
        if feed.pending is None:
            feed.timer = loop.call_at(feed.next_at, self._flush, site, device, feed)
        feed.pending = reading

    def _flush(self, site: str, device: str, feed: _DeviceFeed) -> None:
        reading, feed.pending, feed.timer = feed.pending, None, None
        if reading is not None:
            self._send_reading(site, device, feed, reading)

    def _send_reading(self, site: str, device: str, feed: _DeviceFeed, reading: Reading) -> None:
        feed.last_ts = reading.ts
        feed.next_at = asyncio.get_running_loop().time() + self.reading_interval_s
        message = {
            "type": "reading", "site": site, "device": device, "ts": format_ts(reading.ts),
            "power_w": reading.power_w, "energy_wh": reading.energy_wh,
        }  # fmt: skip
        self._broadcast(site, orjson.dumps(message).decode())
        self.counters.readings_sent += 1

    def _broadcast(self, site: str, message: str) -> None:
        for client in self._clients.get(site, ()):
            client.offer(message)

    def _forget_site(self, site: str) -> None:
        for key in [key for key in self._feeds if key[0] == site]:
            timer = self._feeds.pop(key).timer
            if timer is not None:
                timer.cancel()

"""Delivery through real receivers: a signature-checking webhook server, aiosmtpd with STARTTLS, mosquitto."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as paho
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from paho.mqtt.enums import CallbackAPIVersion

from vatio.alert.channels.email import EmailChannel
from vatio.alert.channels.homeassistant import HomeAssistantSync, discovery_configs
from vatio.alert.channels.mqtt import MqttChannel, MqttLink
from vatio.alert.channels.webhook import WebhookChannel, sign, verify_signature
from vatio.alert.lifecycle import AlertEngine
from vatio.alert.outbox import DeliveryOptions, DeliveryWorker
from vatio.alert.routes import parse_config
from vatio.model import Anomaly, Reading
from vatio.store import Store, write_all
from vatio.store.sqlite import SqliteStore
from vatio.testing import free_port
from vatio.transport import BrokerUrl

pytestmark = pytest.mark.integration

SECRET = "correct horse battery staple"


class WebhookReceiver:
    """A real HTTP receiver that does what the docs tell users to do: verify, then dedup by X-Vatio-Id."""

    def __init__(self, port: int, secret: str = SECRET) -> None:
        self.port, self.secret = port, secret
        self.requests = 0
        self.rejected: list[str] = []
        self.processed: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(receiver.receive(self.headers, body))
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def receive(self, headers: Any, body: bytes) -> int:
        self.requests += 1
        timestamp, signature = headers.get("X-Vatio-Timestamp", ""), headers.get("X-Vatio-Signature", "")
        message_id = headers.get("X-Vatio-Id", "")
        if not verify_signature(self.secret, timestamp, body, signature, message_id=message_id):
            self.rejected.append(message_id)
            return 401
        if message_id not in self._seen:  # a repeat of a processed message is acknowledged, not processed
            self._seen.add(message_id)
            self.processed.append(orjson.loads(body))
        return 204

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver(free_port())
    yield hook
    hook.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = SqliteStore(f"sqlite:///{tmp_path}/alerts.db")
    await store.migrate()
    await write_all(store, [Reading("plug-1", datetime.now(UTC), power_w=9120.0, energy_wh=1500.0)], "home-1")
    yield store
    await store.close()


async def raise_alert(store: Store, at: datetime, kind: str = "over_power") -> None:
    await store.record_anomaly(
        Anomaly(device_id="plug-1", kind=kind, detector="edge", start=at, last=at, score=4.0,
                explanation="over_power: observed 9120 W vs limit 7360 W")
    )  # fmt: skip


def webhook_config(url: str, secret: str = SECRET) -> Any:
    return parse_config(
        {
            "defaults": False,
            "routes": [{"name": "hook", "site": "*", "channel": "webhook", "url": url, "secret": secret}],
        }
    )


async def test_webhook_is_signed_and_the_receiver_rejects_replays_and_wrong_secrets(
    store: Store, receiver: WebhookReceiver
) -> None:
    receiver.start()
    clock = Clock()
    config = webhook_config(receiver.url)
    channel = WebhookChannel()
    worker = DeliveryWorker(store=store, config=config, channels={"webhook": channel}, clock=clock)
    await raise_alert(store, clock.now)
    await AlertEngine(store=store, config=config, clock=clock).tick()
    assert await worker.run_once() == 1
    assert [(e["event"], e["v"], e["device"], e["severity"]) for e in receiver.processed] == [
        ("alert_firing", 1, "plug-1", "critical")
    ]
    assert "9120 W" in receiver.processed[0]["explanation"]
    [message] = await store.outbox_messages()
    assert message.delivered_at is not None
    assert receiver.processed[0]["message_id"] == message.id
    # The same body replayed ten minutes later, correctly signed for that old timestamp: rejected.
    body = orjson.dumps(receiver.processed[0])
    old = int(time.time()) - 600
    replay = {"X-Vatio-Id": "replay", "X-Vatio-Timestamp": str(old), "X-Vatio-Signature": sign(SECRET, old, body)}
    forged = {"X-Vatio-Id": "forged", "X-Vatio-Timestamp": str(int(time.time()))}
    forged["X-Vatio-Signature"] = sign("wrong secret", forged["X-Vatio-Timestamp"], body)
    async with httpx.AsyncClient() as client:
        assert (await client.post(receiver.url, content=body, headers=replay)).status_code == 401
        assert (await client.post(receiver.url, content=body, headers=forged)).status_code == 401
    assert receiver.rejected == ["replay", "forged"]
    await channel.aclose()


async def test_a_replay_within_the_tolerance_under_a_new_id_is_rejected(
    store: Store, receiver: WebhookReceiver
) -> None:
    receiver.start()
    clock = Clock()
    config = webhook_config(receiver.url)
    channel = WebhookChannel()
    worker = DeliveryWorker(store=store, config=config, channels={"webhook": channel}, clock=clock)
    await raise_alert(store, clock.now)
    await AlertEngine(store=store, config=config, clock=clock).tick()
    assert await worker.run_once() == 1
    # Captured and replayed at once, validly signed, but with a fresh (unsigned) X-Vatio-Id header.
    body = orjson.dumps(receiver.processed[0])
    now = int(time.time())
    replay = {"X-Vatio-Id": "fresh-id", "X-Vatio-Timestamp": str(now), "X-Vatio-Signature": sign(SECRET, now, body)}
    async with httpx.AsyncClient() as client:
        assert (await client.post(receiver.url, content=body, headers=replay)).status_code == 401
    assert len(receiver.processed) == 1
    await channel.aclose()


@pytest.mark.parametrize("signature", ["sha256=\u00e9t\u00e9", None, 42])
def test_verify_signature_says_false_to_malformed_signatures(signature: Any) -> None:
    now = int(time.time())
    assert verify_signature(SECRET, now, b"{}", signature) is False
    assert verify_signature(SECRET, "inf", b"{}", sign(SECRET, now, b"{}")) is False
    assert verify_signature(SECRET, float("inf"), b"{}", sign(SECRET, now, b"{}")) is False  # type: ignore[arg-type]


async def test_a_route_with_the_wrong_secret_fails_permanently(store: Store, receiver: WebhookReceiver) -> None:
    receiver.start()
    clock = Clock()
    config = webhook_config(receiver.url, secret="not the receiver's")
    channel = WebhookChannel()
    worker = DeliveryWorker(store=store, config=config, channels={"webhook": channel}, clock=clock)
    await raise_alert(store, clock.now)
    await AlertEngine(store=store, config=config, clock=clock).tick()
    await worker.run_once()
    [message] = await store.outbox_messages()
    assert (message.failed_at, message.last_error) == (clock.now, "webhook hook: HTTP 401")
    assert receiver.processed == []
    assert worker.counters.failed == 1
    await channel.aclose()


async def test_receiver_down_then_back_gets_the_alert_exactly_once(store: Store, receiver: WebhookReceiver) -> None:
    clock = Clock()
    config = webhook_config(receiver.url)
    channel = WebhookChannel()
    options = DeliveryOptions(retry_initial_s=10.0, retry_cap_s=60.0)
    worker = DeliveryWorker(store=store, config=config, channels={"webhook": channel}, clock=clock, options=options)
    await raise_alert(store, clock.now)
    await AlertEngine(store=store, config=config, clock=clock).tick()
    await worker.run_once()  # nobody listens: connection refused
    [message] = await store.outbox_messages()
    assert message.attempts == 1
    assert message.delivered_at is None
    assert message.failed_at is None
    assert timedelta(seconds=5) <= message.next_attempt_at - clock.now <= timedelta(seconds=10)  # jittered backoff
    receiver.start()
    assert await worker.run_once() == 0  # not due yet
    clock.now += timedelta(seconds=11)
    assert await worker.run_once() == 1
    clock.now += timedelta(hours=1)
    assert await worker.run_once() == 0
    assert len(receiver.processed) == 1
    assert receiver.requests == 1
    [message] = await store.outbox_messages()
    assert message.delivered_at is not None
    assert message.attempts == 2
    await channel.aclose()


async def test_a_resend_after_a_crash_is_dropped_by_the_receiver(store: Store, receiver: WebhookReceiver) -> None:
    receiver.start()
    clock = Clock()
    config = webhook_config(receiver.url)
    channel = WebhookChannel()
    await raise_alert(store, clock.now)
    await AlertEngine(store=store, config=config, clock=clock).tick()
    # A worker claims and sends, then "crashes" before marking the message delivered.
    [claimed] = await store.claim_outbox(now=clock.now, lease_until=clock.now + timedelta(seconds=60))
    route = config.route("hook")
    assert route is not None
    from vatio.alert.events import render

    await channel.send(route, claimed, render(claimed))
    clock.now += timedelta(seconds=61)  # the lease runs out: another worker sends it again
    worker = DeliveryWorker(store=store, config=config, channels={"webhook": channel}, clock=clock)
    assert await worker.run_once() == 1
    assert receiver.requests == 2
    assert len(receiver.processed) == 1
    await channel.aclose()


class SlowChannel:
    """A channel whose every send takes longer than a whole lease (on the test's clock)."""

    def __init__(self, clock: Clock, takes: timedelta) -> None:
        self.clock, self.takes = clock, takes
        self.sent: list[str] = []

    async def send(self, route: Any, message: Any, body: bytes) -> None:
        self.sent.append(message.id)
        self.clock.now += self.takes

    async def aclose(self) -> None:
        pass


async def test_a_worker_does_not_send_messages_whose_lease_ran_out_meanwhile(store: Store) -> None:
    clock = Clock()
    config = webhook_config("http://127.0.0.1:9/unused")
    options = DeliveryOptions(lease_s=60.0)
    slow = SlowChannel(clock, timedelta(seconds=61))
    await raise_alert(store, clock.now, kind="over_power")
    await raise_alert(store, clock.now, kind="counter_reset")
    await AlertEngine(store=store, config=config, clock=clock).tick()
    first = DeliveryWorker(store=store, config=config, channels={"webhook": slow}, clock=clock, options=options)
    assert await first.run_once() == 2
    # The first send ate the lease: the second message is up for grabs again, and only the next claimer sends it.
    assert len(slow.sent) == 1
    second = DeliveryWorker(store=store, config=config, channels={"webhook": slow}, clock=clock, options=options)
    assert await second.run_once() == 1
    assert len(slow.sent) == len(set(slow.sent)) == 2
    assert all(m.delivered_at is not None for m in await store.outbox_messages())


# -- email --------------------------------------------------------------------------------
class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[int, Inbox, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    yield port, inbox, ca_file
    controller.stop()


async def test_email_over_starttls(store: Store, smtp_server: tuple[int, Inbox, Path]) -> None:
    port, inbox, ca_file = smtp_server
    mail = {"channel": "email", "site": "*", "host": "127.0.0.1", "port": port, "sender": "vatio@example.org",
            "to": ["ana@example.org"], "ca_file": str(ca_file)}  # fmt: skip
    config = parse_config(
        {"defaults": False, "routes": [{"name": "mail", **mail}, {"name": "clear", **mail, "starttls": False}]}
    )
    clock = Clock()
    worker = DeliveryWorker(store=store, config=config, channels={"email": EmailChannel()}, clock=clock)
    await raise_alert(store, clock.now)
    await AlertEngine(store=store, config=config, clock=clock).tick()
    await worker.run_once()
    [received] = [message_from_bytes(m) for m in inbox.messages]
    rows = {m.route: m for m in await store.outbox_messages()}
    assert received["Subject"] == "[Vatio critical] Over power on plug-1: firing"
    assert received["X-Vatio-Id"] == rows["mail"].id
    assert received["To"] == "ana@example.org"
    assert rows["mail"].delivered_at is not None
    # The server insists on STARTTLS: the route that would send in clear is refused for good (SMTP 530).
    assert rows["clear"].failed_at is not None
    assert "530" in (rows["clear"].last_error or "")


# -- MQTT and Home Assistant ------------------------------------------------------------------
class Subscriber:
    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{free_port()}")
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, m: self.messages.append(m)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    async def wait_for(self, count: int) -> list[paho.MQTTMessage]:
        for _ in range(100):
            if len(self.messages) >= count:
                break
            await asyncio.sleep(0.05)
        return list(self.messages)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_mqtt_alert_event_at_qos1(store: Store, broker_port: int) -> None:
    subscriber = Subscriber(broker_port, ["vatio/v1/+/alerts"])
    link = MqttLink(BrokerUrl.parse(f"mqtt://127.0.0.1:{broker_port}"), client_id="test-alert")
    clock = Clock()
    config = parse_config({})  # the defaults: the mqtt route for every site
    worker = DeliveryWorker(store=store, config=config, channels={"mqtt": MqttChannel(link)}, clock=clock)
    await raise_alert(store, clock.now)
    engine = AlertEngine(store=store, config=config, clock=clock)
    await engine.tick()
    alert = (await store.alerts())[0]
    await worker.run_once()
    await engine.acknowledge(alert.id or 0, by="ana", note="kettle")
    await worker.run_once()
    messages = await subscriber.wait_for(2)
    subscriber.stop()
    link.close()
    assert [(m.topic, m.qos) for m in messages] == [("vatio/v1/home-1/alerts", 1)] * 2
    events = [orjson.loads(m.payload) for m in messages]
    assert [(e["v"], e["event"], e["state"]) for e in events] == [
        (1, "alert_firing", "firing"), (1, "alert_acknowledged", "acknowledged")
    ]  # fmt: skip
    assert events[1]["acknowledged_by"] == "ana"
    assert events[1]["note"] == "kettle"
    assert events[0]["explanation"]


async def test_home_assistant_discovery_is_retained_and_well_formed(store: Store, broker_port: int) -> None:
    link = MqttLink(BrokerUrl.parse(f"mqtt://127.0.0.1:{broker_port}"), client_id="test-ha")
    sync = HomeAssistantSync(store=store, link=link)
    assert await sync.sync_once() == 4  # three configs and the state
    await raise_alert(store, datetime.now(UTC))
    await AlertEngine(store=store, config=parse_config({})).tick()
    assert await sync.sync_once() == 1  # only the state changed
    assert await sync.sync_once() == 0
    link.close()
    # A subscriber arriving later gets everything from the broker's retained store.
    subscriber = Subscriber(broker_port, ["homeassistant/#", "vatio/ha/#"])
    messages = {m.topic: m for m in await subscriber.wait_for(4)}
    subscriber.stop()
    assert all(m.retain for m in messages.values())
    expected = discovery_configs("home-1", "plug-1")
    for topic in expected:
        assert orjson.loads(messages[topic].payload) == expected[topic]
    anomaly = orjson.loads(messages["homeassistant/binary_sensor/vatio_plug-1/anomaly/config"].payload)
    power = orjson.loads(messages["homeassistant/sensor/vatio_plug-1/power/config"].payload)
    energy = orjson.loads(messages["homeassistant/sensor/vatio_plug-1/energy/config"].payload)
    assert anomaly["device_class"] == "problem"
    assert anomaly["availability_topic"] == "vatio/v1/home-1/plug-1/status"
    assert (power["device_class"], power["unit_of_measurement"], power["state_class"]) == ("power", "W", "measurement")
    assert (energy["device_class"], energy["unit_of_measurement"], energy["state_class"]) == (
        "energy", "kWh", "total_increasing"
    )  # fmt: skip
    assert len({anomaly["unique_id"], power["unique_id"], energy["unique_id"]}) == 3
    assert anomaly["device"]["identifiers"] == power["device"]["identifiers"] == ["vatio_plug-1"]
    state = orjson.loads(messages["vatio/ha/home-1/plug-1/state"].payload)
    assert state == {"power_w": 9120.0, "energy_kwh": 1.5, "anomaly": "ON"}


async def test_an_unexpected_channel_fault_is_recorded_and_retried_not_reclaimed_forever(store: Store) -> None:
    clock = Clock()
    config = webhook_config("http://[::1")  # no closing bracket: httpx refuses the URL itself
    channel = WebhookChannel()
    options = DeliveryOptions(retry_initial_s=10.0, retry_cap_s=60.0, max_attempts=2)
    worker = DeliveryWorker(store=store, config=config, channels={"webhook": channel}, clock=clock, options=options)
    await raise_alert(store, clock.now)
    await AlertEngine(store=store, config=config, clock=clock).tick()
    await worker.run_once()
    [message] = await store.outbox_messages()
    assert message.attempts == 1
    assert message.last_error is not None
    assert "webhook" in message.last_error
    assert message.next_attempt_at - clock.now >= timedelta(seconds=5)  # backed off, not due at the next lease
    clock.now += timedelta(minutes=5)
    await worker.run_once()
    [message] = await store.outbox_messages()
    assert message.failed_at == clock.now  # given up after max_attempts
    assert worker.counters.failed == 1
    await channel.aclose()


async def test_a_retried_firing_is_not_overtaken_by_its_resolved(store: Store, receiver: WebhookReceiver) -> None:
    clock = Clock()
    config = webhook_config(receiver.url)
    channel = WebhookChannel()
    options = DeliveryOptions(retry_initial_s=10.0, retry_cap_s=60.0)
    worker = DeliveryWorker(store=store, config=config, channels={"webhook": channel}, clock=clock, options=options)
    engine = AlertEngine(store=store, config=config, clock=clock)
    await raise_alert(store, clock.now)
    await engine.tick()
    await worker.run_once()  # receiver down: alert_firing waits for its retry
    [alert] = await store.alerts()
    await engine.resolve(alert.id or 0, by="ana", note="fuse replaced")
    receiver.start()
    assert await worker.run_once() == 0  # alert_resolved is due, but its alert_firing is still on its way
    clock.now += timedelta(seconds=11)
    while await worker.run_once():
        pass
    assert [m["event"] for m in receiver.processed] == ["alert_firing", "alert_resolved"]
    await channel.aclose()

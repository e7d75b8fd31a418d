"""Per-household routing (``vatio.alert.routes``) end to end, on both store backends.

Episodes go through the real engine, outbox and delivery worker to real receivers: one
signature-checking webhook server per household, and mosquitto for the default MQTT route.
Every test says which receiver must get which alerts *and* that the others get none of them,
so a router that sent every alert everywhere (or dropped the filter) fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_alert_delivery import SECRET, Subscriber, WebhookReceiver

from vatio.alert.channels.base import Channel
from vatio.alert.channels.mqtt import MqttChannel, MqttLink
from vatio.alert.channels.webhook import WebhookChannel
from vatio.alert.lifecycle import UNKNOWN_SITE, AlertEngine
from vatio.alert.outbox import DeliveryWorker
from vatio.alert.routes import AlertConfig, load_config, parse_config
from vatio.errors import ConfigError
from vatio.model import Alert, Anomaly, Reading, Severity
from vatio.store import Store, write_all
from vatio.testing import free_port
from vatio.transport import BrokerUrl

pytestmark = pytest.mark.integration

SITE_A, SITE_B = "home-a", "home-b"
#: Kinds whose default severity is info, warning and critical (scores stay below escalation).
KIND_OF = {Severity.INFO: "night_use", Severity.WARNING: "gap", Severity.CRITICAL: "over_power"}


@pytest.fixture
def hooks() -> Iterator[tuple[WebhookReceiver, WebhookReceiver]]:
    """Two real webhook receivers, started: one per household (or per route)."""
    first, second = WebhookReceiver(free_port()), WebhookReceiver(free_port())
    first.start()
    second.start()
    yield first, second
    first.stop()
    second.stop()


def hook(name: str, site: str, receiver: WebhookReceiver, **extra: Any) -> dict[str, Any]:
    return {"name": name, "site": site, "channel": "webhook", "url": receiver.url, "secret": SECRET, **extra}


def config_of(*routes: dict[str, Any], defaults: bool = False) -> AlertConfig:
    # pending_for = 0: info and warning alerts fire at once, like critical ones, so one tick notifies.
    return parse_config({"defaults": defaults, "rules": {"pending_for": 0}, "routes": list(routes)})


async def register(store: Store, site: str, *devices: str) -> None:
    now = datetime.now(UTC)
    await write_all(store, [Reading(device, now, power_w=100.0) for device in devices], site)


async def raise_alerts(store: Store, config: AlertConfig, *episodes: tuple[str, str]) -> dict[int, Alert]:
    """Record ``(device, kind)`` episodes and tick the engine once: the alerts it raised, by id."""
    now = datetime.now(UTC).replace(microsecond=0)
    for device, kind in episodes:
        await store.record_anomaly(
            Anomaly(device_id=device, kind=kind, detector="edge", start=now, last=now, score=2.0, explanation=kind)
        )
    await AlertEngine(store=store, config=config).tick()
    alerts = {alert.id or 0: alert for alert in await store.alerts()}
    assert len(alerts) == len(episodes)
    assert {(a.device_id, a.kind) for a in alerts.values()} == set(episodes)
    return alerts


async def deliver(store: Store, config: AlertConfig, channels: Mapping[str, Channel] | None = None) -> None:
    """Run the delivery worker until the outbox is drained; every message must have been delivered."""
    webhook = WebhookChannel()
    worker = DeliveryWorker(store=store, config=config, channels=channels or {"webhook": webhook})
    try:
        while await worker.run_once():
            pass
    finally:
        await webhook.aclose()
    undelivered = [(m.route, m.last_error) for m in await store.outbox_messages() if m.delivered_at is None]
    assert undelivered == []


def received(receiver: WebhookReceiver) -> list[tuple[int, str, str]]:
    """``(alert id, site, event)`` of everything the receiver accepted, sorted."""
    assert receiver.rejected == []
    return sorted((body["id"], body["site"], body["event"]) for body in receiver.processed)


def fired(alerts: Mapping[int, Alert], *, site: str | None = None, at_least: Severity = Severity.INFO) -> list[Any]:
    return sorted(
        (alert_id, a.site_id, "alert_firing")
        for alert_id, a in alerts.items()
        if (site is None or a.site_id == site) and a.severity.rank >= at_least.rank
    )


async def routes_of(store: Store) -> dict[int, set[str]]:
    """Which routes the outbox addressed, per alert."""
    by_alert: dict[int, set[str]] = {}
    for message in await store.outbox_messages():
        by_alert.setdefault(message.alert_id, set()).add(message.route)
    return by_alert


# -- (1) one household's alerts reach only that household ---------------------------------------
async def test_each_site_route_gets_only_its_own_sites_alerts(
    store: Store, hooks: tuple[WebhookReceiver, WebhookReceiver]
) -> None:
    hook_a, hook_b = hooks
    await register(store, SITE_A, "plug-a1", "plug-a2")
    await register(store, SITE_B, "plug-b1")
    config = config_of(hook("family-a", SITE_A, hook_a), hook("family-b", SITE_B, hook_b))
    alerts = await raise_alerts(store, config, ("plug-a1", "over_power"), ("plug-a2", "gap"), ("plug-b1", "over_power"))
    await deliver(store, config)

    expected_a, expected_b = fired(alerts, site=SITE_A), fired(alerts, site=SITE_B)
    assert [site for _, site, _ in expected_a] == [SITE_A, SITE_A]
    assert [site for _, site, _ in expected_b] == [SITE_B]
    assert received(hook_a) == expected_a
    assert received(hook_b) == expected_b
    assert hook_a.requests == 2  # nothing of B's was even sent to A, and the reverse
    assert hook_b.requests == 1
    routes = await routes_of(store)
    assert {alert_id: routes[alert_id] for alert_id, _, _ in expected_a} == {i: {"family-a"} for i, *_ in expected_a}
    assert {alert_id: routes[alert_id] for alert_id, _, _ in expected_b} == {i: {"family-b"} for i, *_ in expected_b}

    # Later transitions follow the same route: acknowledging B's alert notifies B alone.
    [(b_alert, _, _)] = expected_b
    await AlertEngine(store=store, config=config).acknowledge(b_alert, by="bea")
    await deliver(store, config)
    assert received(hook_a) == expected_a
    assert received(hook_b) == sorted([*expected_b, (b_alert, SITE_B, "alert_acknowledged")])


# -- (2) min_severity -----------------------------------------------------------------------------
@pytest.mark.parametrize("min_severity", list(Severity))
async def test_min_severity_filters_below_and_delivers_at_or_above(
    store: Store, hooks: tuple[WebhookReceiver, WebhookReceiver], min_severity: Severity
) -> None:
    filtered, unfiltered = hooks
    await register(store, SITE_A, "plug-info", "plug-warning", "plug-critical")
    config = config_of(
        hook("filtered", SITE_A, filtered, min_severity=min_severity.value), hook("everything", SITE_A, unfiltered)
    )
    route = config.route("filtered")
    assert route is not None
    assert route.min_severity is min_severity
    alerts = await raise_alerts(
        store, config, *((f"plug-{severity.value}", KIND_OF[severity]) for severity in Severity)
    )
    assert sorted(a.severity for a in alerts.values()) == sorted(Severity)  # one alert of each severity
    await deliver(store, config)

    wanted = fired(alerts, at_least=min_severity)
    assert received(filtered) == wanted
    assert {alerts[i].severity for i, _, _ in wanted} == {s for s in Severity if s.rank >= min_severity.rank}
    assert received(unfiltered) == fired(alerts)  # the route without a filter gets every severity
    assert len(received(unfiltered)) == 3


async def test_min_severity_above_the_alert_skips_only_that_route(
    store: Store, hooks: tuple[WebhookReceiver, WebhookReceiver]
) -> None:
    critical_only, unfiltered = hooks
    await register(store, SITE_A, "plug-a1")
    config = config_of(
        hook("pager", SITE_A, critical_only, min_severity="critical"), hook("family", SITE_A, unfiltered)
    )
    [(warning_id, warning)] = (await raise_alerts(store, config, ("plug-a1", "gap"))).items()
    assert warning.severity is Severity.WARNING
    await deliver(store, config)
    assert received(critical_only) == []
    assert critical_only.requests == 0
    assert received(unfiltered) == [(warning_id, SITE_A, "alert_firing")]
    assert await routes_of(store) == {warning_id: {"family"}}  # no outbox row at all for the filtered route


# -- (3) catch-all, unknown sites, the default MQTT route, the routes file ------------------------
async def test_a_catch_all_route_gets_every_site_and_an_unknown_device_only_reaches_it(
    store: Store, hooks: tuple[WebhookReceiver, WebhookReceiver]
) -> None:
    site_a_only, catch_all = hooks
    await register(store, SITE_A, "plug-a1")
    await register(store, SITE_B, "plug-b1")
    config = config_of(hook("family-a", SITE_A, site_a_only), hook("installer", "*", catch_all))
    # plug-ghost never sent a reading: the engine does not know its site and files it under "unknown".
    alerts = await raise_alerts(
        store, config, ("plug-a1", "over_power"), ("plug-b1", "over_power"), ("plug-ghost", "over_power")
    )
    assert sorted(a.site_id for a in alerts.values()) == sorted([SITE_A, SITE_B, UNKNOWN_SITE])
    await deliver(store, config)

    assert received(site_a_only) == fired(alerts, site=SITE_A)
    assert len(received(site_a_only)) == 1
    assert received(catch_all) == fired(alerts)
    assert {site for _, site, _ in received(catch_all)} == {SITE_A, SITE_B, UNKNOWN_SITE}


async def test_without_a_matching_route_an_alert_is_recorded_but_not_sent(
    store: Store, hooks: tuple[WebhookReceiver, WebhookReceiver]
) -> None:
    hook_a, hook_b = hooks
    await register(store, SITE_A, "plug-a1")
    await register(store, "home-c", "plug-c1")
    config = config_of(hook("family-a", SITE_A, hook_a), hook("family-b", SITE_B, hook_b))
    alerts = await raise_alerts(store, config, ("plug-c1", "over_power"))
    [c_alert] = alerts.values()
    assert c_alert.site_id == "home-c"
    await deliver(store, config)
    assert await store.outbox_messages() == []
    assert (hook_a.requests, hook_b.requests) == (0, 0)


async def test_the_default_mqtt_route_publishes_every_site_on_its_own_topic(
    store: Store, hooks: tuple[WebhookReceiver, WebhookReceiver], broker_port: int
) -> None:
    hook_a, _ = hooks
    await register(store, SITE_A, "plug-a1")
    await register(store, SITE_B, "plug-b1")
    config = config_of(hook("family-a", SITE_A, hook_a), defaults=True)
    assert [(r.name, r.site, r.channel) for r in config.routes] == [
        ("family-a", SITE_A, "webhook"), ("mqtt", "*", "mqtt")
    ]  # fmt: skip
    alerts = await raise_alerts(store, config, ("plug-a1", "over_power"), ("plug-b1", "over_power"))
    by_site = {a.site_id: alert_id for alert_id, a in alerts.items()}
    assert await routes_of(store) == {by_site[SITE_A]: {"family-a", "mqtt"}, by_site[SITE_B]: {"mqtt"}}

    subscriber = Subscriber(broker_port, ["vatio/v1/+/alerts"])
    link = MqttLink(BrokerUrl.parse(f"mqtt://127.0.0.1:{broker_port}"), client_id=f"test-routing-{free_port()}")
    webhook = WebhookChannel()
    try:
        await deliver(store, config, {"webhook": webhook, "mqtt": MqttChannel(link)})
        messages = await subscriber.wait_for(2)
    finally:
        subscriber.stop()
        link.close()
        await webhook.aclose()
    published = sorted((m.topic, orjson.loads(m.payload)["id"], orjson.loads(m.payload)["site"]) for m in messages)
    assert published == sorted(
        [(f"vatio/v1/{SITE_A}/alerts", by_site[SITE_A], SITE_A), (f"vatio/v1/{SITE_B}/alerts", by_site[SITE_B], SITE_B)]
    )
    assert received(hook_a) == fired(alerts, site=SITE_A)


async def test_defaults_false_leaves_out_the_mqtt_route(store: Store) -> None:
    await register(store, SITE_A, "plug-a1")
    assert [r.name for r in AlertConfig().routes_for(SITE_A, Severity.INFO)] == ["mqtt"]
    assert [r.name for r in parse_config({}).routes_for("anywhere", Severity.INFO)] == ["mqtt"]
    config = config_of(defaults=False)
    assert config.routes == ()
    await raise_alerts(store, config, ("plug-a1", "over_power"))
    assert await store.outbox_messages() == []


def test_the_documented_routes_file_loads(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(
        "[rules]\npending_for = 60\ncooldown = 1800\nresolve_hold = 300\n\n"
        '[quiet_hours."*"]\nstart = "22:00"\nend = "07:00"\ntz = "Europe/Madrid"\n\n'
        '[[routes]]\nname = "family-webhook"\nsite = "home-1"\nchannel = "webhook"\nmin_severity = "warning"\n'
        'url = "https://example.org/hook"\nsecret = "a long random string"\n'
    )
    config = load_config(routes)
    family = config.route("family-webhook")
    assert family is not None
    assert (family.site, family.channel, family.min_severity) == ("home-1", "webhook", Severity.WARNING)
    assert dict(family.settings) == {"url": "https://example.org/hook", "secret": "a long random string"}
    assert [r.name for r in config.routes_for("home-1", Severity.INFO)] == ["mqtt"]
    assert [r.name for r in config.routes_for("home-1", Severity.WARNING)] == ["family-webhook", "mqtt"]
    assert [r.name for r in config.routes_for("home-2", Severity.CRITICAL)] == ["mqtt"]


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([{"name": "x", "channel": "webhook", "url": "u", "secret": "s", "min_severity": "urgent"}], "min_severity"),
        ([{"name": "x", "channel": "webhook", "url": "u", "secret": "s", "min_severity": "WARNING"}], "min_severity"),
        ([{"name": "x", "channel": "webhook", "url": "u"}], "needs secret"),
        ([{"name": "x", "channel": "sms"}], "channel must be one of"),
        ([{"name": "x", "channel": "mqtt"}, {"name": "x", "channel": "mqtt", "site": "home-1"}], "unique"),
    ],
)
def test_invalid_routes_are_refused(routes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"routes": routes})

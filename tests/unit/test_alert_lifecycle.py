"""The alert lifecycle against an embedded SQLite store, time stepped by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import orjson
import pytest

from vatio.alert.lifecycle import AlertEngine
from vatio.alert.routes import AlertConfig
from vatio.alert.rules import AlertRules, QuietHours
from vatio.errors import ConflictError
from vatio.model import Alert, AlertState, Anomaly, Mute, Severity
from vatio.store import Store, write_all
from vatio.store.sqlite import SqliteStore

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def step(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = SqliteStore(f"sqlite:///{tmp_path}/alerts.db")
    await store.migrate()
    from vatio.model import Reading

    await write_all(store, [Reading("plug-1", T0 - timedelta(hours=1), power_w=10.0)], "home-1")
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def engine(store: Store, clock: Clock, **rules: object) -> AlertEngine:
    return AlertEngine(store=store, config=AlertConfig(rules=AlertRules(**rules)), clock=clock)  # type: ignore[arg-type]


async def open_episode(store: Store, at: datetime, kind: str = "gap", score: float = 2.0) -> Anomaly:
    stored, _ = await store.record_anomaly(
        Anomaly(device_id="plug-1", kind=kind, detector="edge", start=at, last=at, score=score, explanation="why")
    )
    return stored


async def only_alert(store: Store) -> Alert:
    alerts = await store.alerts()
    assert len(alerts) == 1, alerts
    return alerts[0]


async def events(store: Store) -> list[str]:
    return [orjson.loads(m.payload)["event"] for m in await store.outbox_messages()]


async def test_pending_firing_acknowledged_resolved(store: Store, clock: Clock) -> None:
    eng = engine(store, clock)
    await open_episode(store, clock.now)
    await eng.tick()
    assert (await only_alert(store)).state is AlertState.PENDING
    assert await events(store) == []
    clock.step(30)
    await eng.tick()
    assert (await only_alert(store)).state is AlertState.PENDING
    clock.step(31)
    await eng.tick()
    alert = await only_alert(store)
    assert (alert.state, alert.severity, alert.site_id) == (AlertState.FIRING, Severity.WARNING, "home-1")
    assert await events(store) == ["alert_firing"]
    assert alert.id is not None
    acked = await eng.acknowledge(alert.id, by="ana", note="on it")
    assert (acked.state, acked.acknowledged_by) == (AlertState.ACKNOWLEDGED, "ana")
    with pytest.raises(ConflictError):
        await eng.acknowledge(alert.id, by="ana")
    # Acknowledged stays acknowledged while the episode goes on.
    clock.step(600)
    await eng.tick()
    assert (await only_alert(store)).state is AlertState.ACKNOWLEDGED
    await eng.resolve(alert.id, by="ana")
    with pytest.raises(ConflictError):
        await eng.resolve(alert.id, by="ana")
    assert await events(store) == ["alert_firing", "alert_acknowledged", "alert_resolved"]
    audit = await store.alert_audit(alert.id)
    assert [(a.actor, a.from_state, a.to_state) for a in audit] == [
        ("system", None, AlertState.PENDING),
        ("system", AlertState.PENDING, AlertState.FIRING),
        ("ana", AlertState.FIRING, AlertState.ACKNOWLEDGED),
        ("ana", AlertState.ACKNOWLEDGED, AlertState.RESOLVED),
    ]
    assert "on it" in audit[2].reason
    assert "lasted 60s" in audit[1].reason


async def test_critical_fires_at_once(store: Store, clock: Clock) -> None:
    await open_episode(store, clock.now, kind="over_power")
    await engine(store, clock).tick()
    alert = await only_alert(store)
    assert (alert.state, alert.severity) == (AlertState.FIRING, Severity.CRITICAL)
    assert await events(store) == ["alert_firing"]


async def test_short_blip_resolves_without_a_notification(store: Store, clock: Clock) -> None:
    eng = engine(store, clock)
    await open_episode(store, clock.now)
    await eng.tick()
    await store.close_anomaly("plug-1", "gap", at=clock.step(10))
    clock.step(400)
    await eng.tick()
    assert (await only_alert(store)).state is AlertState.RESOLVED
    assert await events(store) == []


async def test_hysteresis_holds_the_resolve_and_dedups_a_returning_episode(store: Store, clock: Clock) -> None:
    eng = engine(store, clock)
    await open_episode(store, clock.now, kind="over_power")
    await eng.tick()
    await store.close_anomaly("plug-1", "over_power", at=clock.step(5))
    clock.step(120)  # within the 300 s hold: still firing
    await eng.tick()
    assert (await only_alert(store)).state is AlertState.FIRING
    second = await open_episode(store, clock.step(10), kind="over_power")
    await eng.tick()
    alert = await only_alert(store)
    assert (alert.state, alert.anomaly_id) == (AlertState.FIRING, second.id)
    await store.close_anomaly("plug-1", "over_power", at=clock.step(5))
    clock.step(299)
    await eng.tick()
    assert (await only_alert(store)).state is AlertState.FIRING
    clock.step(2)
    await eng.tick()
    assert (await only_alert(store)).state is AlertState.RESOLVED
    assert await events(store) == ["alert_firing", "alert_resolved"]
    await eng.tick()  # a further tick changes nothing
    assert await events(store) == ["alert_firing", "alert_resolved"]


async def test_cooldown_reopens_instead_of_notifying_and_expires(store: Store, clock: Clock) -> None:
    eng = engine(store, clock, resolve_hold=timedelta(0))
    await open_episode(store, clock.now, kind="over_power")
    await eng.tick()
    await store.close_anomaly("plug-1", "over_power", at=clock.step(1))
    await eng.tick()
    first = await only_alert(store)
    assert first.state is AlertState.RESOLVED
    await open_episode(store, clock.step(600), kind="over_power")  # 10 min later: within 30 min
    await eng.tick()
    reopened = await only_alert(store)
    assert (reopened.id, reopened.state) == (first.id, AlertState.FIRING)
    assert await events(store) == ["alert_firing", "alert_resolved"]
    await store.close_anomaly("plug-1", "over_power", at=clock.step(1))
    await eng.tick()
    await open_episode(store, clock.step(31 * 60), kind="over_power")  # past the cooldown: a new alert
    await eng.tick()
    assert len(await store.alerts()) == 2
    assert (await events(store))[-1] == "alert_firing"
    assert any("cooldown" in a.reason for a in await store.alert_audit(first.id or 0))


async def test_quiet_hours_defer_non_critical_only(store: Store, clock: Clock) -> None:
    quiet = {"home-1": QuietHours(start=time(11), end=time(14), tz="UTC")}
    eng = engine(store, clock, quiet_hours=quiet, pending_for=timedelta(0))
    await open_episode(store, clock.now, kind="gap")
    await open_episode(store, clock.now, kind="over_power")
    await eng.tick()
    due = {orjson.loads(m.payload)["kind"]: m.next_attempt_at for m in await store.outbox_messages()}
    assert due == {"gap": datetime(2026, 11, 24, 14, 0, tzinfo=UTC), "over_power": T0}
    now = await store.claim_outbox(now=T0, lease_until=T0 + timedelta(seconds=30))
    assert [orjson.loads(m.payload)["kind"] for m in now] == ["over_power"]
    await store.outbox_delivered(now[0].id, at=T0)
    later = await store.claim_outbox(now=T0 + timedelta(hours=2, seconds=1), lease_until=T0 + timedelta(hours=3))
    assert [orjson.loads(m.payload)["kind"] for m in later] == ["gap"]  # deferred, not dropped


async def test_mute_with_expiry(store: Store, clock: Clock) -> None:
    eng = engine(store, clock, resolve_hold=timedelta(0), cooldown=timedelta(0))
    await store.add_mute(
        Mute(device_id="plug-1", kind="over_power", until=T0 + timedelta(hours=1), by="ana", reason="repair",
             created_at=T0)
    )  # fmt: skip
    await open_episode(store, clock.now, kind="over_power")
    await eng.tick()
    muted = await only_alert(store)
    assert (muted.state, muted.muted) == (AlertState.FIRING, True)
    assert await events(store) == []
    assert "muted by ana" in (await store.alert_audit(muted.id or 0))[0].reason
    await store.close_anomaly("plug-1", "over_power", at=clock.step(1))
    await eng.tick()
    assert await events(store) == []
    clock.step(3600)  # the mute has expired
    await open_episode(store, clock.now, kind="over_power")
    await eng.tick()
    newest = (await store.alerts())[0]
    assert (newest.muted, newest.state) == (False, AlertState.FIRING)
    assert await events(store) == ["alert_firing"]


async def test_an_alert_still_firing_when_its_mute_ends_is_delivered_then(store: Store, clock: Clock) -> None:
    eng = engine(store, clock)
    await store.add_mute(
        Mute(device_id="plug-1", kind=None, until=T0 + timedelta(hours=1), by="ana", reason="repair", created_at=T0)
    )
    await open_episode(store, clock.now, kind="over_power")
    await eng.tick()
    assert ((await only_alert(store)).muted, await events(store)) == (True, [])
    clock.step(1800)
    await eng.tick()  # still muted: nothing yet
    assert await events(store) == []
    clock.step(1801)  # the mute is over and the episode still open
    await eng.tick()
    alert = await only_alert(store)
    assert (alert.state, alert.muted) == (AlertState.FIRING, False)
    messages = await store.outbox_messages()
    assert [orjson.loads(m.payload)["event"] for m in messages] == ["alert_firing"]
    assert orjson.loads(messages[0].payload)["note"] == "the mute ended while the alert was still firing"
    assert "mute ended" in (await store.alert_audit(alert.id or 0))[-1].reason
    await eng.tick()  # once
    assert len(await store.outbox_messages()) == 1
    # Now that it was delivered, its resolution is delivered too.
    await store.close_anomaly("plug-1", "over_power", at=clock.step(1))
    clock.step(3600)
    await eng.tick()
    assert await events(store) == ["alert_firing", "alert_resolved"]


@pytest.mark.parametrize("hold_s", [0, 600])
async def test_a_muted_alert_that_ends_within_its_mute_is_never_delivered(
    store: Store, clock: Clock, hold_s: int
) -> None:
    # With a resolve hold the alert still fires for a while after its episode ended, past the mute's end.
    eng = engine(store, clock, resolve_hold=timedelta(seconds=hold_s))
    await store.add_mute(
        Mute(device_id="plug-1", kind=None, until=T0 + timedelta(hours=1), by="ana", reason="repair", created_at=T0)
    )
    await open_episode(store, clock.now, kind="over_power")
    await eng.tick()
    await store.close_anomaly("plug-1", "over_power", at=clock.step(3480))  # 2 min before the mute ends
    await eng.tick()
    clock.step(300)  # the mute is over, the hold (if any) not yet
    await eng.tick()
    clock.step(7200)
    await eng.tick()
    assert (await only_alert(store)).state is AlertState.RESOLVED
    assert await events(store) == []


async def test_stale_closed_episodes_are_skipped_and_restart_is_idempotent(store: Store, clock: Clock) -> None:
    old = await open_episode(store, clock.now - timedelta(days=3), kind="over_power")
    await store.close_anomaly("plug-1", "over_power", at=clock.now - timedelta(days=2))
    await engine(store, clock).tick()
    assert await store.alerts() == []
    assert old.id not in [a.id for a in await store.unprocessed_episodes()]
    await open_episode(store, clock.now, kind="over_power")
    await engine(store, clock).tick()
    await engine(store, clock).tick()  # a "restarted" engine: no second alert, no second message
    assert len(await store.alerts()) == 1
    assert await events(store) == ["alert_firing"]

"""Alert storage contract, run against both backends: atomic transitions, dedup, outbox claims."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from vatio.errors import ConflictError, NotFoundError
from vatio.model import Alert, AlertState, Anomaly, AuditEntry, Mute, OutboxMessage, Severity
from vatio.store import Store

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


async def _episode(store: Store, device: str = "plug-1", kind: str = "over_power") -> Anomaly:
    stored, _ = await store.record_anomaly(
        Anomaly(device_id=device, kind=kind, detector="edge", start=T0, last=T0, score=3.0, explanation="x")
    )
    return stored


def _alert(anomaly: Anomaly, state: AlertState = AlertState.FIRING) -> Alert:
    assert anomaly.id is not None
    return Alert(
        site_id="home-1", device_id=anomaly.device_id, kind=anomaly.kind, severity=Severity.CRITICAL, state=state,
        title="Over power", explanation=anomaly.explanation, anomaly_id=anomaly.id, opened_at=T0, updated_at=T0,
        episode_start=anomaly.start, fired_at=T0,
    )  # fmt: skip


def _audit(to: AlertState, frm: AlertState | None = None, actor: str = "system") -> AuditEntry:
    return AuditEntry(at=T0, actor=actor, from_state=frm, to_state=to, reason="test")


def _message(msg_id: str, at: datetime = T0) -> OutboxMessage:
    return OutboxMessage(
        id=msg_id, alert_id=0, channel="webhook", route="r", payload=b"{}", created_at=T0, next_attempt_at=at
    )


async def test_create_writes_alert_audit_and_outbox_together(store: Store) -> None:
    episode = await _episode(store)
    alert = await store.create_alert(_alert(episode), _audit(AlertState.FIRING), [_message("m1")])
    assert alert.id is not None
    assert await store.get_alert(alert.id) == alert
    audit = await store.alert_audit(alert.id)
    assert [(a.from_state, a.to_state, a.actor) for a in audit] == [(None, AlertState.FIRING, "system")]
    outbox = await store.outbox_messages(alert_id=alert.id)
    assert [(m.id, m.alert_id, m.payload) for m in outbox] == [("m1", alert.id, b"{}")]
    assert await store.unprocessed_episodes() == []


async def test_one_alert_per_episode(store: Store) -> None:
    episode = await _episode(store)
    await store.create_alert(_alert(episode), _audit(AlertState.FIRING), [_message("m1")])
    with pytest.raises(ConflictError):
        await store.create_alert(_alert(episode), _audit(AlertState.FIRING), [_message("m2")])
    # The failed attempt left nothing behind: no second outbox row, one alert.
    assert [m.id for m in await store.outbox_messages()] == ["m1"]
    assert len(await store.alerts()) == 1


async def test_update_compares_and_sets_the_version(store: Store) -> None:
    episode = await _episode(store)
    alert = await store.create_alert(_alert(episode), _audit(AlertState.FIRING), [])
    acked = replace(alert, state=AlertState.ACKNOWLEDGED, acknowledged_by="ana", acknowledged_at=T0)
    stored = await store.update_alert(acked, _audit(AlertState.ACKNOWLEDGED, AlertState.FIRING, "ana"), [_message("a")])
    assert stored.version == alert.version + 1
    stale = replace(alert, state=AlertState.RESOLVED)
    with pytest.raises(ConflictError) as caught:
        await store.update_alert(stale, _audit(AlertState.RESOLVED, AlertState.FIRING), [_message("b")])
    assert caught.value.state == "acknowledged"
    assert [m.id for m in await store.outbox_messages()] == ["a"]
    assert len(await store.alert_audit(stored.id or 0)) == 2
    with pytest.raises(NotFoundError):
        await store.update_alert(replace(alert, id=999_999), None, [])


async def test_unprocessed_episodes_and_skip(store: Store) -> None:
    first = await _episode(store, "plug-1")
    second = await _episode(store, "plug-2")
    assert [a.id for a in await store.unprocessed_episodes()] == [first.id, second.id]
    assert first.id is not None
    await store.skip_episode(first.id)
    await store.skip_episode(first.id)
    assert [a.id for a in await store.unprocessed_episodes()] == [second.id]


async def test_alert_filters_and_paging(store: Store) -> None:
    ids = []
    for device in ("plug-1", "plug-2", "plug-3"):
        alert = await store.create_alert(_alert(await _episode(store, device)), _audit(AlertState.FIRING), [])
        ids.append(alert.id)
    assert [a.id for a in await store.alerts()] == ids[::-1]
    assert [a.id for a in await store.alerts(device_id="plug-2")] == [ids[1]]
    assert [a.id for a in await store.alerts(before_id=ids[2], limit=1)] == [ids[1]]
    assert await store.alerts(states=[AlertState.RESOLVED]) == []
    assert len(await store.alerts(states=[AlertState.FIRING], severity=Severity.CRITICAL, site_id="home-1")) == 3


async def test_mutes(store: Store) -> None:
    mute = await store.add_mute(
        Mute(device_id="plug-1", kind=None, until=T0 + timedelta(hours=1), by="ana", reason=None, created_at=T0)
    )
    assert mute.id is not None
    assert await store.mutes(active_at=T0) == [mute]
    assert await store.mutes(active_at=T0 + timedelta(hours=2)) == []
    await store.delete_mute(mute.id)
    with pytest.raises(NotFoundError):
        await store.delete_mute(mute.id)


async def test_outbox_claim_lease_and_marks(store: Store) -> None:
    episode = await _episode(store)
    # Message ids sort by creation time, as the engine makes them.
    later = T0 + timedelta(hours=1)
    await store.create_alert(
        _alert(episode), _audit(AlertState.FIRING), [_message("m1-now"), _message("m2-later", later)]
    )
    claimed = await store.claim_outbox(now=T0, lease_until=T0 + timedelta(seconds=30))
    assert [m.id for m in claimed] == ["m1-now"]
    # Leased: another worker sees nothing until the lease runs out.
    assert await store.claim_outbox(now=T0 + timedelta(seconds=1), lease_until=T0 + timedelta(seconds=60)) == []
    await store.outbox_failed("m1-now", at=T0, error="503", retry_at=T0 + timedelta(seconds=40))
    again = await store.claim_outbox(now=T0 + timedelta(seconds=41), lease_until=T0 + timedelta(seconds=70))
    assert [(m.id, m.attempts, m.last_error) for m in again] == [("m1-now", 1, "503")]
    assert await store.outbox_delivered("m1-now", at=T0) is True
    assert await store.outbox_delivered("m1-now", at=T0) is False
    await store.outbox_failed("m2-later", at=T0, error="410 Gone", retry_at=None)
    rows = {m.id: m for m in await store.outbox_messages()}
    assert rows["m1-now"].delivered_at == T0
    assert rows["m1-now"].attempts == 2
    assert rows["m2-later"].failed_at == T0
    assert await store.claim_outbox(now=later + timedelta(days=1), lease_until=later + timedelta(days=2)) == []

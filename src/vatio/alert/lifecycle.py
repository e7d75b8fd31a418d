"""The alert lifecycle: anomaly episodes in the store become alerts, alerts move through their states.

The source is the store's anomalies table, the durable hand-off from
detection: every tick reads the episodes no alert has handled yet and then
advances every active alert from its episode's current state. MQTT anomaly
events only wake the engine early; losing them loses nothing.

Every transition is one store transaction: the alert (compare-and-set on its
version), an audit entry (actor ``"system"`` or the user, and why) and the
outbox messages it causes. A restarted engine therefore neither forgets an
alert nor notifies twice: an episode joins exactly one alert, and a
transition that was committed is never re-done.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from vatio.alert.events import EVENTS, event_payload
from vatio.alert.passes import repeat_passes
from vatio.alert.routes import AlertConfig
from vatio.alert.rules import AlertRules, title
from vatio.errors import ConflictError, NotFoundError
from vatio.model import Alert, AlertState, Anomaly, AuditEntry, Mute, OutboxMessage
from vatio.model.alert import ACTIVE_STATES, TRANSITIONS
from vatio.model.instants import utcnow
from vatio.store import Store
from vatio.transport import Backoff

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SYSTEM = "system"
UNKNOWN_SITE = "unknown"
_SEQUENCE = itertools.count()


def message_id(now: datetime) -> str:
    """A unique id that sorts by creation time (milliseconds, then randomness).

    >>> len(message_id(utcnow())), message_id(utcnow()) != message_id(utcnow())
    (32, True)
    """
    # The counter orders the messages of one process made within one millisecond.
    return f"{int(now.timestamp() * 1000):012x}{next(_SEQUENCE) % 65536:04x}{secrets.token_hex(8)}"


@dataclass(slots=True)
class EngineCounters:
    created: int = 0
    fired: int = 0
    resolved: int = 0
    reopened: int = 0
    joined: int = 0
    skipped: int = 0
    conflicts: int = 0
    notifications: int = 0


class AlertEngine:
    """Turns episodes into alerts and moves alerts along; also the API's way to acknowledge and resolve.

    ``clock`` is injectable so tests step time; ``config`` holds the rules and routes.
    """

    def __init__(self, *, store: Store, config: AlertConfig | None = None, clock: Clock = utcnow) -> None:
        self.store = store
        self.config = config or AlertConfig()
        self.clock = clock
        self.counters = EngineCounters()
        self._sites: dict[str, str] = {}

    @property
    def rules(self) -> AlertRules:
        return self.config.rules

    # -- the loop ----------------------------------------------------------------------
    async def tick(self) -> None:
        """Handle new episodes, then advance every active alert; one pass, safe to repeat."""
        now = self.clock()
        mutes = await self.store.mutes(active_at=now)
        for episode in await self.store.unprocessed_episodes(limit=1000):
            await self._guard(self._on_episode(episode, now, mutes))
        for alert in await self._active():
            await self._guard(self._advance(alert, now, mutes))

    async def run(
        self,
        *,
        interval_s: float = 1.0,
        wake: asyncio.Event | None = None,
        after_tick: Callable[[], object] | None = None,
    ) -> None:
        """Tick every ``interval_s`` (sooner when ``wake`` is set); store outages are logged and retried."""

        async def one_pass() -> float:
            await self.tick()
            if after_tick is not None:
                after_tick()
            return interval_s

        backoff = Backoff(initial_s=interval_s, cap_s=30.0)
        await repeat_passes(one_pass, backoff=backoff, wake=wake, what="alert engine tick")

    async def _guard(self, step: Awaitable[object]) -> None:
        try:
            await step
        except ConflictError as exc:
            # Another writer (the API, a second engine) got there first: re-read next tick.
            self.counters.conflicts += 1
            log.debug("alert changed meanwhile: %s", exc)

    async def _active(self) -> list[Alert]:
        found: list[Alert] = []
        before: int | None = None
        while True:
            page = await self.store.alerts(states=ACTIVE_STATES, before_id=before, limit=1000)
            found += page
            if len(page) < 1000:
                return found
            before = page[-1].id

    async def _site(self, device_id: str) -> str:
        if device_id not in self._sites:
            device = await self.store.get_device(device_id)
            if device is None:
                return UNKNOWN_SITE  # not cached: ingest may register it any moment
            self._sites[device_id] = device.site_id
        return self._sites[device_id]

    # -- episodes ----------------------------------------------------------------------
    async def _on_episode(self, episode: Anomaly, now: datetime, mutes: Sequence[Mute]) -> None:
        assert episode.id is not None
        rules = self.rules
        latest = next(iter(await self.store.alerts(device_id=episode.device_id, kind=episode.kind, limit=1)), None)
        if latest is not None and latest.state is not AlertState.RESOLVED:
            await self._join(latest, episode, now)
        elif latest is not None and latest.resolved_at and episode.start - latest.resolved_at <= rules.cooldown:
            await self._reopen(latest, episode, now)
        elif episode.end is not None and now - episode.end > rules.stale_after:
            await self.store.skip_episode(episode.id)
            self.counters.skipped += 1
        else:
            await self._create(episode, now, mutes)

    async def _create(self, episode: Anomaly, now: datetime, mutes: Sequence[Mute]) -> None:
        assert episode.id is not None
        severity = self.rules.severity(episode.kind, episode.score)
        pending_for = self.rules.pending_time(severity)
        muting = _muting(mutes, episode.device_id, episode.kind, now)
        alert = Alert(
            site_id=await self._site(episode.device_id), device_id=episode.device_id, kind=episode.kind,
            severity=severity, state=AlertState.PENDING, title=title(episode.kind, episode.device_id),
            explanation=episode.explanation, anomaly_id=episode.id, opened_at=now, updated_at=now,
            episode_start=episode.start, episode_end=episode.end, muted=muting is not None,
        )  # fmt: skip
        reason = f"episode {episode.id} opened ({severity.value})"
        outbox: list[OutboxMessage] = []
        if _lasted(alert, now) >= pending_for:
            alert = replace(alert, state=AlertState.FIRING, fired_at=now)
            reason += f", lasted at least {pending_for.total_seconds():g}s: firing"
            outbox = self._notify(alert, AlertState.FIRING, now)
        else:
            reason += f": pending until it lasts {pending_for.total_seconds():g}s"
        await self.store.create_alert(alert, self._audit(alert, None, now, SYSTEM, reason, muting), outbox)
        self.counters.created += 1
        self.counters.fired += alert.state is AlertState.FIRING

    async def _join(self, alert: Alert, episode: Anomaly, now: datetime) -> None:
        assert episode.id is not None
        joined = replace(
            alert, anomaly_id=episode.id, episode_end=episode.end, explanation=episode.explanation, updated_at=now
        )
        reason = f"episode {episode.id} joined: the condition came back before the alert resolved"
        audit = AuditEntry(at=now, actor=SYSTEM, from_state=alert.state, to_state=alert.state, reason=reason)
        await self.store.update_alert(joined, audit, [], attach_episode=True)
        self.counters.joined += 1

    async def _reopen(self, alert: Alert, episode: Anomaly, now: datetime) -> None:
        assert episode.id is not None
        state = AlertState.FIRING if alert.fired_at else AlertState.PENDING
        reopened = replace(
            alert, state=state, anomaly_id=episode.id, episode_start=episode.start, episode_end=episode.end,
            explanation=episode.explanation, updated_at=now, resolved_at=None, acknowledged_at=None,
            acknowledged_by=None,
        )  # fmt: skip
        cooldown = self.rules.cooldown.total_seconds()
        outcome = "still muted" if alert.muted else "not notified again"
        reason = f"episode {episode.id} within the {cooldown:g}s cooldown: re-opened, {outcome}"
        audit = AuditEntry(at=now, actor=SYSTEM, from_state=alert.state, to_state=state, reason=reason)
        await self.store.update_alert(reopened, audit, [], attach_episode=True)
        self.counters.reopened += 1

    # -- active alerts -----------------------------------------------------------------
    async def _advance(self, alert: Alert, now: datetime, mutes: Sequence[Mute]) -> None:
        episode = await self.store.get_anomaly(alert.anomaly_id)
        end = episode.end if episode is not None else (alert.episode_end or now)
        alert = replace(alert, episode_end=end)
        if alert.state is AlertState.PENDING and _lasted(alert, now) >= self.rules.pending_time(alert.severity):
            muting = _muting(mutes, alert.device_id, alert.kind, now)
            held = self.rules.pending_time(alert.severity).total_seconds()
            await self._transition(
                alert, AlertState.FIRING, now=now, actor=SYSTEM, reason=f"lasted {held:g}s: firing",
                muting=muting, fired_at=now, muted=muting is not None,
            )  # fmt: skip
            self.counters.fired += 1
        elif end is not None and now - end >= self.rules.resolve_hold:
            hold = self.rules.resolve_hold.total_seconds()
            reason = f"episode {alert.anomaly_id} ended and stayed clear for {hold:g}s"
            await self._transition(alert, AlertState.RESOLVED, now=now, actor=SYSTEM, reason=reason, resolved_at=now)
            self.counters.resolved += 1
        elif (
            alert.state is AlertState.FIRING
            and alert.muted
            and end is None  # still going: one that ended during the mute resolves unsent
            and _muting(mutes, alert.device_id, alert.kind, now) is None
        ):
            await self._mute_ended(alert, now)

    async def _mute_ended(self, alert: Alert, now: datetime) -> None:
        """A mute hid this alert when it fired; the mute is over and the alert still fires: deliver it now.

        An acknowledged alert has been seen and a resolved one is over, so only a firing one is sent.
        """
        delivered = replace(alert, muted=False, updated_at=now)
        note = "the mute ended while the alert was still firing"
        audit = AuditEntry(
            at=now, actor=SYSTEM, from_state=alert.state, to_state=alert.state, reason=f"{note}: notified"
        )
        await self.store.update_alert(delivered, audit, self._notify(delivered, AlertState.FIRING, now, note))

    async def _transition(
        self,
        alert: Alert,
        to: AlertState,
        *,
        now: datetime,
        actor: str,
        reason: str,
        note: str | None = None,
        muting: Mute | None = None,
        **changes: Any,
    ) -> Alert:
        if to not in TRANSITIONS[alert.state]:
            raise ConflictError(
                f"alert {alert.id} is {alert.state.value}: cannot become {to.value}",
                kind="alert", key=str(alert.id), state=alert.state.value,
            )  # fmt: skip
        new = replace(alert, state=to, updated_at=now, **changes)
        outbox = self._notify(new, to, now, note) if new.fired_at is not None else []
        audit = self._audit(new, alert.state, now, actor, reason if note is None else f"{reason}: {note}", muting)
        return await self.store.update_alert(new, audit, outbox)

    def _notify(self, alert: Alert, state: AlertState, now: datetime, note: str | None = None) -> list[OutboxMessage]:
        """Outbox messages of one transition: one per route of the site, none when muted."""
        if alert.muted or state not in EVENTS:
            return []
        payload = event_payload(alert, state, now, note)
        due = self.rules.deliver_at(alert.site_id, alert.severity, now)
        messages = [
            OutboxMessage(
                id=message_id(now),
                alert_id=alert.id or 0,
                channel=route.channel,
                route=route.name,
                payload=payload,
                created_at=now,
                next_attempt_at=due,
            )
            for route in self.config.routes_for(alert.site_id, alert.severity)
        ]
        self.counters.notifications += len(messages)
        return messages

    @staticmethod
    def _audit(
        alert: Alert, frm: AlertState | None, now: datetime, actor: str, reason: str, muting: Mute | None
    ) -> AuditEntry:
        if muting is not None:
            until = muting.until.isoformat()
            reason += f"; muted by {muting.by} until {until} (mute {muting.id}): recorded, not delivered"
        return AuditEntry(at=now, actor=actor, from_state=frm, to_state=alert.state, reason=reason)

    # -- people ------------------------------------------------------------------------
    async def acknowledge(self, alert_id: int, *, by: str, note: str | None = None) -> Alert:
        """A person has seen the alert; it stays acknowledged until resolved. ConflictError if not active."""
        return await self._by_user(alert_id, AlertState.ACKNOWLEDGED, by, note)

    async def resolve(self, alert_id: int, *, by: str, note: str | None = None) -> Alert:
        """A person closes the alert. ConflictError when it is already resolved."""
        return await self._by_user(alert_id, AlertState.RESOLVED, by, note)

    async def _by_user(self, alert_id: int, to: AlertState, by: str, note: str | None) -> Alert:
        for attempt in range(3):
            alert = await self.store.get_alert(alert_id)
            if alert is None:
                raise NotFoundError("alert", str(alert_id))
            now = self.clock()
            changes: dict[str, Any] = {"resolved_at": now}
            if to is AlertState.ACKNOWLEDGED:
                changes = {"acknowledged_at": now, "acknowledged_by": by}
            verb = "acknowledged" if to is AlertState.ACKNOWLEDGED else "resolved"
            if to not in TRANSITIONS[alert.state]:
                return await self._transition(alert, to, now=now, actor=by, reason=verb)  # raises ConflictError
            try:
                return await self._transition(
                    alert, to, now=now, actor=by, reason=f"{verb} by {by}", note=note, **changes
                )
            except ConflictError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _lasted(alert: Alert, now: datetime) -> timedelta:
    return (alert.episode_end or now) - alert.episode_start


def _muting(mutes: Sequence[Mute], device_id: str, kind: str, now: datetime) -> Mute | None:
    return next((m for m in mutes if m.covers(device_id, kind, now)), None)

"""Alerts raised from anomaly episodes, their audit trail, mutes and the delivery outbox."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class AlertState(enum.StrEnum):
    """Where an alert is in its lifecycle: pending → firing → acknowledged → resolved."""

    PENDING = "pending"  # the episode has not lasted ``pending_for`` yet: nobody is told
    FIRING = "firing"  # notified (unless muted or deferred by quiet hours)
    ACKNOWLEDGED = "acknowledged"  # a person has seen it; stays so until resolved
    RESOLVED = "resolved"


#: Which state may follow which; anything else is a conflict. A resolved
#: alert re-opens (to firing) only when a new episode arrives within the cooldown.
TRANSITIONS: dict[AlertState, frozenset[AlertState]] = {
    AlertState.PENDING: frozenset({AlertState.FIRING, AlertState.ACKNOWLEDGED, AlertState.RESOLVED}),
    AlertState.FIRING: frozenset({AlertState.ACKNOWLEDGED, AlertState.RESOLVED}),
    AlertState.ACKNOWLEDGED: frozenset({AlertState.RESOLVED}),
    AlertState.RESOLVED: frozenset({AlertState.FIRING}),
}

ACTIVE_STATES = (AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED)


class Severity(enum.StrEnum):
    """How urgent an alert is; ordered: ``Severity.INFO < Severity.CRITICAL`` by :attr:`rank`.

    >>> Severity.WARNING.rank > Severity.INFO.rank
    True
    """

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert of one device and kind, grouping one or more anomaly episodes.

    ``anomaly_id`` is the newest episode attached (a new episode within the
    cooldown re-opens the alert rather than raising another). ``version``
    grows with every stored change: writers compare-and-set on it.
    ``episode_end`` mirrors the end of the newest episode (None while open),
    which the resolve hysteresis counts from.
    """

    site_id: str
    device_id: str
    kind: str
    severity: Severity
    state: AlertState
    title: str
    explanation: str
    anomaly_id: int
    opened_at: datetime
    updated_at: datetime
    episode_start: datetime
    episode_end: datetime | None = None
    fired_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    muted: bool = False
    version: int = 0
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One transition of one alert: who (``"system"`` or a user), when, from what, to what, why."""

    at: datetime
    actor: str
    from_state: AlertState | None  # None: the alert was created
    to_state: AlertState
    reason: str
    alert_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mute:
    """Silence the alerts of a device (one ``kind``, or all when None) until ``until``."""

    device_id: str
    kind: str | None
    until: datetime
    by: str
    reason: str | None
    created_at: datetime
    id: int | None = None

    def covers(self, device_id: str, kind: str, at: datetime) -> bool:
        return self.device_id == device_id and (self.kind is None or self.kind == kind) and at < self.until


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxMessage:
    """One notification for one route, written in the transaction of the transition that causes it.

    ``id`` is the idempotency key receivers dedup on (sent as ``X-Vatio-Id``
    or the ``id`` field). A message is due while undelivered, not failed, and
    ``next_attempt_at`` has passed; quiet hours defer it by setting that.
    """

    id: str
    alert_id: int
    channel: str
    route: str
    payload: bytes
    created_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None

"""Schema and SQL of alerts, shared in shape by both backends (migration 3).

Statements are written with ``?`` placeholders; :func:`numbered` turns them
into PostgreSQL's ``$n``. Timestamps pass through the backend's ``instant``
(datetime → column value) and ``to_dt`` (column value → datetime) functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from vatio.model import Alert, AlertState, AuditEntry, Mute, OutboxMessage, Severity

Instant = Callable[[datetime], object]
ToDt = Callable[[Any], datetime]

ALERT_FIELDS = (
    "id", "site_id", "device_id", "kind", "severity", "state", "title", "explanation", "anomaly_id", "opened_at",
    "updated_at", "episode_start", "episode_end", "fired_at", "acknowledged_at", "acknowledged_by", "resolved_at",
    "muted", "version",
)  # fmt: skip
ALERT_COLUMNS = ", ".join(ALERT_FIELDS)
_ALERT_TIMES = {"opened_at", "updated_at", "episode_start", "episode_end", "fired_at", "acknowledged_at", "resolved_at"}
AUDIT_COLUMNS = "alert_id, at, actor, from_state, to_state, reason"
MUTE_COLUMNS = "id, device_id, kind, until_ts, by_user, reason, created_at"
OUTBOX_COLUMNS = (
    "id, alert_id, channel, route, payload, created_at, next_attempt_at, attempts, delivered_at, failed_at, last_error"
)
#: Episodes with an id this far below the newest processed one are not looked at
#: again: ids come from a sequence, and commits can only land out of order by a little.
EPISODE_SLACK = 10_000


def migration(*, ts: str, blob: str, serial: str) -> list[str]:
    """Migration 3 in the dialect given by its type names."""
    return [
        f"""CREATE TABLE alerts (
            id {serial}, site_id text NOT NULL, device_id text NOT NULL, kind text NOT NULL,
            severity text NOT NULL, state text NOT NULL, title text NOT NULL, explanation text NOT NULL,
            anomaly_id bigint NOT NULL UNIQUE, opened_at {ts} NOT NULL, updated_at {ts} NOT NULL,
            episode_start {ts} NOT NULL, episode_end {ts}, fired_at {ts}, acknowledged_at {ts},
            acknowledged_by text, resolved_at {ts}, muted integer NOT NULL, version integer NOT NULL)""",
        "CREATE INDEX alerts_device_kind ON alerts (device_id, kind, id)",
        "CREATE INDEX alerts_state ON alerts (state, id)",
        # Every episode alerting has looked at, and the alert it joined (NULL: skipped).
        # Its primary key is the dedup: an episode is handled once, whoever races.
        "CREATE TABLE alert_episodes (anomaly_id bigint PRIMARY KEY, alert_id bigint)",
        f"""CREATE TABLE alert_audit (
            id {serial}, alert_id bigint NOT NULL, at {ts} NOT NULL, actor text NOT NULL,
            from_state text, to_state text NOT NULL, reason text NOT NULL)""",
        "CREATE INDEX alert_audit_alert ON alert_audit (alert_id, id)",
        f"""CREATE TABLE mutes (
            id {serial}, device_id text NOT NULL, kind text, until_ts {ts} NOT NULL,
            by_user text NOT NULL, reason text, created_at {ts} NOT NULL)""",
        f"""CREATE TABLE outbox (
            id text PRIMARY KEY, alert_id bigint NOT NULL, channel text NOT NULL, route text NOT NULL,
            payload {blob} NOT NULL, created_at {ts} NOT NULL, next_attempt_at {ts} NOT NULL,
            attempts integer NOT NULL, delivered_at {ts}, failed_at {ts}, last_error text)""",
        "CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL",
        "CREATE INDEX outbox_alert ON outbox (alert_id)",
    ]


def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2...``.

    >>> numbered("SELECT ? + ?")
    'SELECT $1 + $2'
    """
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], start=1)) + parts[-1]


_WRITTEN = ALERT_FIELDS[1:]
INSERT_ALERT = f"INSERT INTO alerts ({', '.join(_WRITTEN)}) VALUES ({', '.join('?' * len(_WRITTEN))})"
UPDATE_ALERT = (
    "UPDATE alerts SET " + ", ".join(f"{name} = ?" for name in ALERT_FIELDS[1:]) + " WHERE id = ? AND version = ?"
)
INSERT_AUDIT = f"INSERT INTO alert_audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_OUTBOX = f"INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_MUTE = "INSERT INTO mutes (device_id, kind, until_ts, by_user, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)"
UNPROCESSED = (
    "SELECT {columns} FROM anomalies a WHERE a.id > "
    f"(SELECT coalesce(max(anomaly_id), 0) FROM alert_episodes) - {EPISODE_SLACK} "
    "AND NOT EXISTS (SELECT 1 FROM alert_episodes e WHERE e.anomaly_id = a.id) ORDER BY a.id LIMIT ?"
)
#: Messages due now whose alert has no older message still on its way over the same route:
#: a retried ``alert_firing`` must not be overtaken by the ``alert_resolved`` behind it
#: (ids sort by creation time).
DUE_OUTBOX = (
    f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL "
    "AND next_attempt_at <= ? AND NOT EXISTS (SELECT 1 FROM outbox AS older WHERE "
    "older.alert_id = outbox.alert_id AND older.route = outbox.route AND older.id < outbox.id "
    "AND older.delivered_at IS NULL AND older.failed_at IS NULL) ORDER BY next_attempt_at, id LIMIT ?"
)


def alert_values(alert: Alert, instant: Instant) -> list[object]:
    """Column values of ``alert`` in :data:`ALERT_FIELDS` order, without ``id``."""
    values: list[object] = []
    for name in ALERT_FIELDS[1:]:
        value = getattr(alert, name)
        if name in _ALERT_TIMES and value is not None:
            value = instant(value)
        elif name == "muted":
            value = int(value)
        elif name in ("severity", "state"):
            value = value.value
        values.append(value)
    return values


def alert_from_row(row: Any, to_dt: ToDt) -> Alert:
    values = dict(zip(ALERT_FIELDS, row, strict=True))
    for name in _ALERT_TIMES:
        if values[name] is not None:
            values[name] = to_dt(values[name])
    values["severity"] = Severity(values["severity"])
    values["state"] = AlertState(values["state"])
    values["muted"] = bool(values["muted"])
    return Alert(**values)


def audit_values(entry: AuditEntry, alert_id: int, instant: Instant) -> tuple[object, ...]:
    from_state = entry.from_state.value if entry.from_state is not None else None
    return (alert_id, instant(entry.at), entry.actor, from_state, entry.to_state.value, entry.reason)


def audit_from_row(row: Any, to_dt: ToDt) -> AuditEntry:
    return AuditEntry(
        alert_id=row[0], at=to_dt(row[1]), actor=row[2],
        from_state=None if row[3] is None else AlertState(row[3]), to_state=AlertState(row[4]), reason=row[5],
    )  # fmt: skip


def outbox_values(message: OutboxMessage, alert_id: int, instant: Instant) -> tuple[object, ...]:
    m = message
    return (
        m.id, alert_id, m.channel, m.route, m.payload, instant(m.created_at), instant(m.next_attempt_at), m.attempts,
        None if m.delivered_at is None else instant(m.delivered_at),
        None if m.failed_at is None else instant(m.failed_at), m.last_error,
    )  # fmt: skip


def outbox_from_row(row: Any, to_dt: ToDt) -> OutboxMessage:
    return OutboxMessage(
        id=row[0], alert_id=row[1], channel=row[2], route=row[3], payload=bytes(row[4]), created_at=to_dt(row[5]),
        next_attempt_at=to_dt(row[6]), attempts=row[7], delivered_at=None if row[8] is None else to_dt(row[8]),
        failed_at=None if row[9] is None else to_dt(row[9]), last_error=row[10],
    )  # fmt: skip


def mute_values(mute: Mute, instant: Instant) -> tuple[object, ...]:
    return (mute.device_id, mute.kind, instant(mute.until), mute.by, mute.reason, instant(mute.created_at))


def mute_from_row(row: Any, to_dt: ToDt) -> Mute:
    return Mute(
        id=row[0], device_id=row[1], kind=row[2], until=to_dt(row[3]), by=row[4], reason=row[5],
        created_at=to_dt(row[6]),
    )  # fmt: skip


def alert_query(
    *,
    site_id: str | None,
    device_id: str | None,
    kind: str | None,
    states: Sequence[AlertState] | None,
    severity: Severity | None,
    before_id: int | None,
    limit: int,
) -> tuple[str, list[object]]:
    """SELECT of alerts newest first (by id) with ``?`` placeholders.

    >>> alert_query(site_id=None, device_id="d", kind=None, states=[AlertState.FIRING], severity=None,
    ...             before_id=None, limit=5)[1]
    ['d', 'firing', 5]
    """
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    for column, value in (("site_id", site_id), ("device_id", device_id), ("kind", kind)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if states is not None:
        where.append(f"state IN ({', '.join('?' * len(states))})" if states else "1 = 0")
        params.extend(s.value for s in states)
    if severity is not None:
        where.append("severity = ?")
        params.append(severity.value)
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    params.append(limit)
    return f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", params

"""Alerts, their audit trail, mutes and the delivery outbox in SQLite (migration 3).

Every write that belongs together (an alert's transition, its audit entry,
the outbox messages it causes) runs in one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from vatio.errors import ConflictError, NotFoundError
from vatio.model import Alert, AlertState, Anomaly, AuditEntry, Mute, OutboxMessage, Severity
from vatio.model.instants import from_ms, to_ms
from vatio.store.alerts_sql import (
    ALERT_COLUMNS,
    DUE_OUTBOX,
    INSERT_ALERT,
    INSERT_AUDIT,
    INSERT_MUTE,
    INSERT_OUTBOX,
    MUTE_COLUMNS,
    OUTBOX_COLUMNS,
    UNPROCESSED,
    UPDATE_ALERT,
    alert_from_row,
    alert_query,
    alert_values,
    audit_from_row,
    audit_values,
    migration,
    mute_from_row,
    mute_values,
    outbox_from_row,
    outbox_values,
)
from vatio.store.detection_sql import ANOMALY_COLUMNS, anomaly_from_row

T = TypeVar("T")

MIGRATION = migration(ts="INTEGER", blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT")


def _conflict(alert: Alert, current: str | None) -> ConflictError:
    return ConflictError(
        f"alert {alert.id} changed meanwhile (now {current})", kind="alert", key=str(alert.id), state=current
    )


class SqliteAlertsMixin:
    """Mixed into :class:`~vatio.store.sqlite.SqliteStore` (needs ``_run`` and ``_db``)."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def _db(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _alerts_tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def _tx() -> T:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return result

        return await self._run(_tx)

    @staticmethod
    def _alerts_side_effects(
        db: sqlite3.Connection, alert_id: int, audit: AuditEntry | None, outbox: Sequence[OutboxMessage]
    ) -> None:
        if audit is not None:
            db.execute(INSERT_AUDIT, audit_values(audit, alert_id, to_ms))
        db.executemany(INSERT_OUTBOX, [outbox_values(m, alert_id, to_ms) for m in outbox])

    @staticmethod
    def _alerts_attach(db: sqlite3.Connection, anomaly_id: int, alert_id: int | None) -> None:
        if db.execute("SELECT 1 FROM alert_episodes WHERE anomaly_id = ?", (anomaly_id,)).fetchone():
            raise ConflictError(f"episode {anomaly_id} already handled", kind="anomaly", key=str(anomaly_id))
        db.execute("INSERT INTO alert_episodes VALUES (?, ?)", (anomaly_id, alert_id))

    async def create_alert(self, alert: Alert, audit: AuditEntry, outbox: Sequence[OutboxMessage]) -> Alert:
        def _create(db: sqlite3.Connection) -> Alert:
            self._alerts_attach(db, alert.anomaly_id, None)
            alert_id = db.execute(INSERT_ALERT, alert_values(alert, to_ms)).lastrowid
            assert alert_id is not None
            db.execute("UPDATE alert_episodes SET alert_id = ? WHERE anomaly_id = ?", (alert_id, alert.anomaly_id))
            self._alerts_side_effects(db, alert_id, audit, outbox)
            return replace(alert, id=alert_id)

        return await self._alerts_tx(_create)

    async def update_alert(
        self, alert: Alert, audit: AuditEntry | None, outbox: Sequence[OutboxMessage], *, attach_episode: bool = False
    ) -> Alert:
        assert alert.id is not None
        alert_id = alert.id
        stored = replace(alert, version=alert.version + 1)

        def _update(db: sqlite3.Connection) -> Alert:
            if attach_episode:
                self._alerts_attach(db, alert.anomaly_id, alert_id)
            cursor = db.execute(UPDATE_ALERT, (*alert_values(stored, to_ms), alert_id, alert.version))
            if cursor.rowcount == 0:
                row = db.execute("SELECT state FROM alerts WHERE id = ?", (alert_id,)).fetchone()
                if row is None:
                    raise NotFoundError("alert", str(alert_id))
                raise _conflict(alert, row[0])
            self._alerts_side_effects(db, alert_id, audit, outbox)
            return stored

        return await self._alerts_tx(_update)

    async def skip_episode(self, anomaly_id: int) -> None:
        def _skip() -> None:
            self._db().execute("INSERT OR IGNORE INTO alert_episodes VALUES (?, NULL)", (anomaly_id,))

        await self._run(_skip)

    async def unprocessed_episodes(self, *, limit: int = 1000) -> list[Anomaly]:
        sql = UNPROCESSED.format(columns=", ".join(f"a.{c.strip()}" for c in ANOMALY_COLUMNS.split(",")))

        def _query() -> list[Anomaly]:
            return [anomaly_from_row(r, from_ms) for r in self._db().execute(sql, (limit,))]

        return await self._run(_query)

    async def get_alert(self, alert_id: int) -> Alert | None:
        def _get() -> Alert | None:
            row = self._db().execute(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            return None if row is None else alert_from_row(row, from_ms)

        return await self._run(_get)

    async def alerts(
        self,
        *,
        site_id: str | None = None,
        device_id: str | None = None,
        kind: str | None = None,
        states: Sequence[AlertState] | None = None,
        severity: Severity | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        sql, params = alert_query(
            site_id=site_id, device_id=device_id, kind=kind, states=states, severity=severity,
            before_id=before_id, limit=limit,
        )  # fmt: skip

        def _query() -> list[Alert]:
            return [alert_from_row(r, from_ms) for r in self._db().execute(sql, params)]

        return await self._run(_query)

    async def alert_audit(self, alert_id: int) -> list[AuditEntry]:
        def _query() -> list[AuditEntry]:
            cursor = self._db().execute(
                "SELECT alert_id, at, actor, from_state, to_state, reason FROM alert_audit WHERE alert_id = ? "
                "ORDER BY id",
                (alert_id,),
            )
            return [audit_from_row(r, from_ms) for r in cursor]

        return await self._run(_query)

    async def add_mute(self, mute: Mute) -> Mute:
        def _add() -> Mute:
            cursor = self._db().execute(INSERT_MUTE, mute_values(mute, to_ms))
            return replace(mute, id=cursor.lastrowid)

        return await self._run(_add)

    async def mutes(self, *, active_at: datetime | None = None) -> list[Mute]:
        def _query() -> list[Mute]:
            sql = f"SELECT {MUTE_COLUMNS} FROM mutes"
            params: tuple[object, ...] = ()
            if active_at is not None:
                sql, params = sql + " WHERE until_ts > ?", (to_ms(active_at),)
            return [mute_from_row(r, from_ms) for r in self._db().execute(sql + " ORDER BY id", params)]

        return await self._run(_query)

    async def delete_mute(self, mute_id: int) -> None:
        def _delete() -> int:
            return self._db().execute("DELETE FROM mutes WHERE id = ?", (mute_id,)).rowcount

        if not await self._run(_delete):
            raise NotFoundError("mute", str(mute_id))

    async def claim_outbox(self, *, now: datetime, lease_until: datetime, limit: int = 100) -> list[OutboxMessage]:
        def _claim(db: sqlite3.Connection) -> list[OutboxMessage]:
            due = [outbox_from_row(r, from_ms) for r in db.execute(DUE_OUTBOX, (to_ms(now), limit))]
            db.executemany(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ?", [(to_ms(lease_until), m.id) for m in due]
            )
            return due

        return await self._alerts_tx(_claim)

    async def outbox_delivered(self, message_id: str, *, at: datetime) -> bool:
        def _mark() -> int:
            return (
                self._db()
                .execute(
                    "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL "
                    "WHERE id = ? AND delivered_at IS NULL",
                    (to_ms(at), message_id),
                )
                .rowcount
            )

        return bool(await self._run(_mark))

    async def outbox_failed(self, message_id: str, *, at: datetime, error: str, retry_at: datetime | None) -> None:
        def _mark() -> None:
            self._db().execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = coalesce(?, "
                "next_attempt_at), failed_at = ? WHERE id = ? AND delivered_at IS NULL",
                (error, None if retry_at is None else to_ms(retry_at), None if retry_at else to_ms(at), message_id),
            )

        await self._run(_mark)

    async def outbox_messages(self, *, alert_id: int | None = None) -> list[OutboxMessage]:
        def _query() -> list[OutboxMessage]:
            sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox"
            params: tuple[object, ...] = ()
            if alert_id is not None:
                sql, params = sql + " WHERE alert_id = ?", (alert_id,)
            return [outbox_from_row(r, from_ms) for r in self._db().execute(sql + " ORDER BY created_at, id", params)]

        return await self._run(_query)

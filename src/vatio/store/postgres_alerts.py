"""Alerts, their audit trail, mutes and the delivery outbox in PostgreSQL (migration 3).

An alert's transition, its audit entry and the outbox messages it causes are
written in one transaction. Writers compare-and-set on the alert's
``version``; outbox rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a
lease, so several delivery workers never send one message at the same time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import asyncpg

from vatio.errors import ConflictError, NotFoundError
from vatio.model import Alert, AlertState, Anomaly, AuditEntry, Mute, OutboxMessage, Severity
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
    numbered,
    outbox_from_row,
    outbox_values,
)
from vatio.store.detection_sql import ANOMALY_COLUMNS, anomaly_from_row
from vatio.store.postgres_common import unavailable_as_error

MIGRATION = migration(ts="timestamptz", blob="bytea", serial="bigserial PRIMARY KEY")

_CLAIM = numbered(
    f"UPDATE outbox SET next_attempt_at = ? WHERE id IN ({DUE_OUTBOX.replace(OUTBOX_COLUMNS, 'id', 1)} "
    f"FOR UPDATE SKIP LOCKED) RETURNING {OUTBOX_COLUMNS}"
)
_UNPROCESSED = numbered(UNPROCESSED.format(columns=", ".join(f"a.{c.strip()}" for c in ANOMALY_COLUMNS.split(","))))


def _same(ts: datetime) -> datetime:
    return ts


class PostgresAlertsMixin:
    """Mixed into :class:`~vatio.store.postgres.PostgresStore` (needs ``_get_pool``)."""

    async def _get_pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    @staticmethod
    async def _alerts_side_effects(
        conn: asyncpg.Connection, alert_id: int, audit: AuditEntry | None, outbox: Sequence[OutboxMessage]
    ) -> None:
        if audit is not None:
            await conn.execute(numbered(INSERT_AUDIT), *audit_values(audit, alert_id, _same))
        if outbox:
            await conn.executemany(numbered(INSERT_OUTBOX), [outbox_values(m, alert_id, _same) for m in outbox])

    @staticmethod
    async def _alerts_attach(conn: asyncpg.Connection, anomaly_id: int, alert_id: int | None) -> None:
        # A racing writer of the same episode waits on the primary key, then inserts nothing.
        inserted = await conn.fetchval(
            "INSERT INTO alert_episodes VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING anomaly_id",
            anomaly_id,
            alert_id,
        )
        if inserted is None:
            raise ConflictError(f"episode {anomaly_id} already handled", kind="anomaly", key=str(anomaly_id))

    async def create_alert(self, alert: Alert, audit: AuditEntry, outbox: Sequence[OutboxMessage]) -> Alert:
        async with unavailable_as_error():
            pool = await self._get_pool()
            async with pool.acquire() as conn, conn.transaction():
                await self._alerts_attach(conn, alert.anomaly_id, None)
                alert_id = await conn.fetchval(numbered(INSERT_ALERT) + " RETURNING id", *alert_values(alert, _same))
                await conn.execute(
                    "UPDATE alert_episodes SET alert_id = $1 WHERE anomaly_id = $2", alert_id, alert.anomaly_id
                )
                await self._alerts_side_effects(conn, alert_id, audit, outbox)
        return replace(alert, id=alert_id)

    async def update_alert(
        self, alert: Alert, audit: AuditEntry | None, outbox: Sequence[OutboxMessage], *, attach_episode: bool = False
    ) -> Alert:
        assert alert.id is not None
        stored = replace(alert, version=alert.version + 1)
        async with unavailable_as_error():
            pool = await self._get_pool()
            async with pool.acquire() as conn, conn.transaction():
                if attach_episode:
                    await self._alerts_attach(conn, alert.anomaly_id, alert.id)
                status = await conn.execute(
                    numbered(UPDATE_ALERT), *alert_values(stored, _same), alert.id, alert.version
                )
                if status == "UPDATE 0":
                    current = await conn.fetchval("SELECT state FROM alerts WHERE id = $1", alert.id)
                    if current is None:
                        raise NotFoundError("alert", str(alert.id))
                    raise ConflictError(
                        f"alert {alert.id} changed meanwhile (now {current})",
                        kind="alert", key=str(alert.id), state=current,
                    )  # fmt: skip
                await self._alerts_side_effects(conn, alert.id, audit, outbox)
        return stored

    async def skip_episode(self, anomaly_id: int) -> None:
        async with unavailable_as_error():
            pool = await self._get_pool()
            await pool.execute("INSERT INTO alert_episodes VALUES ($1, NULL) ON CONFLICT DO NOTHING", anomaly_id)

    async def unprocessed_episodes(self, *, limit: int = 1000) -> list[Anomaly]:
        async with unavailable_as_error():
            pool = await self._get_pool()
            return [anomaly_from_row(r, _same) for r in await pool.fetch(_UNPROCESSED, limit)]

    async def get_alert(self, alert_id: int) -> Alert | None:
        async with unavailable_as_error():
            pool = await self._get_pool()
            row = await pool.fetchrow(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1", alert_id)
        return None if row is None else alert_from_row(row, _same)

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
        async with unavailable_as_error():
            pool = await self._get_pool()
            return [alert_from_row(r, _same) for r in await pool.fetch(numbered(sql), *params)]

    async def alert_audit(self, alert_id: int) -> list[AuditEntry]:
        async with unavailable_as_error():
            pool = await self._get_pool()
            rows = await pool.fetch(
                "SELECT alert_id, at, actor, from_state, to_state, reason FROM alert_audit WHERE alert_id = $1 "
                "ORDER BY id",
                alert_id,
            )
        return [audit_from_row(r, _same) for r in rows]

    async def add_mute(self, mute: Mute) -> Mute:
        async with unavailable_as_error():
            pool = await self._get_pool()
            mute_id = await pool.fetchval(numbered(INSERT_MUTE) + " RETURNING id", *mute_values(mute, _same))
        return replace(mute, id=mute_id)

    async def mutes(self, *, active_at: datetime | None = None) -> list[Mute]:
        async with unavailable_as_error():
            pool = await self._get_pool()
            rows = await pool.fetch(
                f"SELECT {MUTE_COLUMNS} FROM mutes WHERE $1::timestamptz IS NULL OR until_ts > $1 ORDER BY id",
                active_at,
            )
        return [mute_from_row(r, _same) for r in rows]

    async def delete_mute(self, mute_id: int) -> None:
        async with unavailable_as_error():
            pool = await self._get_pool()
            status = await pool.execute("DELETE FROM mutes WHERE id = $1", mute_id)
        if status == "DELETE 0":
            raise NotFoundError("mute", str(mute_id))

    async def claim_outbox(self, *, now: datetime, lease_until: datetime, limit: int = 100) -> list[OutboxMessage]:
        async with unavailable_as_error():
            pool = await self._get_pool()
            rows = await pool.fetch(_CLAIM, lease_until, now, limit)
        return sorted((outbox_from_row(r, _same) for r in rows), key=lambda m: (m.created_at, m.id))

    async def outbox_delivered(self, message_id: str, *, at: datetime) -> bool:
        async with unavailable_as_error():
            pool = await self._get_pool()
            status = await pool.execute(
                "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL "
                "WHERE id = $2 AND delivered_at IS NULL",
                at,
                message_id,
            )
        return bool(status != "UPDATE 0")

    async def outbox_failed(self, message_id: str, *, at: datetime, error: str, retry_at: datetime | None) -> None:
        async with unavailable_as_error():
            pool = await self._get_pool()
            await pool.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $1, "
                "next_attempt_at = coalesce($2, next_attempt_at), failed_at = $3 "
                "WHERE id = $4 AND delivered_at IS NULL",
                error,
                retry_at,
                None if retry_at is not None else at,
                message_id,
            )

    async def outbox_messages(self, *, alert_id: int | None = None) -> list[OutboxMessage]:
        async with unavailable_as_error():
            pool = await self._get_pool()
            rows = await pool.fetch(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE $1::bigint IS NULL OR alert_id = $1 "
                "ORDER BY created_at, id",
                alert_id,
            )
        return [outbox_from_row(r, _same) for r in rows]

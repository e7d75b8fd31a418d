"""Detection results in PostgreSQL: anomaly episodes, detector checkpoints, model versions."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

import asyncpg

from vatio.errors import NotFoundError
from vatio.model import Anomaly, ModelStatus, ModelVersion
from vatio.store.detection_sql import (
    ANOMALY_COLUMNS,
    MODEL_COLUMNS,
    anomaly_from_row,
    anomaly_query,
    check_expected,
    migration,
    model_from_row,
)

MIGRATION = migration(ts="timestamptz", blob="bytea", serial="bigserial PRIMARY KEY", real="double precision")
_OPEN = f"SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE device_id = $1 AND kind = $2 AND end_ts IS NULL"


def _same(ts: datetime) -> datetime:
    return ts


class PostgresDetectionMixin:
    """Mixed into :class:`~vatio.store.postgres.PostgresStore` (needs ``_get_pool``)."""

    async def _get_pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    async def record_anomaly(self, anomaly: Anomaly) -> tuple[Anomaly, bool]:
        a = anomaly
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            # Serialise writers of one device and kind: the open episode is read, then written.
            await conn.execute("SELECT pg_advisory_xact_lock(7204, hashtext($1 || '/' || $2))", a.device_id, a.kind)
            row = await conn.fetchrow(_OPEN, a.device_id, a.kind)
            if row is None:
                new_id = await conn.fetchval(
                    "INSERT INTO anomalies (device_id, kind, detector, start_ts, last_ts, score, expected_w, low_w, "
                    "high_w, observed_w, explanation, model_version) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                    a.device_id, a.kind, a.detector, a.start, a.last, a.score, a.expected_w, a.low_w, a.high_w,
                    a.observed_w, a.explanation, a.model_version,
                )  # fmt: skip
                return replace(a, id=new_id, end=None), True
            current = anomaly_from_row(row, _same)
            stored = replace(
                a, id=current.id, start=current.start, last=max(current.last, a.last),
                score=max(current.score, a.score), end=None,
            )  # fmt: skip
            await conn.execute(
                "UPDATE anomalies SET last_ts = $1, score = $2, expected_w = $3, low_w = $4, high_w = $5, "
                "observed_w = $6, explanation = $7, model_version = $8 WHERE id = $9",
                stored.last, stored.score, a.expected_w, a.low_w, a.high_w, a.observed_w, a.explanation,
                a.model_version, current.id,
            )  # fmt: skip
            return stored, False

    async def close_anomaly(self, device_id: str, kind: str, *, at: datetime) -> Anomaly | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(
            f"UPDATE anomalies SET end_ts = $3 WHERE device_id = $1 AND kind = $2 AND end_ts IS NULL "
            f"RETURNING {ANOMALY_COLUMNS}",
            device_id,
            kind,
            at,
        )
        return None if row is None else anomaly_from_row(row, _same)

    async def anomalies(
        self,
        *,
        device_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        open_only: bool = False,
        limit: int = 100,
        site_id: str | None = None,
        before: tuple[datetime, int] | None = None,
    ) -> list[Anomaly]:
        sql, params = anomaly_query(
            device_id=device_id, start=start, end=end, open_only=open_only, limit=limit,
            placeholder=lambda n: f"${n}", instant=_same, site_id=site_id, before=before,
        )  # fmt: skip
        pool = await self._get_pool()
        return [anomaly_from_row(r, _same) for r in await pool.fetch(sql, *params)]

    async def get_anomaly(self, anomaly_id: int) -> Anomaly | None:
        pool = await self._get_pool()
        row = await pool.fetchrow(f"SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE id = $1", anomaly_id)
        return None if row is None else anomaly_from_row(row, _same)

    async def save_states(self, detector: str, states: dict[str, bytes], *, at: datetime) -> None:
        pool = await self._get_pool()
        await pool.execute(
            "INSERT INTO detector_state SELECT $1, d, s, $4 FROM unnest($2::text[], $3::bytea[]) AS u(d, s) "
            "ON CONFLICT (detector, device_id) DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at",
            detector,
            list(states),
            list(states.values()),
            at,
        )

    async def load_states(self, detector: str) -> dict[str, bytes]:
        pool = await self._get_pool()
        rows = await pool.fetch("SELECT device_id, state FROM detector_state WHERE detector = $1", detector)
        return {row[0]: bytes(row[1]) for row in rows}

    async def save_model(self, model: ModelVersion) -> ModelVersion:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(7205, hashtext($1 || '/' || $2))", model.detector, model.device_id
            )
            row = await conn.fetchrow(
                "INSERT INTO models (detector, device_id, version, status, trained_from, trained_to, created_at, "
                "params, metrics) SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6, $7, $8 "
                "FROM models WHERE detector = $1 AND device_id = $2 RETURNING id, version",
                model.detector, model.device_id, model.status.value, model.trained_from, model.trained_to,
                model.created_at, model.params, json.dumps(model.metrics),
            )  # fmt: skip
        assert row is not None
        return replace(model, id=row["id"], version=row["version"])

    async def models(self, *, detector: str | None = None, device_id: str | None = None) -> list[ModelVersion]:
        pool = await self._get_pool()
        rows = await pool.fetch(
            f"SELECT {MODEL_COLUMNS} FROM models WHERE ($1::text IS NULL OR detector = $1) "
            "AND ($2::text IS NULL OR device_id = $2) ORDER BY created_at DESC, id DESC",
            detector,
            device_id,
        )
        return [model_from_row(r, _same) for r in rows]

    async def set_model_status(
        self, model_id: int, status: ModelStatus, *, expect: ModelStatus | None = None
    ) -> ModelVersion:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            # One status change per detector and device at a time (save_model's lock), taken before
            # any row lock: two promotions lock different rows, and without it each retires only the
            # live version its snapshot saw, so both end up live.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(7205, hashtext(detector || '/' || device_id)) FROM models WHERE id = $1",
                model_id,
            )
            row = await conn.fetchrow(f"SELECT {MODEL_COLUMNS} FROM models WHERE id = $1 FOR UPDATE", model_id)
            if row is None:
                raise NotFoundError("model", str(model_id))
            model = model_from_row(row, _same)
            check_expected(model, expect)
            if status is ModelStatus.LIVE:
                await conn.execute(
                    "UPDATE models SET status = 'retired' WHERE detector = $1 AND device_id = $2 AND status = 'live'",
                    model.detector,
                    model.device_id,
                )
            await conn.execute("UPDATE models SET status = $1 WHERE id = $2", status.value, model_id)
        return replace(model, status=status)

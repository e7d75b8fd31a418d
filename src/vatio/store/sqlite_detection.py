"""Detection results in SQLite: anomaly episodes, detector checkpoints, model versions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from vatio.errors import NotFoundError
from vatio.model import Anomaly, ModelStatus, ModelVersion
from vatio.model.instants import from_ms, to_ms
from vatio.store.detection_sql import (
    ANOMALY_COLUMNS,
    MODEL_COLUMNS,
    anomaly_from_row,
    anomaly_query,
    check_expected,
    migration,
    model_from_row,
)

T = TypeVar("T")

MIGRATION = migration(ts="INTEGER", blob="BLOB", serial="INTEGER PRIMARY KEY AUTOINCREMENT", real="REAL")


class SqliteDetectionMixin:
    """Mixed into :class:`~vatio.store.sqlite.SqliteStore` (needs ``_run`` and ``_db``)."""

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def _db(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def record_anomaly(self, anomaly: Anomaly) -> tuple[Anomaly, bool]:
        return await self._run(self._record_anomaly, anomaly)

    def _record_anomaly(self, a: Anomaly) -> tuple[Anomaly, bool]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                f"SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE device_id = ? AND kind = ? AND end_ts IS NULL",
                (a.device_id, a.kind),
            ).fetchone()
            if row is None:
                cursor = db.execute(
                    "INSERT INTO anomalies (device_id, kind, detector, start_ts, last_ts, end_ts, score, "
                    "expected_w, low_w, high_w, observed_w, explanation, model_version) "
                    "VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
                    (a.device_id, a.kind, a.detector, to_ms(a.start), to_ms(a.last), a.score, a.expected_w,
                     a.low_w, a.high_w, a.observed_w, a.explanation, a.model_version),
                )  # fmt: skip
                stored, opened = replace(a, id=cursor.lastrowid, end=None), True
            else:
                current = anomaly_from_row(row, from_ms)
                stored = replace(
                    a, id=current.id, start=current.start, last=max(current.last, a.last),
                    score=max(current.score, a.score), end=None,
                )  # fmt: skip
                db.execute(
                    "UPDATE anomalies SET last_ts = ?, score = ?, expected_w = ?, low_w = ?, high_w = ?, "
                    "observed_w = ?, explanation = ?, model_version = ? WHERE id = ?",
                    (to_ms(stored.last), stored.score, a.expected_w, a.low_w, a.high_w, a.observed_w,
                     a.explanation, a.model_version, current.id),
                )  # fmt: skip
                opened = False
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return stored, opened

    async def close_anomaly(self, device_id: str, kind: str, *, at: datetime) -> Anomaly | None:
        def _close() -> Anomaly | None:
            db = self._db()
            row = db.execute(
                f"SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE device_id = ? AND kind = ? AND end_ts IS NULL",
                (device_id, kind),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE anomalies SET end_ts = ? WHERE id = ?", (to_ms(at), row[0]))
            return replace(anomaly_from_row(row, from_ms), end=at)

        return await self._run(_close)

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
            placeholder=lambda _: "?", instant=to_ms, site_id=site_id, before=before,
        )  # fmt: skip

        def _query() -> list[Anomaly]:
            return [anomaly_from_row(r, from_ms) for r in self._db().execute(sql, params)]

        return await self._run(_query)

    async def get_anomaly(self, anomaly_id: int) -> Anomaly | None:
        def _get() -> Anomaly | None:
            row = self._db().execute(f"SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE id = ?", (anomaly_id,)).fetchone()
            return None if row is None else anomaly_from_row(row, from_ms)

        return await self._run(_get)

    async def save_states(self, detector: str, states: dict[str, bytes], *, at: datetime) -> None:
        rows = [(detector, device, state, to_ms(at)) for device, state in states.items()]

        def _save() -> None:
            self._db().executemany(
                "INSERT INTO detector_state VALUES (?, ?, ?, ?) ON CONFLICT (detector, device_id) "
                "DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at",
                rows,
            )

        await self._run(_save)

    async def load_states(self, detector: str) -> dict[str, bytes]:
        def _load() -> dict[str, bytes]:
            cursor = self._db().execute("SELECT device_id, state FROM detector_state WHERE detector = ?", (detector,))
            return {row[0]: bytes(row[1]) for row in cursor}

        return await self._run(_load)

    async def save_model(self, model: ModelVersion) -> ModelVersion:
        def _save() -> ModelVersion:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                version = (
                    1
                    + db.execute(
                        "SELECT coalesce(max(version), 0) FROM models WHERE detector = ? AND device_id = ?",
                        (model.detector, model.device_id),
                    ).fetchone()[0]
                )
                cursor = db.execute(
                    "INSERT INTO models (detector, device_id, version, status, trained_from, trained_to, "
                    "created_at, params, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (model.detector, model.device_id, version, model.status.value, to_ms(model.trained_from),
                     to_ms(model.trained_to), to_ms(model.created_at), model.params, json.dumps(model.metrics)),
                )  # fmt: skip
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return replace(model, id=cursor.lastrowid, version=version)

        return await self._run(_save)

    async def models(self, *, detector: str | None = None, device_id: str | None = None) -> list[ModelVersion]:
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if detector is not None:
            where.append("detector = ?")
            params.append(detector)
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        sql = f"SELECT {MODEL_COLUMNS} FROM models WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC"

        def _query() -> list[ModelVersion]:
            return [model_from_row(r, from_ms) for r in self._db().execute(sql, params)]

        return await self._run(_query)

    async def set_model_status(
        self, model_id: int, status: ModelStatus, *, expect: ModelStatus | None = None
    ) -> ModelVersion:
        def _set() -> ModelVersion:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(f"SELECT {MODEL_COLUMNS} FROM models WHERE id = ?", (model_id,)).fetchone()
                if row is None:
                    raise NotFoundError("model", str(model_id))
                model = model_from_row(row, from_ms)
                check_expected(model, expect)
                if status is ModelStatus.LIVE:
                    db.execute(
                        "UPDATE models SET status = 'retired' WHERE detector = ? AND device_id = ? AND status = 'live'",
                        (model.detector, model.device_id),
                    )
                db.execute("UPDATE models SET status = ? WHERE id = ?", (status.value, model_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return replace(model, status=status)

        return await self._run(_set)

"""Schema of detection results, shared in shape by both backends (migration 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from vatio.errors import ConflictError
from vatio.model import Anomaly, ModelStatus, ModelVersion

ANOMALY_COLUMNS = (
    "id, device_id, kind, detector, start_ts, last_ts, end_ts, score, expected_w, low_w, high_w, "
    "observed_w, explanation, model_version"
)
MODEL_COLUMNS = "id, detector, device_id, version, status, trained_from, trained_to, created_at, params, metrics"


def migration(*, ts: str, blob: str, serial: str, real: str) -> list[str]:
    """Migration 2 in the dialect given by its type names."""
    return [
        f"""CREATE TABLE anomalies (
            id {serial}, device_id text NOT NULL, kind text NOT NULL, detector text NOT NULL,
            start_ts {ts} NOT NULL, last_ts {ts} NOT NULL, end_ts {ts}, score {real} NOT NULL,
            expected_w {real}, low_w {real}, high_w {real}, observed_w {real},
            explanation text NOT NULL, model_version text NOT NULL)""",
        # At most one open episode per device and kind: what makes alerting idempotent.
        "CREATE UNIQUE INDEX anomalies_open ON anomalies (device_id, kind) WHERE end_ts IS NULL",
        "CREATE INDEX anomalies_device_start ON anomalies (device_id, start_ts)",
        f"""CREATE TABLE detector_state (
            detector text NOT NULL, device_id text NOT NULL, state {blob} NOT NULL,
            saved_at {ts} NOT NULL, PRIMARY KEY (detector, device_id))""",
        f"""CREATE TABLE models (
            id {serial}, detector text NOT NULL, device_id text NOT NULL, version integer NOT NULL,
            status text NOT NULL, trained_from {ts} NOT NULL, trained_to {ts} NOT NULL,
            created_at {ts} NOT NULL, params {blob} NOT NULL, metrics text NOT NULL,
            UNIQUE (detector, device_id, version))""",
    ]


def anomaly_query(
    *,
    device_id: str | None,
    start: datetime | None,
    end: datetime | None,
    open_only: bool,
    limit: int,
    placeholder: Callable[[int], str],
    instant: Callable[[datetime], object],
    site_id: str | None = None,
    before: tuple[datetime, int] | None = None,
) -> tuple[str, list[object]]:
    """SELECT of episodes overlapping ``[start, end)``, newest first, in the backend's dialect.

    ``placeholder(n)`` spells the n-th parameter (``?`` or ``$n``); ``instant``
    turns a datetime into the backend's timestamp value. ``site_id`` keeps
    episodes of that site's devices; ``before`` is the ``(start, id)`` of the
    last episode of the previous page (keyset pagination: stable under inserts).

    >>> anomaly_query(device_id="d", start=None, end=None, open_only=True, limit=5,
    ...               placeholder=lambda n: f"${n}", instant=str)[1]
    ['d', 5]
    """
    params: list[object] = []

    def arg(value: object) -> str:
        params.append(value)
        return placeholder(len(params))

    where = ["1 = 1"]
    if device_id is not None:
        where.append(f"device_id = {arg(device_id)}")
    if end is not None:
        where.append(f"start_ts < {arg(instant(end))}")
    if start is not None:
        where.append(f"(end_ts IS NULL OR end_ts >= {arg(instant(start))})")
    if open_only:
        where.append("end_ts IS NULL")
    if site_id is not None:
        where.append(f"device_id IN (SELECT device_id FROM devices WHERE site_id = {arg(site_id)})")
    if before is not None:
        at = instant(before[0])
        where.append(f"(start_ts < {arg(at)} OR (start_ts = {arg(at)} AND id < {arg(before[1])}))")
    sql = (
        f"SELECT {ANOMALY_COLUMNS} FROM anomalies WHERE {' AND '.join(where)} "
        f"ORDER BY start_ts DESC, id DESC LIMIT {arg(limit)}"
    )
    return sql, params


def anomaly_from_row(row: Any, to_dt: Any) -> Anomaly:
    return Anomaly(
        id=row[0],
        device_id=row[1],
        kind=row[2],
        detector=row[3],
        start=to_dt(row[4]),
        last=to_dt(row[5]),
        end=None if row[6] is None else to_dt(row[6]),
        score=row[7],
        expected_w=row[8],
        low_w=row[9],
        high_w=row[10],
        observed_w=row[11],
        explanation=row[12],
        model_version=row[13],
    )


def model_from_row(row: Any, to_dt: Any) -> ModelVersion:
    return ModelVersion(
        id=row[0],
        detector=row[1],
        device_id=row[2],
        version=row[3],
        status=ModelStatus(row[4]),
        trained_from=to_dt(row[5]),
        trained_to=to_dt(row[6]),
        created_at=to_dt(row[7]),
        params=bytes(row[8]),
        metrics=json.loads(row[9]),
    )


def check_expected(model: ModelVersion, expect: ModelStatus | None) -> None:
    """Raise :class:`ConflictError` unless ``model`` is in status ``expect`` (None: any)."""
    if expect is not None and model.status is not expect:
        raise ConflictError(
            f"model {model.id} is {model.status.value}, not {expect.value}",
            kind="model", key=str(model.id), state=model.status.value,
        )  # fmt: skip

"""Schema of detection results, shared in shape by both backends (migration 2)."""

from __future__ import annotations

import json
from typing import Any

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

"""Detected anomaly episodes, detector checkpoints and model versions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    """One anomaly episode of one device and kind: open while ``end`` is None.

    Consecutive anomalous readings extend the open episode (``last``, the
    peak ``score``, the newest numbers) rather than raising a new one.
    """

    device_id: str
    kind: str
    detector: str
    start: datetime
    last: datetime
    score: float
    explanation: str
    end: datetime | None = None
    expected_w: float | None = None
    low_w: float | None = None
    high_w: float | None = None
    observed_w: float | None = None
    model_version: str = ""
    id: int | None = None


class ModelStatus(enum.StrEnum):
    LIVE = "live"
    SHADOW = "shadow"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersion:
    """A trained model of one detector for one device (or ``*`` for all)."""

    detector: str
    device_id: str
    version: int
    status: ModelStatus
    trained_from: datetime
    trained_to: datetime
    created_at: datetime
    params: bytes = b""
    metrics: dict[str, float] = field(default_factory=dict)
    id: int | None = None

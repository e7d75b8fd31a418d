"""Pure domain types shared by every stage. No I/O here."""

from vatio.model.detection import Anomaly, ModelStatus, ModelVersion
from vatio.model.reading import (
    MEASUREMENTS,
    DeadLetter,
    Device,
    Reading,
    StoreStats,
    WriteBatch,
    WriteResult,
)
from vatio.model.series import (
    BUCKET_SECONDS,
    EnergyBucket,
    EnergyPeriod,
    Resolution,
    RollupRow,
)

__all__ = [
    "BUCKET_SECONDS",
    "MEASUREMENTS",
    "Anomaly",
    "DeadLetter",
    "Device",
    "EnergyBucket",
    "EnergyPeriod",
    "ModelStatus",
    "ModelVersion",
    "Reading",
    "Resolution",
    "RollupRow",
    "StoreStats",
    "WriteBatch",
    "WriteResult",
]

"""Pure domain types shared by every stage. No I/O here."""

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
    "DeadLetter",
    "Device",
    "EnergyBucket",
    "EnergyPeriod",
    "Reading",
    "Resolution",
    "RollupRow",
    "StoreStats",
    "WriteBatch",
    "WriteResult",
]

"""Pure domain types shared by every stage. No I/O here."""

from vatio.model.alert import Alert, AlertState, AuditEntry, Mute, OutboxMessage, Severity
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
    SiteBucket,
)
from vatio.model.tariff import Rate, Site, Tariff, TariffHistory

__all__ = [
    "BUCKET_SECONDS",
    "MEASUREMENTS",
    "Alert",
    "AlertState",
    "Anomaly",
    "AuditEntry",
    "DeadLetter",
    "Device",
    "EnergyBucket",
    "EnergyPeriod",
    "ModelStatus",
    "ModelVersion",
    "Mute",
    "OutboxMessage",
    "Rate",
    "Reading",
    "Resolution",
    "RollupRow",
    "Severity",
    "Site",
    "SiteBucket",
    "StoreStats",
    "Tariff",
    "TariffHistory",
    "WriteBatch",
    "WriteResult",
]

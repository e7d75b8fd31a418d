"""The one storage protocol every backend implements.

Backends: :mod:`vatio.store.sqlite` (embedded default) and
:mod:`vatio.store.postgres` (production). Both pass the same contract suite in
``tests/integration/test_store_contract.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from vatio.model import (
    Anomaly,
    DeadLetter,
    Device,
    EnergyBucket,
    EnergyPeriod,
    ModelStatus,
    ModelVersion,
    Reading,
    Resolution,
    RollupRow,
    StoreStats,
    WriteBatch,
    WriteResult,
)

#: A device is online while its last reading is younger than this.
ONLINE_WINDOW = timedelta(minutes=5)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs.

    >>> redact("postgresql://vatio:s3cret@db:5432/vatio")
    'postgresql://vatio:***@db:5432/vatio'
    """
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What :meth:`Store.apply_retention` removed."""

    readings_deleted: int
    partitions_dropped: int
    cutoff: datetime


@runtime_checkable
class Store(Protocol):
    """Time-series store of readings, rollups and dead letters.

    Contract:

    * ``write`` is atomic and idempotent on ``(device_id, ts)``: writing the
      same batch twice stores it once; overlapping batches merge; the first
      stored reading for a ``(device_id, ts)`` wins.
    * Every write marks the touched time range of each device dirty, in the
      same transaction; ``refresh_rollups`` recomputes dirty ranges, so
      rollups are right after late or out-of-order data.
    * Energy per bucket comes from the cumulative counter with reset and
      meter-replacement handling, else from integrating power
      (see :mod:`vatio.store.energy`).
    """

    url: str

    async def migrate(self) -> None:
        """Create or upgrade the schema; harmless when already current."""

    async def close(self) -> None:
        """Release connections."""

    async def write(self, batch: WriteBatch) -> WriteResult:
        """Commit readings, device sightings and dead letters in one transaction."""

    async def set_device_status(
        self, device_id: str, site_id: str, *, online: bool, firmware: str | None, at: datetime
    ) -> None:
        """Record a device's self-reported status (the retained status topic)."""

    async def list_devices(self, *, now: datetime | None = None) -> list[Device]:
        """All known devices, ``online`` derived from freshness at ``now``."""

    async def get_device(self, device_id: str, *, now: datetime | None = None) -> Device | None:
        """One device, or ``None``."""

    async def readings(
        self, device_id: str, start: datetime, end: datetime, *, limit: int | None = None
    ) -> list[Reading]:
        """Raw readings with ``start <= ts < end``, oldest first."""

    async def rollups(self, device_id: str, start: datetime, end: datetime, resolution: Resolution) -> list[RollupRow]:
        """Buckets of one rollup tier whose start lies in ``[start, end)``."""

    async def energy(
        self,
        device_id: str,
        start: datetime,
        end: datetime,
        period: EnergyPeriod,
        *,
        tz: str = "UTC",
    ) -> list[EnergyBucket]:
        """Energy per hour, day or month in time zone ``tz`` over ``[start, end)``."""

    async def refresh_rollups(self, *, max_ranges: int = 1000) -> int:
        """Recompute rollups for dirty ranges; returns how many ranges it did."""

    async def apply_retention(self, *, raw_days: int, now: datetime | None = None) -> RetentionResult:
        """Drop raw readings older than ``raw_days``; rollups are kept."""

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        """Newest dead letters first."""

    async def stats(self) -> StoreStats:
        """Counts of readings, devices, dead letters, rollup rows, pending ranges."""

    # -- detection -------------------------------------------------------------------
    async def record_anomaly(self, anomaly: Anomaly) -> tuple[Anomaly, bool]:
        """Open an episode for ``(device_id, kind)`` or extend the open one.

        Returns the stored episode and whether it was newly opened — what
        alerting keys on, so a restarted detector raises no second alert.
        """

    async def close_anomaly(self, device_id: str, kind: str, *, at: datetime) -> Anomaly | None:
        """Close the open episode of ``(device_id, kind)``, if any."""

    async def anomalies(
        self,
        *,
        device_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        open_only: bool = False,
        limit: int = 100,
    ) -> list[Anomaly]:
        """Episodes overlapping ``[start, end)``, newest first."""

    async def save_states(self, detector: str, states: dict[str, bytes], *, at: datetime) -> None:
        """Checkpoint per-device detector state (replaces the previous checkpoint)."""

    async def load_states(self, detector: str) -> dict[str, bytes]:
        """The last checkpoint of every device for ``detector``."""

    async def save_model(self, model: ModelVersion) -> ModelVersion:
        """Store a new model version (its ``version`` is assigned: previous + 1)."""

    async def models(self, *, detector: str | None = None, device_id: str | None = None) -> list[ModelVersion]:
        """Model versions, newest first."""

    async def set_model_status(self, model_id: int, status: ModelStatus) -> ModelVersion:
        """Change a version's status; promoting to live retires the previous live one."""


async def write_all(store: Store, readings: Sequence[Reading], site_id: str) -> WriteResult:
    """Convenience for tests and tools: write readings of one site in one batch."""
    batch = WriteBatch(readings=list(readings))
    for reading in readings:
        batch.sites[reading.device_id] = site_id
        seen = batch.last_seen.get(reading.device_id)
        if seen is None or reading.ts > seen:
            batch.last_seen[reading.device_id] = reading.ts
    return await store.write(batch)

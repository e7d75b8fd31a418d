"""Readings, devices and the units of work that flow into the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

#: Optional measurement fields of a reading, in wire and storage order.
MEASUREMENTS: tuple[str, ...] = (
    "power_w",
    "energy_wh",
    "voltage_v",
    "current_a",
    "power_factor",
    "frequency_hz",
    "energy_export_wh",
)


class Reading(NamedTuple):
    """One validated meter reading.

    A ``NamedTuple`` on purpose: the ingest hot path builds hundreds of
    thousands a second and the PostgreSQL backend copies them as rows as they
    are. Field order is the storage column order.

    ``ts`` is timezone-aware UTC; ``energy_wh`` is the cumulative import
    counter (it may reset; the store handles that) and ``seq`` the per-device
    counter that only grows.

    >>> from datetime import UTC, datetime
    >>> r = Reading("plug-7", datetime(2026, 11, 24, 10, tzinfo=UTC), 41, power_w=123.4)
    >>> r.power_w, r.energy_wh
    (123.4, None)
    """

    device_id: str
    ts: datetime
    seq: int | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    power_factor: float | None = None
    frequency_hz: float | None = None
    energy_export_wh: float | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """A device as the store knows it; ``online`` is derived from data freshness."""

    device_id: str
    site_id: str
    first_seen: datetime
    last_seen: datetime
    online: bool = False
    firmware: str | None = None
    status_online: bool | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that did not match the contract, kept byte for byte with its reason."""

    received_at: datetime
    topic: str
    reason: str
    payload: bytes
    id: int | None = None


@dataclass(slots=True)
class WriteBatch:
    """One unit of work committed atomically: readings, sightings and dead letters.

    ``sites`` maps each device of the batch to the site it published under;
    ``last_seen`` holds the newest receive time per device.
    """

    readings: list[Reading] = field(default_factory=list)
    sites: dict[str, str] = field(default_factory=dict)
    last_seen: dict[str, datetime] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.readings) + len(self.dead_letters)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: ``inserted`` new readings, ``duplicates`` already stored.

    ``too_old`` readings were older than the store's raw-retention cutoff and
    went to dead letters instead (counted in ``dead_letters`` as one per device).
    """

    inserted: int
    duplicates: int
    dead_letters: int
    too_old: int = 0


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts for `vatio db stats`."""

    readings: int
    devices: int
    dead_letters: int
    rollup_rows: int
    pending_rollups: int

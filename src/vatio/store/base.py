"""The one storage protocol every backend implements.

Backends: :mod:`vatio.store.sqlite` (embedded default) and
:mod:`vatio.store.postgres` (production). Both pass the same contract suite in
``tests/integration/test_store_contract.py``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from vatio.model import (
    Alert,
    AlertState,
    Anomaly,
    AuditEntry,
    DeadLetter,
    Device,
    EnergyBucket,
    EnergyPeriod,
    ModelStatus,
    ModelVersion,
    Mute,
    OutboxMessage,
    Reading,
    Resolution,
    RollupRow,
    Severity,
    Site,
    SiteBucket,
    StoreStats,
    Tariff,
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
        """Commit readings, device sightings and dead letters in one transaction.

        Readings older than the newest retention cutoff applied become dead letters
        instead (:mod:`vatio.store.late`): their rollups could not be recomputed.
        """

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

    async def last_reading_at(self, device_id: str, *, near: datetime | None = None) -> datetime | None:
        """Timestamp of the device's newest stored reading, or ``None``.

        ``near`` (e.g. the device's ``last_seen``) is a hint where to look
        first; the answer does not depend on it.
        """

    async def rollups(
        self, device_id: str, start: datetime, end: datetime, resolution: Resolution, *, limit: int | None = None
    ) -> list[RollupRow]:
        """Buckets of one rollup tier whose start lies in ``[start, end)``; the first ``limit`` when given."""

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
        """Drop raw readings older than ``raw_days``; rollups are kept.

        The cutoff is recorded (it never moves back): later writes refuse readings older than it.
        """

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
        site_id: str | None = None,
        before: tuple[datetime, int] | None = None,
    ) -> list[Anomaly]:
        """Episodes overlapping ``[start, end)``, newest first (``start`` then ``id`` descending).

        ``site_id`` keeps the episodes of that site's devices; ``before`` is the
        ``(start, id)`` of the last episode of the previous page (keyset pagination).
        """

    async def get_anomaly(self, anomaly_id: int) -> Anomaly | None:
        """One episode by id, or ``None``."""

    async def save_states(self, detector: str, states: dict[str, bytes], *, at: datetime) -> None:
        """Checkpoint per-device detector state (replaces the previous checkpoint)."""

    async def load_states(self, detector: str) -> dict[str, bytes]:
        """The last checkpoint of every device for ``detector``."""

    async def save_model(self, model: ModelVersion) -> ModelVersion:
        """Store a new model version (its ``version`` is assigned: previous + 1)."""

    async def models(self, *, detector: str | None = None, device_id: str | None = None) -> list[ModelVersion]:
        """Model versions, newest first."""

    async def set_model_status(
        self, model_id: int, status: ModelStatus, *, expect: ModelStatus | None = None
    ) -> ModelVersion:
        """Change a version's status; promoting to live retires the previous live one.

        Raises :class:`~vatio.errors.NotFoundError` for an unknown id and, when
        ``expect`` is given, :class:`~vatio.errors.ConflictError` unless the
        version is in that status (checked in the same transaction as the change).
        """

    # -- alerts, audit, mutes, outbox (migration 3) -----------------------------------
    # Contract: a transition, its audit entry and its outbox messages commit together
    # or not at all; each episode joins at most one alert (ConflictError otherwise).
    async def create_alert(self, alert: Alert, audit: AuditEntry, outbox: Sequence[OutboxMessage]) -> Alert:
        """Insert an alert for its episode ``alert.anomaly_id``, with audit and outbox; returns it with ``id``."""

    async def update_alert(
        self, alert: Alert, audit: AuditEntry | None, outbox: Sequence[OutboxMessage], *, attach_episode: bool = False
    ) -> Alert:
        """Store ``alert`` if the stored version is still ``alert.version`` (else ConflictError); version + 1.

        ``attach_episode`` records ``alert.anomaly_id`` as handled by this alert in the same transaction.
        """

    async def skip_episode(self, anomaly_id: int) -> None:
        """Mark an episode handled without an alert (idempotent)."""

    async def unprocessed_episodes(self, *, limit: int = 1000) -> list[Anomaly]:
        """Episodes no alert has handled or skipped yet, oldest id first."""

    async def get_alert(self, alert_id: int) -> Alert | None:
        """One alert, or ``None``."""

    async def alerts(
        self,
        *,
        site_id: str | None = None,
        device_id: str | None = None,
        kind: str | None = None,
        states: Sequence[AlertState] | None = None,
        severity: Severity | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts matching every given filter, newest (highest id) first; ``before_id`` pages."""

    async def alert_audit(self, alert_id: int) -> list[AuditEntry]:
        """An alert's transitions, oldest first."""

    async def add_mute(self, mute: Mute) -> Mute:
        """Store a mute; returns it with its ``id``."""

    async def mutes(self, *, active_at: datetime | None = None) -> list[Mute]:
        """Mutes (only those not expired at ``active_at`` when given), oldest first."""

    async def delete_mute(self, mute_id: int) -> None:
        """Remove a mute; NotFoundError when there is none with that id."""

    async def claim_outbox(self, *, now: datetime, lease_until: datetime, limit: int = 100) -> list[OutboxMessage]:
        """Due messages, each leased (``next_attempt_at`` moved to ``lease_until``) so no other worker sends it."""

    async def outbox_delivered(self, message_id: str, *, at: datetime) -> bool:
        """Mark a message delivered; False when it already was (it is marked exactly once)."""

    async def outbox_failed(self, message_id: str, *, at: datetime, error: str, retry_at: datetime | None) -> None:
        """Record a failed attempt: retry at ``retry_at``, or give up for good when it is None."""

    async def outbox_messages(self, *, alert_id: int | None = None) -> list[OutboxMessage]:
        """Outbox rows (of one alert when given), oldest first."""

    # -- sites and tariffs (migration 4) -----------------------------------------------
    async def put_site(self, site: Site) -> Site:
        """Create or replace a site's settings (time zone, currency, peak-demand limit, main meters)."""

    async def get_site(self, site_id: str) -> Site | None:
        """A site's stored settings, or ``None`` when it has none (its devices may still exist)."""

    async def list_sites(self) -> list[Site]:
        """Every site with stored settings, by id."""

    async def put_tariff(self, site_id: str, tariff: Tariff) -> Tariff:
        """Add a tariff to a site's history; one with the same ``effective_from`` is replaced.

        Returns the stored tariff with its ``id``. Costs are computed at query
        time, so a tariff effective in the past changes every cost from then on.
        """

    async def tariffs(self, site_id: str) -> list[Tariff]:
        """A site's tariffs, oldest ``effective_from`` first."""

    async def delete_tariff(self, site_id: str, tariff_id: int) -> None:
        """Remove one tariff; :class:`~vatio.errors.NotFoundError` when the site has no such tariff."""

    async def site_rollups(
        self,
        site_id: str,
        start: datetime,
        end: datetime,
        resolution: Resolution,
        devices: Sequence[str] | None = None,
        *,
        utc_hours: Collection[int] | None = None,
    ) -> list[SiteBucket]:
        """Rollup buckets in ``[start, end)`` summed over the devices of ``site_id`` (only ``devices`` if given).

        With ``utc_hours``, only the buckets that start in those hours of the UTC day (0-23).
        """


async def write_all(store: Store, readings: Sequence[Reading], site_id: str) -> WriteResult:
    """Convenience for tests and tools: write readings of one site in one batch."""
    batch = WriteBatch(readings=list(readings))
    for reading in readings:
        batch.sites[reading.device_id] = site_id
        seen = batch.last_seen.get(reading.device_id)
        if seen is None or reading.ts > seen:
            batch.last_seen[reading.device_id] = reading.ts
    return await store.write(batch)

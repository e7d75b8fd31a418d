"""Backend-neutral pieces of rollup maintenance and energy queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vatio.errors import ConfigError
from vatio.model import BUCKET_SECONDS, EnergyBucket, EnergyPeriod, Reading, Resolution, RollupRow
from vatio.model.instants import to_ms
from vatio.store.energy import MINUTE_MS

#: Tiers derived from the 1-minute tier, in seconds.
DERIVED_TIERS: tuple[int, ...] = tuple(
    BUCKET_SECONDS[r] for r in (Resolution.MIN_15, Resolution.HOUR_1, Resolution.DAY_1)
)


def dirty_ranges(readings: Iterable[Reading]) -> dict[str, tuple[int, int]]:
    """Per device, the oldest and newest timestamp (ms) a batch touches."""
    spans: dict[str, tuple[int, int]] = {}
    for reading in readings:
        ms = to_ms(reading.ts)
        span = spans.get(reading.device_id)
        if span is None:
            spans[reading.device_id] = (ms, ms)
        elif ms < span[0]:
            spans[reading.device_id] = (ms, span[1])
        elif ms > span[1]:
            spans[reading.device_id] = (span[0], ms)
    return spans


#: How far a sparse counter reaches: a window's energy comes from the nearest
#: counter reading on either side within this span.
COUNTER_REACH_MS = 86_400_000


def minute_window(start_ms: int, end_ms: int, *later_ms: int | None) -> tuple[int, int]:
    """First and last 1-minute bucket (ms) to recompute for a dirty range.

    A late reading changes the energy of the interval ending at the next
    reading (and at the next counter reading, for sparse counters), so the
    window reaches them (``later_ms``); it starts one bucket early because an
    interval ending exactly on a bucket boundary belongs to the bucket before.
    """
    end = max([end_ms, *(ms for ms in later_ms if ms is not None)])
    return start_ms - start_ms % MINUTE_MS - MINUTE_MS, end - end % MINUTE_MS


def tier_span(first_bucket_ms: int, last_bucket_ms: int, tier_s: int) -> tuple[int, int]:
    """Buckets (seconds) of a derived tier that cover a 1-minute window."""
    first = first_bucket_ms // 1000
    last = last_bucket_ms // 1000
    return first - first % tier_s, last - last % tier_s


def resolution_seconds(resolution: Resolution) -> int:
    if resolution is Resolution.RAW:
        raise ConfigError("raw resolution has no rollup tier")
    return BUCKET_SECONDS[resolution]


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {tz!r}") from exc


def energy_buckets(rows: Iterable[RollupRow], period: EnergyPeriod, tz: str) -> list[EnergyBucket]:
    """Sum hourly rollups into local hours, days or months of ``tz``.

    Hourly UTC buckets map onto local hours exactly in zones with whole-hour
    offsets, DST included; half-hour zones attribute each UTC hour to the
    local period its start falls in.
    """
    local = zone(tz)
    # Keyed by the UTC instant: the two local 02:00 hours of an autumn DST night
    # compare equal as wall-clock datetimes but are different hours.
    totals: dict[datetime, float] = defaultdict(float)
    for row in rows:
        at = row.bucket.astimezone(local)
        if period is EnergyPeriod.HOUR:
            key = at.replace(minute=0, second=0, microsecond=0)
        else:
            key = at.replace(hour=0, minute=0, second=0, microsecond=0)
            if period is EnergyPeriod.MONTH:
                key = key.replace(day=1)
            # Local midnight may have another UTC offset than `at`: re-resolve it.
            key = key.replace(tzinfo=None).replace(tzinfo=local)
        totals[key.astimezone(UTC)] += row.energy_wh
    return [EnergyBucket(start=key.astimezone(local), energy_wh=round(totals[key], 6)) for key in sorted(totals)]


def local_date_buckets(totals: Iterable[tuple[date, float]], tz: str) -> list[EnergyBucket]:
    """Day or month buckets from energy summed per local start date, as :func:`energy_buckets` makes them.

    For backends that sum in the database: each ``(date, energy_wh)`` is a
    local day (or a month's first day) of ``tz`` in ascending order; the bucket
    starts at its local midnight, resolved exactly as ``energy_buckets`` does.

    >>> [b.start.isoformat() for b in local_date_buckets([(date(2026, 3, 29), 1.5)], "Europe/Paris")]
    ['2026-03-29T00:00:00+01:00']
    """
    local = zone(tz)
    return [
        EnergyBucket(
            start=datetime(day.year, day.month, day.day, tzinfo=local).astimezone(UTC).astimezone(local),
            energy_wh=round(energy_wh, 6),
        )
        for day, energy_wh in totals
    ]

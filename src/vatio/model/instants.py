"""Exact conversions between aware datetimes and epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(ts: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding).

    >>> to_ms(datetime(2026, 11, 24, 10, 0, 0, 123000, tzinfo=UTC))
    1795514400123
    """
    return (ts - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of epoch milliseconds.

    >>> from_ms(1795514400123).isoformat()
    '2026-11-24T10:00:00.123000+00:00'
    """
    return EPOCH + ms * _MS


def utcnow() -> datetime:
    return datetime.now(UTC)

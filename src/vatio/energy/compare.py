"""Like-for-like comparison windows: this week against last, this month against the same month last year.

A period in progress is compared with the same stretch of the previous one:
from this week's Monday 00:00 to now against from last week's Monday 00:00
to the same weekday and time last week (local wall clock of the site's zone,
so a DST change in either week does not shift the comparison). The month
compares the 1st 00:00 to now against the same span of the same month last
year, the day clamped to that month's length (29 February → 28 February).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class ComparePeriod(StrEnum):
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` as aware datetimes in the site's zone."""

    start: datetime
    end: datetime


def _localize(naive: datetime, tz: ZoneInfo) -> datetime:
    # Re-resolve a wall-clock time in its own zone: its UTC offset may differ from the reference's.
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def _year_earlier(naive: datetime) -> datetime:
    try:
        return naive.replace(year=naive.year - 1)
    except ValueError:  # 29 February
        return naive.replace(year=naive.year - 1, day=28)


def windows(period: ComparePeriod, now: datetime, tz: ZoneInfo) -> tuple[Window, Window]:
    """The current window (period start to ``now``) and the previous like-for-like one.

    >>> paris = ZoneInfo("Europe/Paris")
    >>> cur, prev = windows(ComparePeriod.WEEK, datetime(2026, 4, 1, 10, tzinfo=UTC), paris)
    >>> [w.isoformat() for w in (cur.start, cur.end, prev.start, prev.end)]
    ['2026-03-30T00:00:00+02:00', '2026-04-01T12:00:00+02:00', '2026-03-23T00:00:00+01:00', '2026-03-25T12:00:00+01:00']
    """
    local = now.astimezone(tz).replace(tzinfo=None)
    if period is ComparePeriod.WEEK:
        start = datetime.combine(local.date() - timedelta(days=local.weekday()), datetime.min.time())
        shift = timedelta(days=7)
        prev_start, prev_end = start - shift, local - shift
    else:
        start = datetime.combine(date(local.year, local.month, 1), datetime.min.time())
        prev_start, prev_end = _year_earlier(start), _year_earlier(local)
    current = Window(_localize(start, tz), now.astimezone(tz))
    return current, Window(_localize(prev_start, tz), _localize(prev_end, tz))


def change_pct(current: float, previous: float) -> float | None:
    """Relative change in percent; ``None`` when there is nothing to compare with.

    >>> change_pct(90.0, 120.0)
    -25.0
    >>> change_pct(5.0, 0.0) is None
    True
    """
    if previous == 0:
        return None
    return (current - previous) / previous * 100.0

"""The always-on (baseload) power of a site and what it costs a year.

Baseload is a low percentile (the 5th by default) of the site's 15-minute mean
power over the last days: low enough to ignore appliances, high enough to
ignore a single odd dip. Gaps are excluded: a bucket counts only when every
device that reported power in the window reported in it, so a meter that
drops out does not make the house look idle. The percentile is the nearest
rank (``inverted_cdf``): the baseload is a power the site actually drew.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vatio.model import SiteBucket

HOURS_PER_YEAR = 8760.0
DEFAULT_PERCENTILE = 5.0


@dataclass(frozen=True, slots=True)
class Baseload:
    """The always-on power and its yearly energy; ``baseload_w`` ``None`` without complete buckets."""

    baseload_w: float | None
    method: str
    buckets: int
    yearly_kwh: float | None


def baseload(buckets: Sequence[SiteBucket], *, days: int, percentile: float = DEFAULT_PERCENTILE) -> Baseload:
    """Baseload of a site from its 15-minute buckets of the last ``days`` days.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> rows = [SiteBucket(t0 + timedelta(minutes=15 * k), 1, 100.0 + k, 0.0, 0.0) for k in range(20)]
    >>> result = baseload(rows, days=1)
    >>> result.baseload_w, result.yearly_kwh
    (100.0, 876.0)
    """
    devices = max((b.devices for b in buckets), default=0)
    powers = np.array([b.power_w for b in buckets if b.devices == devices and b.power_w is not None], dtype=float)
    method = f"p{percentile:g} of 15-min mean power over {days} days, incomplete buckets excluded"
    if devices == 0 or len(powers) == 0:
        return Baseload(baseload_w=None, method=method, buckets=0, yearly_kwh=None)
    value = float(np.percentile(powers, percentile, method="inverted_cdf"))
    return Baseload(
        baseload_w=value,
        method=method,
        buckets=len(powers),
        yearly_kwh=value * HOURS_PER_YEAR / 1000.0,
    )

"""A device's power history for charts: server-side downsampling plus the anomaly episodes in view.

``GET /api/v1/devices/{id}/history?start&end&points=2000`` answers the finest
resolution (raw, 1m, 15m, 1h, 1d) whose series has at most ``points`` points,
so a browser never receives more than it can draw, however long the range.
``resolution=1m`` (the dashboard's resolution switch) makes that the finest
allowed: a range holding more than ``points`` minutes comes back coarser, and
``resolution`` in the answer says which tier was sent.
When even daily buckets are too many (ranges of decades), consecutive days
are merged into wider buckets (``bucket_s`` says how wide).

Choice of resolution:

* the range is first narrowed to where the device has data (its first daily
  rollup; its last sighting plus the clock skew the wire contract accepts),
  so a week of data in a year-long window is not drawn at daily resolution;
* raw is chosen when the raw readings in range fit and retention has not
  trimmed them (daily rollups that predate the first raw reading mean raw is
  incomplete there: the rollups are kept for years, raw readings only days);
* a rollup tier is chosen when the number of its buckets the range can hold
  fits: an upper bound, so the answer is never larger than ``points``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from vatio.api.deps import RangeDep, StoreDep
from vatio.api.routers.devices import BAD_REQUEST, NOT_FOUND, DeviceId
from vatio.contracts import Limits
from vatio.errors import NotFoundError
from vatio.model import BUCKET_SECONDS, Anomaly, Reading, Resolution, RollupRow
from vatio.store import Store

router = APIRouter(prefix="/api/v1/devices", tags=["history"])

#: Most points one answer may carry.
MAX_POINTS = 5000
DEFAULT_POINTS = 2000
#: Anomaly episodes returned with one history at most (newest kept).
MAX_EPISODES = 500
DAY_S = BUCKET_SECONDS[Resolution.DAY_1]
MAX_CLOCK_AHEAD = Limits().max_future
#: Rollup tiers finer than a day, finest first.
FINE_TIERS = (Resolution.MIN_1, Resolution.MIN_15, Resolution.HOUR_1)


class HistoryPoint(BaseModel):
    ts: datetime = Field(description="reading time, or bucket start (UTC)")
    power_w: float | None = Field(description="the reading, or the bucket's mean power")
    min_w: float | None
    max_w: float | None


class HistoryAnomaly(BaseModel):
    id: int | None
    kind: str
    detector: str
    start: datetime
    last: datetime
    end: datetime | None = Field(description="null while the episode is open")
    score: float
    low_w: float | None
    high_w: float | None
    expected_w: float | None
    observed_w: float | None
    explanation: str

    @classmethod
    def of(cls, a: Anomaly) -> HistoryAnomaly:
        return cls(
            id=a.id,
            kind=a.kind,
            detector=a.detector,
            start=a.start,
            last=a.last,
            end=a.end,
            score=a.score,
            low_w=a.low_w,
            high_w=a.high_w,
            expected_w=a.expected_w,
            observed_w=a.observed_w,
            explanation=a.explanation,
        )


class History(BaseModel):
    device: str
    resolution: Resolution
    bucket_s: int | None = Field(description="width of each point in seconds; null for raw readings")
    start: datetime
    end: datetime
    points: list[HistoryPoint]
    anomalies: list[HistoryAnomaly] = Field(description="episodes overlapping the range, oldest first")


def bucket_bound(start: datetime, end: datetime, width_s: int) -> int:
    """How many UTC-aligned buckets of ``width_s`` seconds ``[start, end)`` touches at most.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> bucket_bound(t, t + timedelta(hours=1), 60)
    60
    >>> bucket_bound(t + timedelta(seconds=30), t + timedelta(minutes=2), 60)
    2
    """
    lo = int(start.timestamp()) // width_s
    hi = -(-int(end.timestamp() * 1000) // (width_s * 1000))
    return max(hi - lo, 0)


def floor_to(ts: datetime, width_s: int) -> datetime:
    """``ts`` rounded down to a UTC-aligned multiple of ``width_s`` seconds."""
    return datetime.fromtimestamp(int(ts.timestamp()) // width_s * width_s, UTC)


def merge_buckets(rows: list[RollupRow], width_s: int) -> list[HistoryPoint]:
    """Rollup rows combined into wider UTC-aligned buckets: exact mean, min of mins, max of maxes.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> rows = [RollupRow("d", t + timedelta(days=i), 1, 1, 100.0 * i, 100.0 * i, 100.0 * i, 0.0) for i in range(3)]
    >>> [(p.power_w, p.min_w, p.max_w) for p in merge_buckets(rows, 2 * DAY_S)]
    [(50.0, 0.0, 100.0), (200.0, 200.0, 200.0)]
    """
    points: list[HistoryPoint] = []
    group: list[RollupRow] = []
    for row in rows:
        if group and floor_to(row.bucket, width_s) != floor_to(group[0].bucket, width_s):
            points.append(_merged(group, width_s))
            group = []
        group.append(row)
    if group:
        points.append(_merged(group, width_s))
    return points


def _merged(group: list[RollupRow], width_s: int) -> HistoryPoint:
    count = sum(r.power_count for r in group)
    mins = [r.power_min_w for r in group if r.power_min_w is not None]
    maxes = [r.power_max_w for r in group if r.power_max_w is not None]
    return HistoryPoint(
        ts=floor_to(group[0].bucket, width_s),
        power_w=sum(r.power_sum_w for r in group) / count if count else None,
        min_w=min(mins) if mins else None,
        max_w=max(maxes) if maxes else None,
    )


def _raw_point(r: Reading) -> HistoryPoint:
    return HistoryPoint(ts=r.ts, power_w=r.power_w, min_w=r.power_w, max_w=r.power_w)


def _bucket_point(r: RollupRow) -> HistoryPoint:
    return HistoryPoint(ts=r.bucket, power_w=r.power_mean_w, min_w=r.power_min_w, max_w=r.power_max_w)


async def downsample(
    store: Store,
    device_id: str,
    start: datetime,
    end: datetime,
    points: int,
    *,
    finest: Resolution = Resolution.RAW,
) -> tuple[Resolution, int | None, list[HistoryPoint]]:
    """The finest series of ``device_id`` over ``[start, end)`` with at most ``points`` points.

    Nothing finer than ``finest`` is used; a coarser one is answered when ``finest`` does not fit.
    """
    days = await store.rollups(device_id, floor_to(start, DAY_S), end, Resolution.DAY_1)
    if days:
        start = max(start, days[0].bucket)
    if start >= end:
        return finest, None if finest is Resolution.RAW else BUCKET_SECONDS[finest], []
    if finest is Resolution.RAW:
        raw = await store.readings(device_id, start, end, limit=points + 1)
        first_raw_day = floor_to(raw[0].ts, DAY_S) if raw else floor_to(end, DAY_S)
        trimmed = bool(days) and days[0].bucket < first_raw_day
        if len(raw) <= points and not trimmed:
            return Resolution.RAW, None, [_raw_point(r) for r in raw]
    for tier in FINE_TIERS:
        width = BUCKET_SECONDS[tier]
        if finest is not Resolution.RAW and width < BUCKET_SECONDS[finest]:
            continue
        if bucket_bound(start, end, width) <= points:
            rows = await store.rollups(device_id, floor_to(start, width), end, tier)
            return tier, width, [_bucket_point(r) for r in rows]
    days = [d for d in days if d.bucket >= floor_to(start, DAY_S)]
    merge = -(-bucket_bound(start, end, DAY_S) // points)
    while bucket_bound(start, end, merge * DAY_S) > points:
        merge += 1
    if merge <= 1:
        return Resolution.DAY_1, DAY_S, [_bucket_point(r) for r in days]
    return Resolution.DAY_1, merge * DAY_S, merge_buckets(days, merge * DAY_S)


@router.get("/{device_id}/history", response_model=History, responses=NOT_FOUND | BAD_REQUEST)
async def history(
    device_id: DeviceId,
    store: StoreDep,
    span: RangeDep,
    points: Annotated[int, Query(ge=10, le=MAX_POINTS, description="most points to return")] = DEFAULT_POINTS,
    resolution: Annotated[
        Resolution,
        Query(description="the finest resolution wanted; a coarser one is answered when it does not fit `points`"),
    ] = Resolution.RAW,
) -> History:
    """Power over ``[start, end)`` at the finest resolution that fits ``points``, and its anomalies."""
    device = await store.get_device(device_id)
    if device is None:
        raise NotFoundError("device", device_id)
    start, end = (t.astimezone(UTC) for t in span)
    # A narrower range allows a finer resolution. ``last_seen`` is the ingest's clock, and a
    # meter's clock may run ahead of it by as much as the wire contract accepts.
    data_end = min(end, device.last_seen + MAX_CLOCK_AHEAD)
    answered, bucket_s, series = await downsample(store, device_id, start, data_end, points, finest=resolution)
    episodes = await store.anomalies(device_id=device_id, start=start, end=end, limit=MAX_EPISODES)
    return History(
        device=device_id,
        resolution=answered,
        bucket_s=bucket_s,
        start=start,
        end=end,
        points=series,
        anomalies=[HistoryAnomaly.of(a) for a in reversed(episodes)],
    )

"""Devices, their readings at any resolution, and their energy."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from vatio.api.deps import RangeDep, StoreDep
from vatio.api.pagination import PageDep, encode_cursor
from vatio.api.schemas import (
    BucketPublic,
    DeviceList,
    DevicePublic,
    EnergyItem,
    EnergySeries,
    ErrorResponse,
    ReadingPublic,
    ReadingSeries,
)
from vatio.contracts import id_problem
from vatio.errors import ConfigError, NotFoundError
from vatio.model import EnergyPeriod, Resolution
from vatio.store import Store
from vatio.store.rollup import zone

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

DeviceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="device id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "unknown device"}}
BAD_REQUEST: dict[int | str, dict[str, Any]] = {400: {"model": ErrorResponse, "description": "invalid parameters"}}


async def _require(store: Store, device_id: str) -> None:
    if await store.get_device(device_id) is None:
        raise NotFoundError("device", device_id)


@router.get("", response_model=DeviceList, responses=BAD_REQUEST)
async def list_devices(store: StoreDep, page: PageDep) -> DeviceList:
    """Devices in id order, a page at a time (the cursor is the last id of the page)."""
    after = page.cursor
    if after is not None and (not isinstance(after, str) or id_problem(after) is not None):
        raise ConfigError("invalid cursor: pass back the next_cursor of the previous page")
    devices = sorted(await store.list_devices(), key=lambda d: d.device_id)
    if after is not None:
        devices = [d for d in devices if d.device_id > after]
    items = devices[: page.limit]
    more = len(devices) > page.limit
    return DeviceList(
        items=[DevicePublic.of(d) for d in items],
        next_cursor=encode_cursor(items[-1].device_id) if more else None,
    )


@router.get("/{device_id}", response_model=DevicePublic, responses=NOT_FOUND)
async def get_device(device_id: DeviceId, store: StoreDep) -> DevicePublic:
    device = await store.get_device(device_id)
    if device is None:
        raise NotFoundError("device", device_id)
    return DevicePublic.of(device)


@router.get("/{device_id}/readings", response_model=ReadingSeries, responses=NOT_FOUND | BAD_REQUEST)
async def readings(
    device_id: DeviceId,
    store: StoreDep,
    span: RangeDep,
    resolution: Resolution = Resolution.RAW,
    limit: Annotated[int, Query(ge=1, le=100_000, description="readings or buckets at most")] = 10_000,
) -> ReadingSeries:
    await _require(store, device_id)
    start, end = span
    if resolution is Resolution.RAW:
        rows = await store.readings(device_id, start, end, limit=limit + 1)
        return ReadingSeries(
            device_id=device_id,
            resolution=resolution,
            start=start,
            end=end,
            truncated=len(rows) > limit,
            items=[ReadingPublic.of(r) for r in rows[:limit]],
        )
    # A year of 1-minute buckets is 525,600 items: capped like raw readings (page on with `start`).
    buckets = await store.rollups(device_id, start, end, resolution, limit=limit + 1)
    return ReadingSeries(
        device_id=device_id,
        resolution=resolution,
        start=start,
        end=end,
        truncated=len(buckets) > limit,
        items=[BucketPublic.of(b) for b in buckets[:limit]],
    )


@router.get("/{device_id}/energy", response_model=EnergySeries, responses=NOT_FOUND | BAD_REQUEST)
async def energy(
    device_id: DeviceId,
    store: StoreDep,
    span: RangeDep,
    bucket: EnergyPeriod = EnergyPeriod.DAY,
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of the buckets")] = "UTC",
) -> EnergySeries:
    zone(tz)
    await _require(store, device_id)
    start, end = span
    items = await store.energy(device_id, start, end, bucket, tz=tz)
    return EnergySeries(
        device_id=device_id,
        bucket=bucket,
        tz=tz,
        start=start,
        end=end,
        total_wh=round(sum(i.energy_wh for i in items), 6),
        items=[EnergyItem.of(i) for i in items],
    )

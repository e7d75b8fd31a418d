"""Anomaly episodes: filter by site, device, time and openness; page newest first.

Paging is by key, not offset: the cursor holds the ``(start, id)`` of the
last episode of the page, so episodes opened while a client pages through
never shift or repeat items of later pages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from vatio.api.deps import StoreDep
from vatio.api.pagination import Page, PageDep, encode_cursor
from vatio.api.schemas import AnomalyPublic, ErrorResponse
from vatio.errors import ConfigError, NotFoundError
from vatio.model import Anomaly
from vatio.store import Store

router = APIRouter(prefix="/api/v1/anomalies", tags=["anomalies"])

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Store ids are 64-bit integers; larger numbers can name nothing (and overflow drivers).
MAX_ID = 2**63 - 1
BAD_REQUEST: dict[int | str, dict[str, Any]] = {400: {"model": ErrorResponse, "description": "invalid parameters"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "no such anomaly"}}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_INVALID_CURSOR = "invalid cursor: pass back the next_cursor of the previous page"


def utc(ts: datetime | None, name: str) -> datetime | None:
    """``ts`` in UTC (naive taken as UTC); a 400 when the offset pushes it out of range.

    >>> utc(datetime(2026, 1, 1, 12), "start").isoformat()
    '2026-01-01T12:00:00+00:00'
    """
    if ts is None:
        return None
    try:
        return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    except OverflowError as exc:
        raise ConfigError(f"{name} is out of range") from exc


def encode_keyset(ts: datetime, item_id: int) -> str:
    """Cursor of the item with sort key ``(ts, item_id)``, exact to the microsecond."""
    return encode_cursor([(ts - _EPOCH) // _US, item_id])


def decode_keyset(raw: Any) -> tuple[datetime, int]:
    """Inverse of :func:`encode_keyset` over a decoded cursor; 400 for anything else.

    >>> decode_keyset([1767225600000000, 7])
    (datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), 7)
    >>> decode_keyset({"id": 7})
    Traceback (most recent call last):
    ...
    vatio.errors.ConfigError: invalid cursor: pass back the next_cursor of the previous page
    """
    if not (isinstance(raw, list) and len(raw) == 2 and all(type(v) is int for v in raw)):
        raise ConfigError(_INVALID_CURSOR)
    micros, item_id = raw
    try:
        return _EPOCH + micros * _US, _in_range(item_id)
    except OverflowError as exc:
        raise ConfigError(_INVALID_CURSOR) from exc


def _in_range(item_id: int) -> int:
    if not 0 <= item_id <= MAX_ID:
        raise OverflowError(item_id)
    return item_id


async def sites_of(store: Store, anomalies: list[Anomaly]) -> dict[str, str | None]:
    """Site of each device of ``anomalies`` (episodes carry only the device)."""
    sites: dict[str, str | None] = {}
    for a in anomalies:
        if a.device_id not in sites:
            device = await store.get_device(a.device_id)
            sites[a.device_id] = device.site_id if device else None
    return sites


@router.get("", response_model=Page[AnomalyPublic], responses=BAD_REQUEST)
async def list_anomalies(
    store: StoreDep,
    page: PageDep,
    site: Annotated[str | None, Query(pattern=ID_PATTERN, description="only this site's devices")] = None,
    device: Annotated[str | None, Query(pattern=ID_PATTERN, description="only this device")] = None,
    start: Annotated[datetime | None, Query(description="episodes still open at or after this instant")] = None,
    end: Annotated[datetime | None, Query(description="episodes that started before this instant")] = None,
    open: Annotated[bool, Query(description="true: only episodes still open")] = False,
) -> Page[AnomalyPublic]:
    """Episodes overlapping ``[start, end)``, newest start first."""
    start, end = utc(start, "start"), utc(end, "end")
    if start is not None and end is not None and start >= end:
        raise ConfigError("start must be before end")
    before = decode_keyset(page.cursor) if page.cursor is not None else None
    rows = await store.anomalies(
        site_id=site, device_id=device, start=start, end=end, open_only=open, limit=page.limit + 1, before=before
    )
    items, more = rows[: page.limit], len(rows) > page.limit
    sites = await sites_of(store, items)
    last = items[-1] if items else None
    return Page[AnomalyPublic](
        items=[AnomalyPublic.of(a, sites[a.device_id]) for a in items],
        next_cursor=encode_keyset(last.start, last.id) if more and last and last.id is not None else None,
    )


@router.get("/{anomaly_id}", response_model=AnomalyPublic, responses=NOT_FOUND)
async def get_anomaly(
    anomaly_id: Annotated[int, Path(ge=1, le=MAX_ID, description="anomaly id")], store: StoreDep
) -> AnomalyPublic:
    anomaly = await store.get_anomaly(anomaly_id)
    if anomaly is None:
        raise NotFoundError("anomaly", str(anomaly_id))
    return AnomalyPublic.of(anomaly, (await sites_of(store, [anomaly]))[anomaly.device_id])

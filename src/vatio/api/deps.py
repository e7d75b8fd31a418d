"""Shared dependencies of the routers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request

from vatio.errors import ConfigError
from vatio.store import Store


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


StoreDep = Annotated[Store, Depends(get_store)]


def time_range(
    start: Annotated[datetime | None, Query(description="ISO 8601; default: `end` minus 24 h")] = None,
    end: Annotated[datetime | None, Query(description="ISO 8601, exclusive; default: now")] = None,
) -> tuple[datetime, datetime]:
    """Validated ``[start, end)``; naive timestamps are taken as UTC, and both must exist in UTC."""
    try:
        end = _aware(end) if end else datetime.now(UTC)
        start = _aware(start) if start else end - timedelta(hours=24)
        # Routers convert to UTC: an offset that pushes an instant past year 1 or 9999 is bad input.
        start.astimezone(UTC), end.astimezone(UTC)
    except OverflowError as exc:
        raise ConfigError("start or end is out of range") from exc
    if start >= end:
        raise ConfigError("start must be before end")
    if end - start > timedelta(days=366 * 20):
        raise ConfigError("range longer than 20 years")
    return start, end


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


RangeDep = Annotated[tuple[datetime, datetime], Depends(time_range)]

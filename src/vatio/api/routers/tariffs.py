"""A site's tariff history: list, add (or replace by start date), delete.

Costs are computed at query time, so a tariff posted with an
``effective_from`` in the past changes every cost from that date on.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from vatio.api.deps import StoreDep
from vatio.api.pagination import Page, PageDep, encode_cursor
from vatio.api.schemas import ErrorResponse
from vatio.api.schemas_energy import TariffCreate, TariffPublic
from vatio.energy.site import add_tariff, site_overview

router = APIRouter(prefix="/api/v1/sites", tags=["tariffs"])

SiteId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="site id")]
TariffId = Annotated[int, Path(ge=1, le=2**63 - 1, description="tariff id")]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "unknown site or tariff"},
    400: {"model": ErrorResponse, "description": "invalid tariff (overlapping or missing rates, currency)"},
}


@router.get("/{site}/tariffs", response_model=Page[TariffPublic], responses=ERRORS)
async def list_tariffs(site: SiteId, store: StoreDep, page: PageDep) -> Page[TariffPublic]:
    """The site's tariffs, oldest ``effective_from`` first."""
    await site_overview(store, site)
    after = str(page.cursor) if page.cursor is not None else ""
    tariffs = [t for t in await store.tariffs(site) if t.effective_from.isoformat() > after]
    items = [TariffPublic.of(t) for t in tariffs[: page.limit]]
    more = len(tariffs) > page.limit
    return Page[TariffPublic](
        items=items, next_cursor=encode_cursor(items[-1].effective_from.isoformat()) if more else None
    )


@router.post("/{site}/tariffs", response_model=TariffPublic, status_code=status.HTTP_201_CREATED, responses=ERRORS)
async def create_tariff(site: SiteId, body: TariffCreate, store: StoreDep) -> TariffPublic:
    """Add a tariff; one with the same ``effective_from`` is replaced."""
    return TariffPublic.of(await add_tariff(store, site, body.to_tariff()))


@router.delete("/{site}/tariffs/{tariff_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
async def delete_tariff(site: SiteId, tariff_id: TariffId, store: StoreDep) -> None:
    await site_overview(store, site)
    await store.delete_tariff(site, tariff_id)

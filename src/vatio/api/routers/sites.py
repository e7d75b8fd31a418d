"""Sites: their settings, energy and cost, comparisons, baseload, peak demand and summary.

Times in responses are UTC (``Z``); ``tz`` (default: the site's zone) says
which local days, months and hours the buckets follow.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from vatio.api.deps import RangeDep, StoreDep
from vatio.api.pagination import PAGE_ERRORS, Page, PageDep, encode_cursor
from vatio.api.schemas import ErrorResponse
from vatio.api.schemas_energy import (
    BaseloadPublic,
    ComparisonPublic,
    CostItem,
    DayPeakPublic,
    PeakDemandPublic,
    PeriodPublic,
    SiteEnergyPublic,
    SitePublic,
    SiteSettings,
    SummaryPublic,
)
from vatio.energy.compare import ComparePeriod
from vatio.energy.site import SiteEnergy, save_site, site_overview, site_overviews
from vatio.energy.summary import summary as site_summary
from vatio.errors import ConfigError
from vatio.model import EnergyPeriod

router = APIRouter(prefix="/api/v1/sites", tags=["sites"])

SiteId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="site id")]
Tz = Annotated[str | None, Query(max_length=64, description="IANA time zone; default: the site's")]
At = Annotated[datetime | None, Query(description="as of this instant (ISO 8601); default: now")]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "unknown site"},
    400: {"model": ErrorResponse, "description": "invalid parameters"},
}


def _checked(ts: datetime) -> datetime:
    # Local-calendar arithmetic (a year earlier, the next hour) must stay inside datetime's range.
    if not 1971 <= ts.year <= 9998:
        raise ConfigError(f"time {ts.isoformat()} is outside the years 1971-9998")
    return ts


def _instant(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return _checked(at if at.tzinfo else at.replace(tzinfo=UTC))


def _range(span: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    return _checked(span[0]), _checked(span[1])


@router.get("", response_model=Page[SitePublic], responses=PAGE_ERRORS)
async def list_sites(store: StoreDep, page: PageDep) -> Page[SitePublic]:
    """Sites with devices or stored settings, by id."""
    sites = [o for o in await site_overviews(store) if page.cursor is None or o.site.site_id > str(page.cursor)]
    items = [SitePublic.of(o) for o in sites[: page.limit]]
    more = len(sites) > page.limit
    return Page[SitePublic](items=items, next_cursor=encode_cursor(items[-1].site) if more else None)


@router.get("/{site}", response_model=SitePublic, responses=ERRORS)
async def get_site(site: SiteId, store: StoreDep) -> SitePublic:
    return SitePublic.of(await site_overview(store, site))


@router.put("/{site}", response_model=SitePublic, responses=ERRORS)
async def put_site(site: SiteId, settings: SiteSettings, store: StoreDep) -> SitePublic:
    """Create or replace a site's settings (its devices join by publishing under its id).

    ``main_meters`` must be devices of the site (400 otherwise); when set, site figures sum only them.
    """
    return SitePublic.of(await save_site(store, settings.to_site(site)))


@router.get("/{site}/summary", response_model=SummaryPublic, responses=ERRORS)
async def summary(site: SiteId, store: StoreDep, tz: Tz = None, at: At = None) -> SummaryPublic:
    """Power now, today, this week and month so far with their like-for-like predecessors, baseload, alerts."""
    energy = await SiteEnergy.load(store, site)
    result = await site_summary(energy, _instant(at), energy.zone(tz))
    # Money and kWh to the millionth: float sums of Wh carry noise in the last digits.
    return SummaryPublic.model_validate(
        {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(result).items()}
    )


@router.get("/{site}/energy", response_model=SiteEnergyPublic, responses=ERRORS)
async def energy(
    site: SiteId, store: StoreDep, span: RangeDep, bucket: EnergyPeriod = EnergyPeriod.DAY, tz: Tz = None
) -> SiteEnergyPublic:
    """Import, export and cost per local hour, day or month over ``[start, end)`` (whole hours)."""
    energy = await SiteEnergy.load(store, site)
    local = energy.zone(tz)
    start, end = _range(span)
    result = await energy.energy(start, end, bucket, local)
    return SiteEnergyPublic(
        site=site,
        tz=local.key,
        bucket=bucket,
        items=[CostItem.of(b) for b in result.items],
        total_kwh=round(result.total_kwh, 9),
        total_export_kwh=round(result.total_export_kwh, 9),
        total_cost=None if result.total_cost is None else round(result.total_cost, 6),
        currency=result.currency,
    )


@router.get("/{site}/compare", response_model=ComparisonPublic, responses=ERRORS)
async def compare(
    site: SiteId,
    store: StoreDep,
    period: ComparePeriod = ComparePeriod.WEEK,
    tz: Tz = None,
    at: At = None,
) -> ComparisonPublic:
    """This week vs last week, or this month vs the same month last year, like for like up to ``at``."""
    energy = await SiteEnergy.load(store, site)
    local = energy.zone(tz)
    result = await energy.compare(period, _instant(at), local)

    return ComparisonPublic(
        site=site,
        period=period,
        tz=local.key,
        current=PeriodPublic.of(result.current),
        previous=PeriodPublic.of(result.previous),
        change_pct=None if result.change_pct is None else round(result.change_pct, 6),
        currency=energy.site.currency,
    )


@router.get("/{site}/baseload", response_model=BaseloadPublic, responses=ERRORS)
async def baseload(
    site: SiteId,
    store: StoreDep,
    days: Annotated[int, Query(ge=1, le=366, description="days of data")] = 7,
    at: At = None,
) -> BaseloadPublic:
    """The always-on power: 5th percentile of 15-minute mean power over the ``days`` days before ``at``."""
    energy = await SiteEnergy.load(store, site)
    result, cost = await energy.baseload(days, _instant(at))
    return BaseloadPublic.of(energy.site, result, cost)


@router.get("/{site}/peak-demand", response_model=PeakDemandPublic, responses=ERRORS)
async def peak_demand(site: SiteId, store: StoreDep, span: RangeDep, tz: Tz = None) -> PeakDemandPublic:
    """Highest 15-minute mean demand over ``[start, end)`` and per local day, against the site's limit."""
    energy = await SiteEnergy.load(store, site)
    local = energy.zone(tz)
    start, end = _range(span)
    result = await energy.peak_demand(start, end, local)
    return PeakDemandPublic(
        site=site,
        tz=local.key,
        peak_kw=result.peak_kw,
        at=None if result.at is None else result.at.astimezone(UTC),
        limit_kw=result.limit_kw,
        items=[DayPeakPublic.of(d) for d in result.days],
    )

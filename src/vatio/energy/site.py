"""A site's energy features over one store: costs, comparisons, baseload, peak demand, summary.

:class:`SiteEnergy` loads a site's settings and tariff history once and
answers every question from the site's rollups at query time (see
:mod:`vatio.energy.pricing` for the pricing rules). Site-level figures sum the
site's main meters (:attr:`~vatio.model.Site.main_meters`), or every device of
the site when none are set: a plug behind a main meter is already in the main
meter's reading and must not be added again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from vatio.energy.baseload import Baseload, baseload
from vatio.energy.compare import ComparePeriod, Window, change_pct, windows
from vatio.energy.cost import EnergyReport, report
from vatio.energy.peak import PeakDemand, peak_demand
from vatio.energy.pricing import (
    ceil_to,
    check_quarter_hours,
    floor_to,
    mean_week_price,
    price_hours,
    pricing_plan,
    rollup_resolution,
)
from vatio.errors import ConfigError, NotFoundError
from vatio.model import Device, EnergyPeriod, Resolution, Site, SiteBucket, Tariff, TariffHistory
from vatio.store import Store
from vatio.store.rollup import zone


@dataclass(frozen=True, slots=True)
class SiteOverview:
    """A site as the fleet sees it: its devices and their freshness."""

    site: Site
    devices: list[Device]

    @property
    def online_devices(self) -> int:
        return sum(1 for d in self.devices if d.online)

    @property
    def last_seen(self) -> datetime | None:
        return max((d.last_seen for d in self.devices), default=None)


async def site_overviews(store: Store, *, now: datetime | None = None) -> list[SiteOverview]:
    """Every site that has devices or stored settings, by id."""
    settings = {s.site_id: s for s in await store.list_sites()}
    devices: dict[str, list[Device]] = {}
    for device in await store.list_devices(now=now):
        devices.setdefault(device.site_id, []).append(device)
    ids = sorted(set(settings) | set(devices))
    return [SiteOverview(settings.get(i) or Site(site_id=i), devices.get(i, [])) for i in ids]


async def site_overview(store: Store, site_id: str, *, now: datetime | None = None) -> SiteOverview:
    """One site; :class:`~vatio.errors.NotFoundError` when it has neither devices nor settings."""
    settings = await store.get_site(site_id)
    devices = [d for d in await store.list_devices(now=now) if d.site_id == site_id]
    if settings is None and not devices:
        raise NotFoundError("site", site_id)
    return SiteOverview(settings or Site(site_id=site_id), devices)


def check_main_meters(site: Site, devices: list[Device]) -> None:
    """:class:`~vatio.errors.ConfigError` unless every main meter of ``site`` is one of its ``devices``.

    >>> from datetime import UTC, datetime
    >>> now = datetime.now(UTC)
    >>> plug = Device(device_id="plug", site_id="s", first_seen=now, last_seen=now)
    >>> check_main_meters(Site(site_id="s", main_meters=("meter",)), [plug])
    Traceback (most recent call last):
    ...
    vatio.errors.ConfigError: main_meters of site s must be devices of that site; unknown: meter
    """
    known = {d.device_id for d in devices if d.site_id == site.site_id}
    unknown = [m for m in site.main_meters if m not in known]
    if unknown:
        listed = ", ".join(unknown)
        raise ConfigError(f"main_meters of site {site.site_id} must be devices of that site; unknown: {listed}")


async def save_site(store: Store, site: Site) -> SiteOverview:
    """Create or replace a site's settings after checking them against the store.

    The time zone must exist, the main meters must be devices of the site, and
    the currency may only change while the site has no tariffs (all
    :class:`~vatio.errors.ConfigError`).
    """
    zone(site.tz)
    current = await store.get_site(site.site_id)
    check_main_meters(site, [d for d in await store.list_devices() if d.site_id == site.site_id])
    if current is not None and current.currency != site.currency and await store.tariffs(site.site_id):
        raise ConfigError(
            f"site {site.site_id} has tariffs in {current.currency}: delete them before changing currency"
        )
    await store.put_site(site)
    return await site_overview(store, site.site_id)


async def add_tariff(store: Store, site_id: str, tariff: Tariff, *, create_site: bool = False) -> Tariff:
    """Add (or replace, same ``effective_from``) a site's tariff.

    A site without stored settings takes the tariff's currency; one with
    settings must share it (:class:`~vatio.errors.ConfigError`). Rate times must
    be on a 15-minute boundary, the finest grid costs are priced on
    (:class:`~vatio.errors.ConfigError`). Unless ``create_site``, the site must
    exist (:class:`~vatio.errors.NotFoundError`).
    """
    check_quarter_hours(tariff)
    settings = await store.get_site(site_id)
    if settings is None:
        if not create_site:
            await site_overview(store, site_id)
        await store.put_site(Site(site_id=site_id, currency=tariff.currency))
    elif settings.currency != tariff.currency:
        raise ConfigError(
            f"tariff currency {tariff.currency} differs from site {site_id}'s currency {settings.currency}"
        )
    return await store.put_tariff(site_id, tariff)


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    window: Window
    kwh: float
    cost: float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    current: PeriodFigures
    previous: PeriodFigures
    change_pct: float | None


class SiteEnergy:
    """Energy features of one site (settings and tariffs as loaded by :meth:`load`)."""

    def __init__(self, store: Store, overview: SiteOverview, history: TariffHistory) -> None:
        self.store = store
        self.overview = overview
        self.site = overview.site
        self.history = history

    @classmethod
    async def load(cls, store: Store, site_id: str, *, now: datetime | None = None) -> SiteEnergy:
        overview = await site_overview(store, site_id, now=now)
        return cls(store, overview, TariffHistory(await store.tariffs(site_id)))

    def zone(self, tz: str | None) -> ZoneInfo:
        """The zone of a query: ``tz`` if given, else the site's."""
        return zone(tz or self.site.tz)

    @property
    def meters(self) -> list[str]:
        """The devices site-level figures sum: the main meters when set, else every device of the site."""
        return list(self.site.main_meters) or [d.device_id for d in self.overview.devices]

    async def _rollups(
        self, start: datetime, end: datetime, resolution: Resolution, *, utc_hours: frozenset[int] | None = None
    ) -> list[SiteBucket]:
        # Only the main meters when set: sub-meters behind them are already in their readings.
        devices = list(self.site.main_meters) or None
        return await self.store.site_rollups(self.site.site_id, start, end, resolution, devices, utc_hours=utc_hours)

    async def energy(self, start: datetime, end: datetime, period: EnergyPeriod, tz: ZoneInfo) -> EnergyReport:
        """Import, export and cost per local period over ``[start, end)``, rounded out to the pricing step.

        Priced from hourly rollups, and from 15-minute ones in the hours where a tariff in force
        over the range changes price within the hour (:func:`~vatio.energy.pricing.pricing_plan`).
        """
        # The buckets holding start and end are priced whole, so their energy counts whole too.
        # Rounded to the pricing step, not the hour: a local day of a half-hour zone
        # (Asia/Kolkata: 18:30Z-18:30Z) then holds no half hour of its neighbours.
        plan = pricing_plan(self.history, tz, start, end)
        lo, hi = floor_to(start, plan.step), ceil_to(end, plan.step)
        if plan.split:
            # Only the split hours' quarters (Economy 7: 2 to 4 hours of every 24), read beside the hours.
            # Two connections, two snapshots: a refresh between them can only touch the newest buckets.
            buckets, quarters = await asyncio.gather(
                self._rollups(lo, hi, rollup_resolution(plan.step)),
                self._rollups(lo, hi, Resolution.MIN_15, utc_hours=plan.split),
            )
        else:
            buckets, quarters = await self._rollups(lo, hi, rollup_resolution(plan.step)), []

        def price() -> EnergyReport:
            hours = price_hours(buckets, self.history, tz, lo, hi, step=plan.step, quarters=quarters, split=plan.split)
            return report(hours, period, tz, self.site.currency)

        # A year is tens of thousands of buckets: price them off the event loop, which serves everyone else.
        return await asyncio.to_thread(price)

    async def figures(self, window: Window, tz: ZoneInfo) -> PeriodFigures:
        totals = await self.energy(window.start, window.end, EnergyPeriod.DAY, tz)
        return PeriodFigures(window, totals.total_kwh, totals.total_cost)

    async def compare(self, period: ComparePeriod, now: datetime, tz: ZoneInfo) -> Comparison:
        """This week against last week, or this month against the same month last year (like for like)."""
        current_window, previous_window = windows(period, now, tz)
        current = await self.figures(current_window, tz)
        previous = await self.figures(previous_window, tz)
        return Comparison(current, previous, change_pct(current.kwh, previous.kwh))

    async def baseload(self, days: int, now: datetime) -> tuple[Baseload, float | None]:
        """The always-on power over the last ``days`` days, and its yearly cost at today's tariff."""
        buckets = await self._rollups(now - timedelta(days=days), now, Resolution.MIN_15)
        result = baseload(buckets, days=days)
        tariff = self.history.on(now.astimezone(self.zone(None)).date())
        if result.yearly_kwh is None or tariff is None:
            return result, None
        return result, result.yearly_kwh * mean_week_price(tariff)

    async def peak_demand(self, start: datetime, end: datetime, tz: ZoneInfo) -> PeakDemand:
        buckets = await self._rollups(start, end, Resolution.MIN_15)
        return peak_demand(buckets, tz, self.site.peak_limit_kw)

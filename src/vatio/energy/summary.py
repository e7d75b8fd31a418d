"""The one-glance summary of a site: power now, today, this week and month, baseload, open alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from vatio.energy.compare import ComparePeriod, Window
from vatio.energy.pricing import local_midnight
from vatio.energy.site import SiteEnergy
from vatio.model import AlertState
from vatio.store.base import ONLINE_WINDOW

#: Days of data the summary's baseload looks at.
SUMMARY_BASELOAD_DAYS = 7


@dataclass(frozen=True, slots=True)
class Summary:
    site: str
    tz: str
    currency: str
    power_w: float | None
    today_kwh: float
    today_cost: float | None
    last_week_same_day_kwh: float
    week_kwh: float
    last_week_kwh: float
    month_kwh: float
    month_cost: float | None
    baseload_w: float | None
    baseload_yearly_kwh: float | None
    baseload_yearly_cost: float | None
    open_alerts: int
    #: The devices the site figures sum: the main meters, or every device when none are set.
    summed_devices: list[str]


async def power_now(energy: SiteEnergy, now: datetime) -> float | None:
    """Sum of the latest fresh power reading of each summed device (``None`` when none is fresh)."""
    total: float | None = None
    for device_id in energy.meters:
        rows = await energy.store.readings(device_id, now - ONLINE_WINDOW, now + timedelta(seconds=1))
        powers = [r.power_w for r in rows if r.power_w is not None]
        if powers:
            total = (total or 0.0) + powers[-1]
    return total


#: Alerts somebody may still have to act on (the dashboard lists the same states).
OPEN_STATES = (AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED)


async def open_alerts(energy: SiteEnergy) -> int:
    """The site's alerts that are not resolved: an episode a resident resolved by hand no longer counts."""
    return len(await energy.store.alerts(site_id=energy.overview.site.site_id, states=OPEN_STATES, limit=1000))


async def summary(energy: SiteEnergy, now: datetime, tz: ZoneInfo) -> Summary:
    """Today, this week and this month so far (local ``tz``) against their like-for-like predecessors."""
    today = local_midnight(now.astimezone(tz).date(), tz)
    week_ago = local_midnight((now.astimezone(tz) - timedelta(days=7)).date(), tz)
    same_time_week_ago = (now.astimezone(tz).replace(tzinfo=None) - timedelta(days=7)).replace(tzinfo=tz)
    day = await energy.figures(Window(today, now), tz)
    last_week_day = await energy.figures(Window(week_ago, same_time_week_ago), tz)
    week = await energy.compare(ComparePeriod.WEEK, now, tz)
    month = await energy.compare(ComparePeriod.MONTH, now, tz)
    base, base_cost = await energy.baseload(SUMMARY_BASELOAD_DAYS, now)
    return Summary(
        site=energy.site.site_id,
        tz=tz.key,
        currency=energy.site.currency,
        power_w=await power_now(energy, now),
        today_kwh=day.kwh,
        today_cost=day.cost,
        last_week_same_day_kwh=last_week_day.kwh,
        week_kwh=week.current.kwh,
        last_week_kwh=week.previous.kwh,
        month_kwh=month.current.kwh,
        month_cost=month.current.cost,
        baseload_w=base.baseload_w,
        baseload_yearly_kwh=base.yearly_kwh,
        baseload_yearly_cost=base_cost,
        open_alerts=await open_alerts(energy),
        summed_devices=energy.meters,
    )

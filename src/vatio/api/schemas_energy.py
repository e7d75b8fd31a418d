"""Public schemas of sites, tariffs, energy and cost (what the API promises about them)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import BaseModel, Field

from vatio.api.schemas import TEXT_PATTERN
from vatio.energy.baseload import Baseload
from vatio.energy.cost import CostBucket
from vatio.energy.peak import DayPeak
from vatio.energy.site import PeriodFigures, SiteOverview
from vatio.model import Rate, Site, Tariff

Money = float
Hhmm = Annotated[str, Field(pattern=r"^\d{2}:\d{2}$", examples=["07:00"])]
DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["home-1-main"])]


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _utc(ts: datetime) -> datetime:
    # The contract's times are UTC with Z; the `tz` field says which local periods they bound.
    return ts.astimezone(UTC)


class SitePublic(BaseModel):
    site: str
    name: str | None
    tz: str
    currency: str
    peak_limit_kw: float | None
    main_meters: list[str] = Field(description="devices that site figures sum; empty: every device of the site")
    devices: int
    online_devices: int
    last_seen: datetime | None

    @classmethod
    def of(cls, overview: SiteOverview) -> SitePublic:
        s = overview.site
        return cls(
            site=s.site_id,
            name=s.name,
            tz=s.tz,
            currency=s.currency,
            peak_limit_kw=s.peak_limit_kw,
            main_meters=list(s.main_meters),
            devices=len(overview.devices),
            online_devices=overview.online_devices,
            last_seen=overview.last_seen,
        )


class SiteSettings(BaseModel):
    """Body of ``PUT /sites/{site}``."""

    name: str | None = Field(default=None, max_length=200, pattern=TEXT_PATTERN)
    tz: str = Field(default="UTC", max_length=64, pattern=TEXT_PATTERN, description="IANA time zone of the site's days")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    peak_limit_kw: float | None = Field(default=None, gt=0, description="contracted 15-minute demand limit")
    main_meters: list[DeviceId] = Field(
        default_factory=list,
        max_length=100,
        description="devices of the site that together measure the whole home (sub-meters behind them are "
        "not added again); empty: every device counts",
    )

    def to_site(self, site_id: str) -> Site:
        """The domain site; :class:`~vatio.errors.ConfigError` (400) on a device listed twice."""
        return Site(
            site_id=site_id,
            name=self.name,
            tz=self.tz,
            currency=self.currency,
            peak_limit_kw=self.peak_limit_kw,
            main_meters=tuple(self.main_meters),
        )


class RateBody(BaseModel):
    days: list[int] = Field(min_length=1, max_length=7, description="weekdays, 0 = Monday ... 6 = Sunday")
    start: Hhmm
    end: Hhmm = Field(description="exclusive; 24:00 allowed; before start wraps past midnight")
    price_per_kwh: float


class TariffCreate(BaseModel):
    """Body of ``POST /sites/{site}/tariffs``: rates must cover the whole week exactly once."""

    name: str = Field(min_length=1, max_length=200, pattern=TEXT_PATTERN)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    effective_from: date = Field(description="local date from which the tariff applies")
    standing_charge_per_day: float = Field(ge=0)
    rates: list[RateBody] = Field(min_length=1, max_length=200)
    export_price_per_kwh: float | None = None

    def to_tariff(self) -> Tariff:
        """The domain tariff; :class:`~vatio.errors.ConfigError` (400) on overlapping or missing rates."""
        return Tariff(
            name=self.name,
            currency=self.currency,
            effective_from=self.effective_from,
            standing_charge_per_day=self.standing_charge_per_day,
            export_price_per_kwh=self.export_price_per_kwh,
            rates=tuple(
                Rate(days=tuple(r.days), start=r.start, end=r.end, price_per_kwh=r.price_per_kwh) for r in self.rates
            ),
        )


class TariffPublic(TariffCreate):
    id: int

    @classmethod
    def of(cls, t: Tariff) -> TariffPublic:
        assert t.id is not None
        return cls(
            id=t.id,
            name=t.name,
            currency=t.currency,
            effective_from=t.effective_from,
            standing_charge_per_day=t.standing_charge_per_day,
            export_price_per_kwh=t.export_price_per_kwh,
            rates=[
                RateBody(days=list(r.days), start=r.start, end=r.end, price_per_kwh=r.price_per_kwh) for r in t.rates
            ],
        )


class CostItem(BaseModel):
    start: datetime
    end: datetime
    import_kwh: float
    export_kwh: float
    cost: Money | None = Field(description="null when no tariff applied in the bucket")

    @classmethod
    def of(cls, b: CostBucket) -> CostItem:
        return cls(
            start=_utc(b.start),
            end=_utc(b.end),
            import_kwh=round(b.import_kwh, 9),
            export_kwh=round(b.export_kwh, 9),
            cost=_money(b.cost),
        )


class SiteEnergyPublic(BaseModel):
    site: str
    tz: str
    bucket: str
    items: list[CostItem]
    total_kwh: float
    total_export_kwh: float
    total_cost: Money | None
    currency: str


class PeriodPublic(BaseModel):
    start: datetime
    end: datetime
    kwh: float
    cost: Money | None

    @classmethod
    def of(cls, f: PeriodFigures) -> PeriodPublic:
        return cls(start=_utc(f.window.start), end=_utc(f.window.end), kwh=round(f.kwh, 9), cost=_money(f.cost))


class ComparisonPublic(BaseModel):
    site: str
    period: str
    tz: str
    current: PeriodPublic
    previous: PeriodPublic
    change_pct: float | None
    currency: str


class BaseloadPublic(BaseModel):
    site: str
    baseload_w: float | None
    method: str
    buckets: int = Field(description="15-minute buckets the percentile was taken over")
    yearly_kwh: float | None
    yearly_cost: Money | None
    currency: str

    @classmethod
    def of(cls, site: Site, b: Baseload, cost: float | None) -> BaseloadPublic:
        return cls(
            site=site.site_id,
            baseload_w=b.baseload_w,
            method=b.method,
            buckets=b.buckets,
            yearly_kwh=b.yearly_kwh,
            yearly_cost=_money(cost),
            currency=site.currency,
        )


class DayPeakPublic(BaseModel):
    day: date
    peak_kw: float
    at: datetime
    over_limit: bool

    @classmethod
    def of(cls, d: DayPeak) -> DayPeakPublic:
        return cls(day=d.day, peak_kw=d.peak_kw, at=_utc(d.at), over_limit=d.over_limit)


class PeakDemandPublic(BaseModel):
    site: str
    tz: str
    window: str = "15min"
    peak_kw: float | None
    at: datetime | None
    limit_kw: float | None
    items: list[DayPeakPublic]


class SummaryPublic(BaseModel):
    site: str
    tz: str
    currency: str
    power_w: float | None
    today_kwh: float
    today_cost: Money | None
    last_week_same_day_kwh: float
    week_kwh: float
    last_week_kwh: float
    month_kwh: float
    month_cost: Money | None
    baseload_w: float | None
    baseload_yearly_kwh: float | None
    baseload_yearly_cost: Money | None
    open_alerts: int
    summed_devices: list[str] = Field(description="the devices the figures sum: the main meters, else all")

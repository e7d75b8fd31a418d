"""The demo set-up of `vatio up`: a time-of-use tariff, so costs show from the first minute, and each
simulated home's main meter, so its plugs are not counted twice in the site's figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime

from vatio.energy.site import add_tariff
from vatio.model import Rate, Site, Tariff
from vatio.store import Store

ALL_DAYS = tuple(range(7))


def demo_tariff(effective_from: date) -> Tariff:
    """Day 07:00-23:00 at 0.30 EUR/kWh, night at 0.15, 0.40 a day, export paid 0.08."""
    return Tariff(
        name="Demo time-of-use",
        currency="EUR",
        effective_from=effective_from,
        standing_charge_per_day=0.40,
        export_price_per_kwh=0.08,
        rates=(
            Rate(days=ALL_DAYS, start="07:00", end="23:00", price_per_kwh=0.30),
            Rate(days=ALL_DAYS, start="23:00", end="07:00", price_per_kwh=0.15),
        ),
    )


async def install_demo_tariffs(store: Store, site_ids: Iterable[str], *, today: date | None = None) -> list[str]:
    """Give every site without a tariff the demo one from ``today`` (UTC) on; returns the sites given one.

    From today, not from long ago: a demo's month should not bill standing charges for days before it ran.
    """
    tariff = demo_tariff(today or datetime.now(UTC).date())
    given = []
    for site_id in site_ids:
        if not await store.tariffs(site_id):
            await add_tariff(store, site_id, tariff, create_site=True)
            given.append(site_id)
    return given


def main_meters_of(fleet: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each site's main meter from ``(site, device)`` pairs in the simulator's order: a home's first meter.

    The simulator (:func:`vatio.sim.publish.build_meters`) names it ``<site>-main``; the others are plugs
    behind it (``<site>-plug-<n>``), already in its reading.

    >>> main_meters_of([("home-1", "home-1-main"), ("home-1", "home-1-plug-1"), ("home-2", "home-2-main")])
    {'home-1': 'home-1-main', 'home-2': 'home-2-main'}
    """
    mains: dict[str, str] = {}
    for site_id, device_id in fleet:
        mains.setdefault(site_id, device_id)
    return mains


async def install_demo_main_meters(store: Store, main_meters: Mapping[str, str]) -> list[str]:
    """Set each site's main meter (``site -> device``) where the site has none set; returns the sites set.

    Written straight to the store: on a first run the meters have not published yet, so the API's
    check that main meters are devices of the site could not pass.
    """
    given = []
    for site_id, device_id in main_meters.items():
        site = await store.get_site(site_id) or Site(site_id=site_id)
        if not site.main_meters:
            await store.put_site(replace(site, main_meters=(device_id,)))
            given.append(site_id)
    return given

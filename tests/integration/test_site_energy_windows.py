"""A site energy query that starts inside an hour counts that hour whole, energy and cost alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from vatio.energy.site import SiteEnergy, add_tariff
from vatio.model import EnergyPeriod, Rate, Reading, Tariff
from vatio.store import Store, write_all

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, 10, tzinfo=UTC)


async def test_a_window_starting_mid_hour_keeps_that_hours_energy(store: Store) -> None:
    # +5 Wh a minute for two hours: 300 Wh in each UTC hour.
    await write_all(store, [Reading("grid", T0 + timedelta(minutes=k), k, energy_wh=5.0 * k) for k in range(121)], "s")
    while await store.refresh_rollups():
        pass
    day_rate = (Rate(days=tuple(range(7)), start="00:00", end="24:00", price_per_kwh=0.2),)
    tariff = Tariff(name="flat", currency="EUR", effective_from=date(2026, 1, 1), standing_charge_per_day=2.4,
                    rates=day_rate)  # fmt: skip
    await add_tariff(store, "s", tariff, create_site=True)
    energy = await SiteEnergy.load(store, "s")

    result = await energy.energy(
        T0 + timedelta(minutes=30), T0 + timedelta(hours=2), EnergyPeriod.HOUR, ZoneInfo("UTC")
    )

    # Both hours are priced whole (each carries 1/24 of the standing charge), so both carry their energy.
    assert [b.start for b in result.items] == [T0, T0 + timedelta(hours=1)]
    assert [b.import_kwh for b in result.items] == pytest.approx([0.3, 0.3])
    assert [b.cost for b in result.items] == pytest.approx([0.3 * 0.2 + 0.1, 0.3 * 0.2 + 0.1])

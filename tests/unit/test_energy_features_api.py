"""The sites, energy and tariff endpoints over a real SQLite store (httpx ASGI transport).

``home`` has one meter whose import counter rises 20 Wh a minute (1.2 kWh an
hour) for the last 30 hours and 1 kWh of export an hour until an hour ago;
expected figures follow from that by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from vatio.api import create_app
from vatio.model import Reading, WriteBatch
from vatio.store import Store, open_store, write_all

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW.replace(minute=0) - timedelta(hours=30)
FLAT: dict[str, Any] = {
    "name": "flat",
    "currency": "EUR",
    "effective_from": "2020-01-01",
    "standing_charge_per_day": 0.0,
    "rates": [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00", "price_per_kwh": 0.25}],
    "export_price_per_kwh": 0.1,
}


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/sites.db")
    await store.migrate()
    minutes = int((NOW - START) / timedelta(minutes=1))
    export_until = minutes - 60
    readings = [
        Reading("meter", START + timedelta(minutes=k), k, power_w=1200.0, energy_wh=20.0 * k,
                energy_export_wh=1000 / 60 * min(k, export_until))
        for k in range(minutes + 1)
    ]  # fmt: skip
    await write_all(store, readings, "home")
    # Seen just now, not only when this module was imported: "online" is judged by the wall
    # clock, and a long suite can run this test minutes after NOW was taken.
    await store.write(WriteBatch(sites={"meter": "home"}, last_seen={"meter": datetime.now(UTC)}))
    while await store.refresh_rollups():
        pass
    yield store
    await store.close()


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url="http://t") as client:
        yield client


async def call(client: httpx.AsyncClient, method: str, url: str, status: int, **kwargs: Any) -> Any:
    response = await client.request(method, f"/api/v1{url}", **kwargs)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def error_code(body: Any) -> str:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["message"]
    code: str = body["error"]["code"]
    return code


async def test_sites_list_get_and_settings(client: httpx.AsyncClient) -> None:
    settings = {"name": "Cabin", "tz": "Europe/Paris", "currency": "EUR", "peak_limit_kw": 6.0}
    cabin = await call(client, "PUT", "/sites/cabin", 200, json=settings)
    assert cabin == {
        "site": "cabin", **settings, "main_meters": [], "devices": 0, "online_devices": 0, "last_seen": None
    }  # fmt: skip
    page = await call(client, "GET", "/sites", 200, params={"limit": 1})
    assert [s["site"] for s in page["items"]] == ["cabin"]
    rest = await call(client, "GET", "/sites", 200, params={"limit": 1, "cursor": page["next_cursor"]})
    assert [(s["site"], s["devices"], s["online_devices"]) for s in rest["items"]] == [("home", 1, 1)]
    assert rest["next_cursor"] is None
    home = await call(client, "GET", "/sites/home", 200)
    assert NOW <= datetime.fromisoformat(home["last_seen"]) <= datetime.now(UTC)
    assert error_code(await call(client, "GET", "/sites/nowhere", 404)) == "not_found"
    bad_tz = await call(client, "PUT", "/sites/cabin", 400, json={**settings, "tz": "Mars/Olympus"})
    assert error_code(bad_tz) == "bad_request"
    # NUL, which PostgreSQL text cannot hold, is refused in the schema (it was a 500 there).
    for nul in ({"name": "Cab\x00in"}, {"tz": "Europe/Paris\x00"}):
        refused = await call(client, "PUT", "/sites/cabin", 422, json={**settings, **nul})
        assert error_code(refused) == "validation_error"
    assert (await call(client, "GET", "/sites/cabin", 200))["name"] == "Cabin"


async def test_tariff_crud_and_bad_tariffs(client: httpx.AsyncClient) -> None:
    created = await call(client, "POST", "/sites/home/tariffs", 201, json=FLAT)
    assert created == {"id": created["id"], **FLAT}
    listed = await call(client, "GET", "/sites/home/tariffs", 200)
    assert listed == {"items": [created], "next_cursor": None}

    overlapping = {**FLAT, "rates": [*FLAT["rates"], {**FLAT["rates"][0], "days": [2], "start": "10:00"}]}
    body = await call(client, "POST", "/sites/home/tariffs", 400, json=overlapping)
    assert "overlap on Wed 10:00" in body["error"]["message"]
    holes = {**FLAT, "rates": [{**FLAT["rates"][0], "end": "12:00"}]}
    assert error_code(await call(client, "POST", "/sites/home/tariffs", 400, json=holes)) == "bad_request"
    for bad in ({**FLAT, "currency": "euro"}, {**FLAT, "rates": [{**FLAT["rates"][0], "start": "7am"}]},
                {**FLAT, "standing_charge_per_day": -1}, {"name": "no rates"},
                {**FLAT, "name": "flat\x00"}):  # fmt: skip
        assert error_code(await call(client, "POST", "/sites/home/tariffs", 422, json=bad)) == "validation_error"
    gbp = {**FLAT, "currency": "GBP", "effective_from": "2024-01-01"}
    assert "currency" in (await call(client, "POST", "/sites/home/tariffs", 400, json=gbp))["error"]["message"]
    assert error_code(await call(client, "POST", "/sites/nowhere/tariffs", 404, json=FLAT)) == "not_found"
    assert error_code(await call(client, "GET", "/sites/nowhere/tariffs", 404)) == "not_found"

    assert await call(client, "DELETE", f"/sites/home/tariffs/{created['id']}", 204) is None
    assert error_code(await call(client, "DELETE", f"/sites/home/tariffs/{created['id']}", 404)) == "not_found"
    assert error_code(await call(client, "DELETE", f"/sites/home/tariffs/{2**70}", 422)) == "validation_error"
    assert (await call(client, "GET", "/sites/home/tariffs", 200))["items"] == []


async def test_a_tariff_time_off_the_quarter_hour_grid_is_a_400_with_a_clear_message(
    client: httpx.AsyncClient,
) -> None:
    day = {**FLAT["rates"][0], "start": "07:10", "end": "23:00", "price_per_kwh": 0.3}
    night = {**FLAT["rates"][0], "start": "23:00", "end": "07:10", "price_per_kwh": 0.1}
    body = await call(client, "POST", "/sites/home/tariffs", 400, json={**FLAT, "rates": [day, night]})
    assert error_code(body) == "bad_request"
    assert body["error"]["message"] == (
        "rate 07:10-23:00 starts at 07:10: rate times must be on a 15-minute boundary (:00, :15, :30 or :45)"
    )
    assert (await call(client, "GET", "/sites/home/tariffs", 200))["items"] == []
    economy_7 = [{**day, "start": "07:30", "end": "00:30"}, {**night, "start": "00:30", "end": "07:30"}]
    created = await call(client, "POST", "/sites/home/tariffs", 201, json={**FLAT, "rates": economy_7})
    assert [(r["start"], r["end"]) for r in created["rates"]] == [("07:30", "00:30"), ("00:30", "07:30")]


async def test_energy_costs_follow_a_tariff_posted_later(client: httpx.AsyncClient) -> None:
    params = {"start": iso(START), "end": iso(START + timedelta(hours=24)), "bucket": "hour", "tz": "UTC"}
    before = await call(client, "GET", "/sites/home/energy", 200, params=params)
    assert len(before["items"]) == 24
    assert before["items"][0] == {
        "start": iso(START), "end": iso(START + timedelta(hours=1)),
        "import_kwh": pytest.approx(1.2), "export_kwh": pytest.approx(1.0), "cost": None,
    }  # fmt: skip
    assert before["total_kwh"] == pytest.approx(24 * 1.2)
    assert before["total_cost"] is None

    await call(client, "POST", "/sites/home/tariffs", 201, json=FLAT)
    after = await call(client, "GET", "/sites/home/energy", 200, params=params)
    assert [i["cost"] for i in after["items"]] == pytest.approx([1.2 * 0.25 - 1.0 * 0.1] * 24)
    assert after["total_cost"] == pytest.approx(24 * (1.2 * 0.25 - 0.1))
    assert after["currency"] == "EUR"


async def test_summary_compare_baseload_and_peak(client: httpx.AsyncClient) -> None:
    await call(client, "POST", "/sites/home/tariffs", 201, json=FLAT)
    summary = await call(client, "GET", "/sites/home/summary", 200, params={"tz": "UTC", "at": iso(NOW)})
    assert summary["power_w"] == 1200.0
    # Whole hours since midnight, and the hour in progress up to its bucket's data (20 Wh a minute).
    assert summary["today_kwh"] == pytest.approx(1.2 * NOW.hour + 0.02 * NOW.minute)
    assert summary["baseload_w"] == pytest.approx(1200.0)
    assert summary["baseload_yearly_kwh"] == pytest.approx(1.2 * 8760)
    assert summary["baseload_yearly_cost"] == pytest.approx(1.2 * 8760 * 0.25)
    assert (summary["currency"], summary["open_alerts"], summary["last_week_same_day_kwh"]) == ("EUR", 0, 0.0)

    compare = await call(
        client, "GET", "/sites/home/compare", 200, params={"period": "week", "tz": "UTC", "at": iso(NOW)}
    )
    assert compare["previous"]["kwh"] == 0.0
    assert compare["change_pct"] is None
    assert compare["current"]["kwh"] == pytest.approx(summary["week_kwh"])

    baseload = await call(client, "GET", "/sites/home/baseload", 200, params={"days": 1, "at": iso(NOW)})
    assert baseload["baseload_w"] == pytest.approx(1200.0)
    assert baseload["buckets"] == 4 * 24

    span = {"start": iso(START), "end": iso(NOW), "tz": "UTC"}
    peak = await call(client, "GET", "/sites/home/peak-demand", 200, params=span)
    assert (peak["peak_kw"], peak["window"], peak["limit_kw"]) == (pytest.approx(1.2), "15min", None)
    assert peak["at"] == iso(START)


async def test_main_meters_setting_and_a_plug_not_counted_twice(client: httpx.AsyncClient, store: Store) -> None:
    # A 300 W plug behind the meter, reporting for the last 10 minutes.
    plug = [Reading("plug", NOW - timedelta(minutes=10 - k), k, power_w=300.0) for k in range(11)]
    await write_all(store, plug, "home")
    await write_all(store, [Reading("elsewhere", NOW, 0, power_w=5.0)], "cabin")
    at = {"tz": "UTC", "at": iso(NOW)}
    before = await call(client, "GET", "/sites/home/summary", 200, params=at)
    assert (before["power_w"], sorted(before["summed_devices"])) == (1500.0, ["meter", "plug"])

    settings = {"tz": "UTC", "main_meters": ["meter"]}
    home = await call(client, "PUT", "/sites/home", 200, json=settings)
    assert (home["main_meters"], home["devices"]) == (["meter"], 2)
    assert (await call(client, "GET", "/sites/home", 200))["main_meters"] == ["meter"]
    after = await call(client, "GET", "/sites/home/summary", 200, params=at)
    assert (after["power_w"], after["summed_devices"]) == (1200.0, ["meter"])

    for wrong in (["nope"], ["meter", "elsewhere"], ["meter", "meter"]):
        body = await call(client, "PUT", "/sites/home", 400, json={**settings, "main_meters": wrong})
        assert error_code(body) == "bad_request"
    for invalid in (["bad id"], "meter", [7], ["x"] * 101):
        body = await call(client, "PUT", "/sites/home", 422, json={**settings, "main_meters": invalid})
        assert error_code(body) == "validation_error"
    # A site without devices has no main meter to name.
    assert error_code(await call(client, "PUT", "/sites/empty", 400, json=settings)) == "bad_request"
    assert error_code(await call(client, "GET", "/sites/empty", 404)) == "not_found"  # nothing was stored
    assert (await call(client, "GET", "/sites/home", 200))["main_meters"] == ["meter"]


@pytest.mark.parametrize(
    ("url", "params", "status"),
    [
        ("/sites/home/energy", {"tz": "Nowhere/Land"}, 400),
        ("/sites/home/energy", {"bucket": "week"}, 422),
        ("/sites/home/energy", {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, 400),
        ("/sites/home/compare", {"period": "year"}, 422),
        ("/sites/home/baseload", {"days": 0}, 422),
        ("/sites/home/peak-demand", {"start": "yesterday"}, 422),
        ("/sites/bad%20id/summary", {}, 422),
        ("/sites/nowhere/summary", {}, 404),
        ("/sites/nowhere/energy", {}, 404),
        ("/sites/home/energy", {"start": "0001-01-01T00:00:00Z", "end": "0001-01-02T00:00:00Z"}, 400),
        ("/sites/home/peak-demand", {"start": "9999-12-30T00:00:00Z", "end": "9999-12-31T23:59:00Z"}, 400),
        ("/sites/home/compare", {"period": "month", "at": "0001-01-01T00:00:00"}, 400),
        ("/sites/home/summary", {"at": "9999-12-31T23:59:59Z"}, 400),
    ],
)
async def test_bad_input_is_a_json_4xx(
    client: httpx.AsyncClient, url: str, params: dict[str, Any], status: int
) -> None:
    body = await call(client, "GET", url, status, params=params)
    error_code(body)

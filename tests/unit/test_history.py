"""`GET /devices/{id}/history`: server-side downsampling over a real SQLite store.

``year-meter`` reads every 10 minutes for a whole year (2025), power following
the minute of the day (``power_at``), so every expected value is computed here
from that rule. The API must pick the finest resolution that fits ``points``
and never ship more than ``points`` points, whatever the range.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from vatio.api import create_app
from vatio.model import Anomaly, Reading, WriteBatch
from vatio.store import Store, open_store, write_all

T0 = datetime(2025, 1, 1, tzinfo=UTC)
T_END = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
N = int((T_END - T0) / STEP)
DEVICE = "year-meter"
URL = f"/api/v1/devices/{DEVICE}/history"


def power_at(ts: datetime) -> float:
    """100 W at midnight rising 1 W per 10 minutes of the day (100..243 W)."""
    return 100.0 + (ts.hour * 60 + ts.minute) // 10


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A year of readings, rolled up, written once for the module (the seeding dominates the run time)."""
    import asyncio

    path = tmp_path_factory.mktemp("history") / "history.db"

    async def seed() -> None:
        store = open_store(f"sqlite:///{path}")
        await store.migrate()
        readings = [Reading(DEVICE, T0 + k * STEP, seq=k, power_w=power_at(T0 + k * STEP)) for k in range(N)]
        await write_all(store, readings, "home-9")
        while await store.refresh_rollups(max_ranges=100_000):
            pass
        await store.record_anomaly(_episode(datetime(2025, 6, 1, 3, tzinfo=UTC), hours=2))
        await store.close_anomaly(DEVICE, "baseload_increase", at=datetime(2025, 6, 1, 5, tzinfo=UTC))
        await store.record_anomaly(_episode(datetime(2025, 3, 1, 3, tzinfo=UTC), hours=1))
        await store.close_anomaly(DEVICE, "baseload_increase", at=datetime(2025, 3, 1, 4, tzinfo=UTC))
        await store.record_anomaly(_episode(datetime(2025, 12, 30, 3, tzinfo=UTC), hours=1))  # still open
        await store.close()

    asyncio.run(seed())
    return path


def _episode(start: datetime, *, hours: int) -> Anomaly:
    return Anomaly(
        device_id=DEVICE,
        kind="baseload_increase",
        detector="seasonal",
        start=start,
        last=start + timedelta(hours=hours),
        score=4.2,
        explanation="baseload 310 W vs usual 120 ± 15 W",
        expected_w=120.0,
        low_w=105.0,
        high_w=135.0,
        observed_w=310.0,
    )


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{db_path}")
    yield store
    await store.close()


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url="http://t") as c:
        yield c


async def history(client: httpx.AsyncClient, start: datetime, end: datetime, **params: Any) -> dict[str, Any]:
    response = await client.get(URL, params={"start": iso(start), "end": iso(end), **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("points", [10, 37, 100, 365, 2000, 5000])
async def test_a_year_never_ships_more_than_points(client: httpx.AsyncClient, points: int) -> None:
    body = await history(client, T0, T_END, points=points)
    assert 0 < len(body["points"]) <= points
    assert body["resolution"] != "raw"
    times = [datetime.fromisoformat(p["ts"]) for p in body["points"]]
    assert times == sorted(times)
    # The whole year is covered: the first and last points are within one bucket of its ends.
    width = timedelta(seconds=body["bucket_s"])
    assert times[0] <= T0 + width
    assert times[-1] >= T_END - 2 * width
    # Downsampling keeps the envelope: every bucket spans the day's 100..243 W.
    assert min(p["min_w"] for p in body["points"]) == 100.0
    assert max(p["max_w"] for p in body["points"]) == 243.0


@pytest.mark.parametrize(
    ("span", "points", "resolution", "count"),
    [
        (timedelta(days=1), 2000, "raw", 144),  # 144 readings fit
        (timedelta(days=7), 2000, "raw", 1008),
        (timedelta(days=7), 1000, "15m", 672),  # 1008 raw don't fit; 10080 minutes don't either
        (timedelta(days=7), 500, "1h", 168),
        (timedelta(days=365), 5000, "1d", 365),  # 8760 hours don't fit
        (timedelta(days=365), 400, "1d", 365),
    ],
)
async def test_the_finest_resolution_that_fits(
    client: httpx.AsyncClient, span: timedelta, points: int, resolution: str, count: int
) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    body = await history(client, start, start + span, points=points)
    assert body["resolution"] == resolution
    assert len(body["points"]) == count


@pytest.mark.parametrize(
    ("span", "finest", "resolution", "count"),
    [
        (timedelta(days=1), "1m", "1m", 288),  # the 144 readings would fit raw; 1m was asked (+ energy-only minutes)
        (timedelta(days=1), "1h", "1h", 24),
        (timedelta(days=7), "1m", "15m", 672),  # 10,080 minutes do not fit 2000: coarser
        (timedelta(days=30), "1m", "1h", 720),
        (timedelta(days=365), "1m", "1d", 365),
        (timedelta(days=365), "raw", "1d", 365),
        (timedelta(days=7), "1d", "1d", 7),
    ],
)
async def test_a_chosen_resolution_is_the_finest_sent_and_still_fits(
    client: httpx.AsyncClient, span: timedelta, finest: str, resolution: str, count: int
) -> None:
    body = await history(client, T0, T0 + span, points=2000, resolution=finest)
    assert body["resolution"] == resolution
    assert len(body["points"]) == count
    assert len(body["points"]) <= 2000


async def test_raw_points_are_the_readings(client: httpx.AsyncClient) -> None:
    start = datetime(2025, 5, 5, 12, tzinfo=UTC)
    body = await history(client, start, start + timedelta(hours=1))
    assert body["bucket_s"] is None
    assert [p["power_w"] for p in body["points"]] == [power_at(start + k * STEP) for k in range(6)]
    assert all(p["min_w"] == p["max_w"] == p["power_w"] for p in body["points"])


async def test_hourly_buckets_carry_mean_min_max(client: httpx.AsyncClient) -> None:
    start = datetime(2025, 5, 5, tzinfo=UTC)
    body = await history(client, start, start + timedelta(days=7), points=500)
    first = body["points"][0]  # 00:00-01:00: readings at 100..105 W
    assert (first["power_w"], first["min_w"], first["max_w"]) == (102.5, 100.0, 105.0)
    assert body["bucket_s"] == 3600


async def test_decades_merge_days_into_wider_buckets(client: httpx.AsyncClient) -> None:
    start = datetime(2010, 1, 1, tzinfo=UTC)
    body = await history(client, start, datetime(2029, 1, 1, tzinfo=UTC), points=10)
    assert len(body["points"]) <= 10
    assert body["bucket_s"] > 86400
    assert body["bucket_s"] % 86400 == 0


async def test_the_range_narrows_to_where_data_is(client: httpx.AsyncClient) -> None:
    """A year-long window holding 7 days of data (the last week of 2025) shows them finely."""
    body = await history(client, T_END - timedelta(days=7), T_END + timedelta(days=358), points=2000)
    assert body["resolution"] == "raw"
    assert len(body["points"]) == 1008


async def test_a_meter_clock_ahead_of_the_ingest_is_still_drawn(tmp_path: Path) -> None:
    """``last_seen`` is the ingest's clock; the reading's own ts may lie after it (by up to a day)."""
    store = open_store(f"sqlite:///{tmp_path}/skew.db")
    await store.migrate()
    ts = datetime(2026, 3, 1, 12, tzinfo=UTC)
    reading = Reading("fast-clock", ts, seq=1, power_w=60_000.0)
    await store.write(WriteBatch(readings=[reading], sites={"fast-clock": "h"}, last_seen={"fast-clock": ts - STEP}))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url="http://t") as c:
            response = await c.get(
                "/api/v1/devices/fast-clock/history", params={"start": iso(ts - STEP), "end": iso(ts + STEP)}
            )
        assert [p["power_w"] for p in response.json()["points"]] == [60_000.0]
    finally:
        await store.close()


@pytest.fixture
def trimmed_copy(tmp_path: Path, db_path: Path) -> Path:
    copy = tmp_path / "trimmed.db"
    copy.write_bytes(db_path.read_bytes())
    return copy


async def test_trimmed_raw_falls_back_to_rollups(trimmed_copy: Path) -> None:
    """Retention dropped raw readings before December: a range reaching before it must use rollups."""
    copy = trimmed_copy
    store = open_store(f"sqlite:///{copy}")
    try:
        await store.apply_retention(raw_days=31, now=T_END)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(store)), base_url="http://t") as c:
            # 62 days: raw would fit 5000 (4464 readings left) but would be missing November.
            body = await history(c, T_END - timedelta(days=62), T_END, points=5000)
            assert body["resolution"] == "1h"
            assert len(body["points"]) == 62 * 24
            recent = await history(c, T_END - timedelta(days=20), T_END, points=5000)
            assert recent["resolution"] == "raw"
    finally:
        await store.close()


async def test_anomalies_in_range_come_with_band_and_explanation(client: httpx.AsyncClient) -> None:
    body = await history(client, datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC))
    assert len(body["anomalies"]) == 1
    episode = body["anomalies"][0]
    assert episode["kind"] == "baseload_increase"
    assert (episode["low_w"], episode["high_w"], episode["expected_w"], episode["observed_w"]) == (
        105.0,
        135.0,
        120.0,
        310.0,
    )
    assert episode["explanation"] == "baseload 310 W vs usual 120 ± 15 W"
    assert episode["end"] == "2025-06-01T05:00:00Z"
    whole_year = await history(client, T0, T_END)
    starts = [a["start"] for a in whole_year["anomalies"]]
    assert starts == ["2025-03-01T03:00:00Z", "2025-06-01T03:00:00Z", "2025-12-30T03:00:00Z"]
    assert whole_year["anomalies"][-1]["end"] is None
    # An open episode overlaps every later window.
    later = await history(client, datetime(2025, 12, 31, tzinfo=UTC), T_END)
    assert [a["start"] for a in later["anomalies"]] == ["2025-12-30T03:00:00Z"]


@pytest.mark.parametrize(
    ("url", "params", "status", "code"),
    [
        ("/api/v1/devices/nope/history", {}, 404, "not_found"),
        (URL, {"points": 5001}, 422, "validation_error"),
        (URL, {"points": 0}, 422, "validation_error"),
        (URL, {"start": "2025-02-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, 400, "bad_request"),
        (URL, {"start": "yesterday"}, 422, "validation_error"),
        (URL, {"end": "0001-01-01T10:00:00Z"}, 400, "bad_request"),  # the default start would precede year 1
        (URL, {"start": "9999-12-31T00:00:00-05:00", "end": "9999-12-31T23:00:00-05:00"}, 400, "bad_request"),
        ("/api/v1/sites/home-9/energy", {"end": "0001-01-01T10:00:00Z"}, 400, "bad_request"),
        ("/api/v1/devices/bad%20id/history", {}, 422, "validation_error"),
    ],
)
async def test_bad_input_is_a_json_4xx(
    client: httpx.AsyncClient, url: str, params: dict[str, Any], status: int, code: str
) -> None:
    response = await client.get(url, params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code

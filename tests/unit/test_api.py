"""The HTTP API over a real SQLite store, seeded with data whose answers follow from physics.

``meter-a`` (site ``home-1``) reads every 30 s from 2026-01-31T00:00Z to
2026-02-02T00:00Z inclusive and its import counter rises 5 Wh per reading.
Its power ripples around 600 W: 500 W on the minute and 700 W on the half
minute in even minutes (counted from the start), 400 W and 800 W in odd ones.
So every minute has 2 samples, mean 600 W and 10 Wh; min/max are 500/700 W or
400/800 W, and any longer bucket has 400/800 W. The reading on
2026-02-02T00:00Z stands alone: one sample of 500 W and no energy (the
interval ending on a boundary belongs to the bucket before it).

``plug-b`` (site ``home-2``) reports power only, 1, 2 and 3 minutes ago, so it
is online; ``meter-a`` was last seen in February and is offline.

Expected values are computed here from those rules, never by the code under test.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from vatio.api import create_app
from vatio.model import DeadLetter, Reading, WriteBatch
from vatio.store import Store, open_store, write_all

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 1, 31, tzinfo=UTC)
STEP = timedelta(seconds=30)
SPAN = timedelta(days=2)
N_A = int(SPAN / STEP) + 1  # both ends included
COUNTER_0_WH = 1000.0
WH_PER_STEP = 5.0
WH_PER_MINUTE = 2 * WH_PER_STEP
PLUG_B_POWER_W = (100.0, 200.0, 300.0)


def ripple_w(minute: int) -> float:
    return 100.0 if minute % 2 == 0 else 200.0


def meter_a_reading(k: int) -> Reading:
    minute, half = divmod(k, 2)
    return Reading(
        "meter-a",
        T0 + k * STEP,
        seq=k,
        power_w=600.0 - ripple_w(minute) if half == 0 else 600.0 + ripple_w(minute),
        energy_wh=COUNTER_0_WH + WH_PER_STEP * k,
        voltage_v=230.0,
    )


def energy_between(start: datetime, end: datetime) -> float:
    """Energy of meter-a in ``[start, end)``: 10 Wh for every minute of its data inside it."""
    lo, hi = max(start, T0).astimezone(UTC), min(end, T0 + SPAN).astimezone(UTC)
    return max(0.0, (hi - lo) / timedelta(minutes=1) * WH_PER_MINUTE)


def parse_ts(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    assert ts.tzinfo is not None, f"{text!r} has no UTC offset"
    return ts


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def drain_rollups(store: Store) -> None:
    for _ in range(100):
        if await store.refresh_rollups() == 0:
            return
    pytest.fail("refresh_rollups never reached 0")


@pytest.fixture
async def seeded_store(tmp_path: Path) -> AsyncIterator[Store]:
    """SQLite store with meter-a, plug-b and one dead letter; rollups up to date."""
    store = open_store(f"sqlite:///{tmp_path}/api.db")
    await store.migrate()
    readings = [meter_a_reading(k) for k in range(N_A)]
    # The second day first, then the first one late: rollups must absorb late data.
    half = N_A // 2
    await write_all(store, readings[half:], "home-1")
    await drain_rollups(store)
    await write_all(store, readings[:half], "home-1")

    now = datetime.now(UTC)
    plug = [Reading("plug-b", now - timedelta(minutes=3 - i), seq=i, power_w=p) for i, p in enumerate(PLUG_B_POWER_W)]
    await write_all(store, plug, "home-2")
    await store.set_device_status("plug-b", "home-2", online=True, firmware="1.2.3", at=now)
    dead = DeadLetter(received_at=now, topic="vatio/v1/home-2/plug-b/telemetry", reason="bad", payload=b"{")
    await store.write(WriteBatch(dead_letters=[dead]))
    await drain_rollups(store)
    yield store
    await store.close()


@pytest.fixture
async def client(seeded_store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(seeded_store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def get_json(client: httpx.AsyncClient, url: str, status: int = 200, **params: Any) -> Any:
    response = await client.get(url, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def assert_error(body: Any, code: str) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "detail"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


# -- health -----------------------------------------------------------------------------


async def test_health_counts_what_was_stored(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/health")
    assert body == {
        "status": "ok",
        "version": importlib.metadata.version("vatio"),
        "store": "sqlite",
        "readings": N_A + len(PLUG_B_POWER_W),
        "devices": 2,
        "dead_letters": 1,
        "pending_rollups": 0,
    }


async def test_health_shows_pending_rollups_until_refreshed(client: httpx.AsyncClient, seeded_store: Store) -> None:
    await write_all(seeded_store, [Reading("meter-c", T0, power_w=1.0)], "home-3")
    body = await get_json(client, "/health")
    assert (body["readings"], body["devices"], body["pending_rollups"]) == (N_A + 4, 3, 1)
    await drain_rollups(seeded_store)
    assert (await get_json(client, "/health"))["pending_rollups"] == 0


# -- devices ----------------------------------------------------------------------------


async def test_device_list_has_sites_freshness_and_status(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/api/v1/devices")
    items = {item["id"]: item for item in body["items"]}
    assert sorted(items) == ["meter-a", "plug-b"]

    meter = items["meter-a"]
    assert meter["site"] == "home-1"
    assert parse_ts(meter["last_seen"]) == T0 + SPAN
    assert meter["online"] is False
    assert meter["firmware"] is None
    assert meter["reported_online"] is None

    plug = items["plug-b"]
    assert plug["site"] == "home-2"
    age = datetime.now(UTC) - parse_ts(plug["last_seen"])
    assert timedelta(seconds=55) <= age <= timedelta(minutes=2)
    assert plug["online"] is True
    assert plug["firmware"] == "1.2.3"
    assert plug["reported_online"] is True


async def test_one_device(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/api/v1/devices/meter-a")
    assert body["id"] == "meter-a"
    assert body["site"] == "home-1"
    assert body["online"] is False
    assert parse_ts(body["first_seen"]) <= parse_ts(body["last_seen"]) == T0 + SPAN
    assert (await get_json(client, "/api/v1/devices/plug-b"))["online"] is True


# -- raw readings -----------------------------------------------------------------------

RAW_START = T0 + timedelta(hours=10)
RAW_END = RAW_START + timedelta(minutes=5)
RAW_K0 = int((RAW_START - T0) / STEP)
RAW_COUNT = int((RAW_END - RAW_START) / STEP)


async def test_raw_readings_are_the_half_open_range_oldest_first(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/api/v1/devices/meter-a/readings", start=iso(RAW_START), end=iso(RAW_END))
    assert body["device_id"] == "meter-a"
    assert body["resolution"] == "raw"
    assert parse_ts(body["start"]) == RAW_START
    assert parse_ts(body["end"]) == RAW_END
    assert body["truncated"] is False
    items = body["items"]
    assert len(items) == RAW_COUNT == 10
    for k, item in enumerate(items, start=RAW_K0):
        expected = meter_a_reading(k)
        assert parse_ts(item["ts"]) == expected.ts
        assert item["seq"] == k
        assert item["power_w"] == expected.power_w
        assert item["energy_wh"] == expected.energy_wh
        assert item["voltage_v"] == 230.0
        assert item["current_a"] is None
    # start is inclusive, end exclusive
    assert parse_ts(items[0]["ts"]) == RAW_START
    assert parse_ts(items[-1]["ts"]) == RAW_END - STEP


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-01-31T11:00:00+01:00", "2026-01-31T11:05:00+01:00"),  # other offset, same instants
        ("2026-01-31T10:00:00", "2026-01-31T10:05:00"),  # naive means UTC
    ],
)
async def test_raw_range_accepts_offsets_and_naive_utc(client: httpx.AsyncClient, start: str, end: str) -> None:
    body = await get_json(client, "/api/v1/devices/meter-a/readings", start=start, end=end)
    assert [item["seq"] for item in body["items"]] == list(range(RAW_K0, RAW_K0 + RAW_COUNT))


@pytest.mark.parametrize(("limit", "truncated"), [(1, True), (4, True), (9, True), (10, False), (11, False)])
async def test_raw_limit_and_truncated(client: httpx.AsyncClient, limit: int, truncated: bool) -> None:
    body = await get_json(
        client, "/api/v1/devices/meter-a/readings", start=iso(RAW_START), end=iso(RAW_END), limit=limit
    )
    assert body["truncated"] is truncated
    kept = min(limit, RAW_COUNT)
    assert [item["seq"] for item in body["items"]] == list(range(RAW_K0, RAW_K0 + kept))


async def test_raw_default_range_is_the_last_24_hours(client: httpx.AsyncClient) -> None:
    plug = await get_json(client, "/api/v1/devices/plug-b/readings")
    assert [item["power_w"] for item in plug["items"]] == list(PLUG_B_POWER_W)
    assert parse_ts(plug["end"]) - parse_ts(plug["start"]) == timedelta(hours=24)
    meter = await get_json(client, "/api/v1/devices/meter-a/readings")
    assert meter["items"] == []


@pytest.mark.parametrize("limit", [0, -1, 100_001])
async def test_raw_limit_out_of_bounds(client: httpx.AsyncClient, limit: int) -> None:
    body = await get_json(client, "/api/v1/devices/meter-a/readings", 422, limit=limit)
    assert_error(body, "validation_error")


# -- rollups ----------------------------------------------------------------------------


def rollup_bucket(ts: datetime, width: timedelta) -> dict[str, Any]:
    """What the rollup of meter-a must say for a bucket of ``width`` starting at ``ts``."""
    if ts == T0 + SPAN:  # the lone closing reading
        return {"ts": ts, "samples": 1, "mean": 500.0, "min": 500.0, "max": 500.0, "energy": 0.0}
    minutes = width / timedelta(minutes=1)
    ripple = ripple_w(int((ts - T0) / timedelta(minutes=1))) if minutes == 1 else 200.0
    return {
        "ts": ts,
        "samples": int(2 * minutes),
        "mean": 600.0,
        "min": 600.0 - ripple,
        "max": 600.0 + ripple,
        "energy": energy_between(ts, ts + width),
    }


@pytest.mark.parametrize(
    ("resolution", "width", "start", "end"),
    [
        ("1m", timedelta(minutes=1), T0 + timedelta(hours=10), T0 + timedelta(hours=10, minutes=5)),
        ("15m", timedelta(minutes=15), T0, T0 + timedelta(hours=1)),
        ("1h", timedelta(hours=1), T0, T0 + timedelta(days=3)),
        ("1d", timedelta(days=1), T0 - timedelta(days=1), T0 + timedelta(days=3)),
    ],
)
async def test_rollup_resolutions_match_the_physics(
    client: httpx.AsyncClient, resolution: str, width: timedelta, start: datetime, end: datetime
) -> None:
    body = await get_json(
        client, "/api/v1/devices/meter-a/readings", start=iso(start), end=iso(end), resolution=resolution
    )
    assert body["resolution"] == resolution
    assert body["truncated"] is False
    expected = []
    ts = max(start, T0)
    while ts < end and ts <= T0 + SPAN:
        bucket = rollup_bucket(ts, width)
        expected.append(bucket | {"energy": pytest.approx(bucket["energy"], abs=1e-6)})
        ts += width
    got = [
        {
            "ts": parse_ts(item["ts"]),
            "samples": item["samples"],
            "mean": item["power_mean_w"],
            "min": item["power_min_w"],
            "max": item["power_max_w"],
            "energy": item["energy_wh"],
        }
        for item in body["items"]
    ]
    assert got == expected


async def test_rollup_limit_and_truncated(client: httpx.AsyncClient) -> None:
    span: dict[str, Any] = {"start": iso(T0), "end": iso(T0 + timedelta(hours=2)), "resolution": "1m"}
    whole = await get_json(client, "/api/v1/devices/meter-a/readings", **span)
    assert whole["truncated"] is False
    assert len(whole["items"]) > 5
    cut = await get_json(client, "/api/v1/devices/meter-a/readings", **span, limit=5)
    assert cut["truncated"] is True
    assert cut["items"] == whole["items"][:5]


async def test_power_only_device_integrates_energy(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/api/v1/devices/plug-b/energy", bucket="hour")
    p = PLUG_B_POWER_W
    # Trapezoids over two one-minute intervals.
    expected_wh = ((p[0] + p[1]) / 2 + (p[1] + p[2]) / 2) / 60
    assert body["total_wh"] == pytest.approx(expected_wh, abs=1e-3)
    assert sum(item["energy_wh"] for item in body["items"]) == pytest.approx(expected_wh, abs=1e-3)


# -- energy -----------------------------------------------------------------------------


def local_periods(tz: ZoneInfo, bucket: str, start: datetime, end: datetime) -> list[tuple[datetime, float]]:
    """Local periods of ``tz`` overlapping meter-a's data inside ``[start, end)``, with their energy."""
    out: list[tuple[datetime, float]] = []
    first = max(start, T0).astimezone(tz)
    if bucket == "hour":
        at = first.replace(minute=0, second=0, microsecond=0)
    elif bucket == "day":
        at = first.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        at = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while at < min(end, T0 + SPAN):
        if bucket == "hour":
            nxt = (at.astimezone(UTC) + timedelta(hours=1)).astimezone(tz)
        elif bucket == "day":
            nxt = (at.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
        else:
            month = at.replace(tzinfo=None)
            month = month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)
            nxt = month.replace(tzinfo=tz)
        out.append((at, energy_between(max(at, start), min(nxt, end))))
        at = nxt
    return out


async def energy_items(
    client: httpx.AsyncClient, device: str, bucket: str, tz: str, start: datetime, end: datetime
) -> tuple[Any, list[tuple[datetime, float]]]:
    body = await get_json(
        client, f"/api/v1/devices/{device}/energy", bucket=bucket, tz=tz, start=iso(start), end=iso(end)
    )
    assert body["device_id"] == device
    assert body["bucket"] == bucket
    assert body["tz"] == tz
    return body, [(parse_ts(item["start"]), item["energy_wh"]) for item in body["items"]]


@pytest.mark.parametrize(
    ("bucket", "tz", "start", "end", "expected"),
    [
        # UTC days hold whole data days; Paris (UTC+1 in winter) days start at 23:00Z.
        ("day", "UTC", T0, T0 + SPAN, [(T0, 14_400.0), (T0 + timedelta(days=1), 14_400.0)]),
        (
            "day",
            "Europe/Paris",
            T0 - timedelta(hours=1),
            T0 + SPAN + timedelta(hours=23),
            [
                (datetime(2026, 1, 31, tzinfo=PARIS), 13_800.0),
                (datetime(2026, 2, 1, tzinfo=PARIS), 14_400.0),
                (datetime(2026, 2, 2, tzinfo=PARIS), 600.0),
            ],
        ),
        (
            "month",
            "UTC",
            datetime(2026, 1, 1, tzinfo=UTC),
            T0 + SPAN,
            [(datetime(2026, 1, 1, tzinfo=UTC), 14_400.0), (datetime(2026, 2, 1, tzinfo=UTC), 14_400.0)],
        ),
        (
            "month",
            "Europe/Paris",
            datetime(2026, 1, 1, tzinfo=PARIS),
            datetime(2026, 3, 1, tzinfo=PARIS),
            [(datetime(2026, 1, 1, tzinfo=PARIS), 13_800.0), (datetime(2026, 2, 1, tzinfo=PARIS), 15_000.0)],
        ),
        (
            "hour",
            "Europe/Paris",
            T0 + timedelta(hours=10),
            T0 + timedelta(hours=13),
            [(datetime(2026, 1, 31, h, tzinfo=PARIS), 600.0) for h in (11, 12, 13)],
        ),
    ],
)
async def test_energy_buckets_in_utc_and_local_time(
    client: httpx.AsyncClient,
    bucket: str,
    tz: str,
    start: datetime,
    end: datetime,
    expected: list[tuple[datetime, float]],
) -> None:
    body, got = await energy_items(client, "meter-a", bucket, tz, start, end)
    # The hand-written expectations agree with the generic rule.
    assert expected == local_periods(ZoneInfo(tz), bucket, start, end)
    assert [ts for ts, _ in got] == [ts for ts, _ in expected]
    # Bucket starts are local midnights/hours: the offset is the zone's, not UTC's.
    assert [ts.utcoffset() for ts, _ in got] == [ts.utcoffset() for ts, _ in expected]
    assert [wh for _, wh in got] == pytest.approx([wh for _, wh in expected], abs=1e-6)
    assert body["total_wh"] == pytest.approx(sum(wh for _, wh in expected), abs=1e-6)


@pytest.mark.parametrize("bucket", ["hour", "day"])
async def test_energy_utc_hours_and_days_sum_to_the_counter_rise(client: httpx.AsyncClient, bucket: str) -> None:
    body, got = await energy_items(client, "meter-a", bucket, "UTC", T0, T0 + SPAN)
    counter_rise = WH_PER_STEP * (N_A - 1)
    assert body["total_wh"] == pytest.approx(counter_rise)
    assert len(got) == (48 if bucket == "hour" else 2)
    assert {wh for _, wh in got} == {600.0 if bucket == "hour" else 14_400.0}


async def seed_600_w(store: Store, device_id: str, first: datetime, last: datetime) -> None:
    """One reading a minute at 600 W (10 Wh a minute) over ``[first, last]``."""
    # Arithmetic in UTC: Python adds and subtracts same-zone datetimes in wall-clock time.
    first, last = first.astimezone(UTC), last.astimezone(UTC)
    minutes = int((last - first) / timedelta(minutes=1))
    readings = [
        Reading(device_id, first + timedelta(minutes=m), power_w=600.0, energy_wh=10.0 * m) for m in range(minutes + 1)
    ]
    await write_all(store, readings, "home-1")
    await drain_rollups(store)


async def test_energy_local_days_across_spring_forward(client: httpx.AsyncClient, seeded_store: Store) -> None:
    """Paris springs forward on 2026-03-29: that local day has 23 hours, the next starts at +02:00."""
    first, last = datetime(2026, 3, 28, tzinfo=PARIS), datetime(2026, 3, 31, tzinfo=PARIS)
    await seed_600_w(seeded_store, "meter-dst", first, last)
    _, got = await energy_items(client, "meter-dst", "day", "Europe/Paris", first, last)
    assert got == [
        (datetime(2026, 3, 28, tzinfo=PARIS), 24 * 600.0),
        (datetime(2026, 3, 29, tzinfo=PARIS), 23 * 600.0),
        (datetime(2026, 3, 30, tzinfo=PARIS), 24 * 600.0),
    ]
    assert [ts.utcoffset() for ts, _ in got] == [timedelta(hours=h) for h in (1, 1, 2)]


async def test_energy_local_hours_across_fall_back(client: httpx.AsyncClient, seeded_store: Store) -> None:
    """Paris falls back on 2026-10-25: 02:00 local comes twice, first at +02:00, then at +01:00."""
    first, last = datetime(2026, 10, 25, tzinfo=PARIS), datetime(2026, 10, 26, tzinfo=PARIS)
    await seed_600_w(seeded_store, "meter-fall", first, last)

    _, days = await energy_items(client, "meter-fall", "day", "Europe/Paris", first, last)
    assert days == [(datetime(2026, 10, 25, tzinfo=PARIS), 25 * 600.0)]

    body, hours = await energy_items(client, "meter-fall", "hour", "Europe/Paris", first, last)
    utc_hours = [first.astimezone(UTC) + timedelta(hours=h) for h in range(25)]
    assert [ts for ts, _ in hours] == utc_hours
    assert {wh for _, wh in hours} == {600.0}
    assert [parse_ts(item["start"]).isoformat() for item in body["items"][:5]] == [
        "2026-10-25T00:00:00+02:00",
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/devices/nosuch",
        "/api/v1/devices/nosuch/readings",
        "/api/v1/devices/nosuch/energy",
        "/api/v1/devices/" + "x" * 64,
    ],
)
async def test_unknown_device_is_404(client: httpx.AsyncClient, url: str) -> None:
    body = await get_json(client, url, 404)
    error = assert_error(body, "not_found")
    device_id = url.split("/")[4]
    assert error["detail"] == {"kind": "device", "id": device_id}
    assert device_id in error["message"]


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/devices/meter-a/readings", {"resolution": "5m"}, "resolution"),
        ("/api/v1/devices/meter-a/readings", {"resolution": ""}, "resolution"),
        ("/api/v1/devices/meter-a/energy", {"bucket": "week"}, "bucket"),
        ("/api/v1/devices/meter-a/readings", {"start": "yesterday"}, "start"),
        ("/api/v1/devices/meter-a/energy", {"tz": "x" * 65}, "tz"),
    ],
)
async def test_invalid_parameters_are_422(
    client: httpx.AsyncClient, url: str, params: dict[str, str], field: str
) -> None:
    body = await get_json(client, url, 422, **params)
    error = assert_error(body, "validation_error")
    assert any(problem["loc"][-1] == field for problem in error["detail"]), error["detail"]


@pytest.mark.parametrize("device_id", ["bad%20id", "x" * 65, "caf%C3%A9", "dot.ted"])
async def test_malformed_device_id_is_422(client: httpx.AsyncClient, device_id: str) -> None:
    for suffix in ("", "/readings", "/energy"):
        body = await get_json(client, f"/api/v1/devices/{device_id}{suffix}", 422)
        error = assert_error(body, "validation_error")
        assert any(problem["loc"][-1] == "device_id" for problem in error["detail"])


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [
        ("2026-01-31T10:00:00Z", "2026-01-31T10:00:00Z", "before"),
        ("2026-01-31T11:00:00Z", "2026-01-31T10:00:00Z", "before"),
        ("2026-01-31T10:00:00+01:00", "2026-01-31T09:00:00Z", "before"),  # same instant
        ("1990-01-01T00:00:00Z", "2026-01-31T10:00:00Z", "20 years"),
    ],
)
async def test_bad_time_range_is_400(client: httpx.AsyncClient, start: str, end: str, words: str) -> None:
    for path in ("readings", "energy"):
        body = await get_json(client, f"/api/v1/devices/meter-a/{path}", 400, start=start, end=end)
        assert words in assert_error(body, "bad_request")["message"]


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "../../etc/passwd", "utc+1"])
async def test_unknown_time_zone_is_400(client: httpx.AsyncClient, tz: str) -> None:
    body = await get_json(client, "/api/v1/devices/meter-a/energy", 400, tz=tz)
    assert tz in assert_error(body, "bad_request")["message"]


async def test_unknown_route_uses_the_error_shape(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/api/v1/nothing-here", 404)
    assert_error(body, "http_error")


# -- documentation ----------------------------------------------------------------------


async def test_openapi_lists_the_routes(client: httpx.AsyncClient) -> None:
    spec = await get_json(client, "/openapi.json")
    assert spec["info"]["title"] == "Vatio"
    assert spec["info"]["version"] == importlib.metadata.version("vatio")
    paths = spec["paths"]
    for path in (
        "/health",
        "/api/v1/devices",
        "/api/v1/devices/{device_id}",
        "/api/v1/devices/{device_id}/readings",
        "/api/v1/devices/{device_id}/energy",
    ):
        assert "get" in paths[path], path
    readings = paths["/api/v1/devices/{device_id}/readings"]["get"]
    assert {"200", "400", "404", "422"} <= set(readings["responses"])
    params = {p["name"] for p in readings["parameters"]}
    assert {"device_id", "start", "end", "resolution", "limit"} <= params


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text
    assert "/openapi.json" in response.text
    assert "cdn" not in response.text  # Swagger UI comes from this server (the swagger-ui-bundle wheel)
    script = await client.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.content) > 100_000


async def test_a_body_that_is_not_json_is_a_422_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/mutes", content=b"\xff\xfe not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "validation_error",
        "message": "the request body is not valid JSON",
        "detail": None,
    }

"""The anomalies, models and devices endpoints over both store backends: filters, pages, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from vatio.api import create_app
from vatio.api.pagination import encode_cursor
from vatio.model import Anomaly, ModelStatus, ModelVersion, Reading
from vatio.store import Store, write_all

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
SITES = {"d1": "home-1", "d2": "home-1", "d3": "home-2"}


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def seed(store: Store) -> None:
    """Closed episodes every 10 minutes for each device (9 in all), plus one open episode of d1."""
    for device, site in SITES.items():
        await write_all(store, [Reading(device, T0, power_w=1.0)], site)
    for minutes in (0, 10, 20):
        for device in SITES:
            at = T0 + timedelta(minutes=minutes)
            await store.record_anomaly(
                Anomaly(device_id=device, kind="spike", detector="edge", start=at, last=at, score=2.5,
                        explanation="spike of 900 W", expected_w=100.0, low_w=50.0, high_w=150.0, observed_w=1000.0)
            )  # fmt: skip
            await store.close_anomaly(device, "spike", at=at + timedelta(minutes=5))
    at = T0 + timedelta(minutes=30)
    await store.record_anomaly(
        Anomaly(device_id="d1", kind="baseload", detector="edge", start=at, last=at, score=4.0, explanation="on")
    )


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    await seed(store)
    app = create_app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def get(client: httpx.AsyncClient, url: str, status: int = 200, **params: Any) -> Any:
    response = await client.get(url, params=params)
    assert response.status_code == status, response.text
    return response.json()


def assert_error(body: Any, code: str) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def all_pages(client: httpx.AsyncClient, url: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        body = await get(client, url, **params, **({"cursor": cursor} if cursor else {}))
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_anomalies_page_through_newest_first(client: httpx.AsyncClient) -> None:
    pages = await all_pages(client, "/api/v1/anomalies", limit=3)
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    items = [item for page in pages for item in page]
    assert len({item["id"] for item in items}) == 10
    keys = [(item["start"], item["id"]) for item in items]
    assert keys == sorted(keys, reverse=True)
    first = items[0]
    assert first["kind"] == "baseload"
    assert first["end"] is None
    assert first["start"] == "2026-11-20T10:30:00Z"
    assert all(item["site"] == SITES[item["device"]] for item in items)
    closed = items[1]
    assert (closed["observed_w"], closed["expected_w"], closed["score"]) == (1000.0, 100.0, 2.5)
    assert closed["end"] == "2026-11-20T10:25:00Z"


async def test_anomaly_filters(client: httpx.AsyncClient) -> None:
    home1 = [item for page in await all_pages(client, "/api/v1/anomalies", site="home-1", limit=2) for item in page]
    assert sorted(item["device"] for item in home1) == ["d1"] * 4 + ["d2"] * 3
    d3 = (await get(client, "/api/v1/anomalies", device="d3"))["items"]
    assert [item["device"] for item in d3] == ["d3"] * 3
    open_ = (await get(client, "/api/v1/anomalies", open="true"))["items"]
    assert [(item["device"], item["kind"]) for item in open_] == [("d1", "baseload")]
    # Overlap with [10:12, 10:21): the 10:10 episodes run to 10:15, the 10:20 ones start inside.
    window = await get(client, "/api/v1/anomalies", start="2026-11-20T10:12:00Z", end="2026-11-20T10:21:00Z")
    assert sorted({item["start"] for item in window["items"]}) == ["2026-11-20T10:10:00Z", "2026-11-20T10:20:00Z"]
    assert (await get(client, "/api/v1/anomalies", site="nowhere"))["items"] == []


async def test_one_anomaly_and_its_errors(client: httpx.AsyncClient) -> None:
    listed = (await get(client, "/api/v1/anomalies", limit=1))["items"][0]
    assert await get(client, f"/api/v1/anomalies/{listed['id']}") == listed
    assert_error(await get(client, "/api/v1/anomalies/999999", 404), "not_found")
    assert_error(await get(client, "/api/v1/anomalies/0", 422), "validation_error")
    assert_error(await get(client, "/api/v1/anomalies/abc", 422), "validation_error")


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "!!!"}, 400),
        ({"cursor": encode_cursor({"id": 3})}, 400),
        ({"cursor": encode_cursor([1, -1])}, 400),
        ({"cursor": encode_cursor([10**18, 1])}, 400),
        ({"cursor": encode_cursor([1.5, 1])}, 400),
        ({"start": "2026-11-20T11:00:00Z", "end": "2026-11-20T10:00:00Z"}, 400),
        ({"start": "0001-01-01T00:00:00+05:00"}, 400),
        ({"site": "a/b"}, 422),
        ({"limit": 0}, 422),
        ({"open": "maybe"}, 422),
    ],
)
async def test_bad_anomaly_queries_are_4xx_json(client: httpx.AsyncClient, params: dict[str, Any], status: int) -> None:
    body = await get(client, "/api/v1/anomalies", status, **params)
    assert_error(body, "bad_request" if status == 400 else "validation_error")


def model(status: ModelStatus, day: int, device: str = "d1") -> ModelVersion:
    return ModelVersion(
        detector="seasonal", device_id=device, version=0, status=status, trained_from=T0 - timedelta(days=30),
        trained_to=T0, created_at=T0 + timedelta(days=day), metrics={"f1": 0.75},
    )  # fmt: skip


async def test_models_page_and_a_shadow_is_promoted(client: httpx.AsyncClient, store: Store) -> None:
    statuses = [ModelStatus.RETIRED, ModelStatus.LIVE, ModelStatus.SHADOW]
    saved = [await store.save_model(model(status, day)) for day, status in enumerate(statuses)]
    await store.save_model(model(ModelStatus.LIVE, 0, device="d2"))
    pages = await all_pages(client, "/api/v1/models", device="d1", limit=2)
    assert [[item["version"] for item in page] for page in pages] == [[3, 2], [1]]
    shadow = pages[0][0]
    assert (shadow["status"], shadow["metrics"], shadow["created_at"]) == (
        "shadow",
        {"f1": 0.75},
        "2026-11-22T10:00:00Z",
    )
    assert len((await get(client, "/api/v1/models"))["items"]) == 4
    assert (await get(client, "/api/v1/models", detector="other"))["items"] == []

    response = await client.post(f"/api/v1/models/{saved[2].id}/promote")
    assert response.status_code == 200, response.text
    assert response.json() == {**shadow, "status": "live"}
    after = {item["version"]: item["status"] for item in (await get(client, "/api/v1/models", device="d1"))["items"]}
    assert after == {1: "retired", 2: "retired", 3: "live"}

    again = await client.post(f"/api/v1/models/{saved[2].id}/promote")
    assert again.status_code == 409
    assert_error(again.json(), "conflict")
    assert again.json()["error"]["detail"]["state"] == "live"
    missing = await client.post("/api/v1/models/999999/promote")
    assert missing.status_code == 404
    assert_error(missing.json(), "not_found")


async def test_devices_page_by_id_and_keep_items(client: httpx.AsyncClient) -> None:
    pages = await all_pages(client, "/api/v1/devices", limit=2)
    assert [[item["id"] for item in page] for page in pages] == [["d1", "d2"], ["d3"]]
    everything = await get(client, "/api/v1/devices")
    assert [item["id"] for item in everything["items"]] == ["d1", "d2", "d3"]
    assert everything["next_cursor"] is None
    assert_error(await get(client, "/api/v1/devices", 400, cursor=encode_cursor("a/b")), "bad_request")
    assert_error(await get(client, "/api/v1/devices", 400, cursor=encode_cursor(7)), "bad_request")

"""The alerts and mutes API over a real SQLite store: the contract's shapes, transitions, 409s and 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from vatio.alert.lifecycle import AlertEngine
from vatio.alert.routes import parse_config
from vatio.api import create_app
from vatio.model import Anomaly, Reading
from vatio.store import Store, open_store, write_all

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/api.db")
    await store.migrate()
    await write_all(store, [Reading("plug-1", NOW, power_w=9000.0), Reading("plug-2", NOW, power_w=5.0)], "home-1")
    for device, kind in (("plug-1", "over_power"), ("plug-2", "gap")):
        await store.record_anomaly(
            Anomaly(device_id=device, kind=kind, detector="edge", start=NOW - timedelta(minutes=5), last=NOW,
                    score=3.0, explanation=f"{kind} explained")
        )  # fmt: skip
    await AlertEngine(store=store, config=parse_config({})).tick()
    yield store
    await store.close()


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store)
    app.state.alert_config = parse_config({})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


async def test_list_filter_and_page(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/alerts")).json()
    assert [(a["device"], a["severity"], a["state"]) for a in body["items"]] == [
        ("plug-2", "warning", "firing"), ("plug-1", "critical", "firing")
    ]  # fmt: skip
    first = body["items"][1]
    assert set(first) == {
        "id", "site", "device", "kind", "severity", "state", "title", "explanation", "anomaly_id", "opened_at",
        "updated_at", "acknowledged_at", "resolved_at", "acknowledged_by", "muted",
    }  # fmt: skip
    assert first["opened_at"].endswith("Z")
    assert first["site"] == "home-1"
    page = (await client.get("/api/v1/alerts", params={"limit": 1})).json()
    rest = (await client.get("/api/v1/alerts", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [a["device"] for a in page["items"] + rest["items"]] == ["plug-2", "plug-1"]
    assert rest["next_cursor"] is None
    critical = (await client.get("/api/v1/alerts", params={"severity": "critical", "site": "home-1"})).json()
    assert [a["kind"] for a in critical["items"]] == ["over_power"]
    assert (await client.get("/api/v1/alerts", params={"state": "resolved"})).json()["items"] == []


async def test_acknowledge_resolve_and_conflicts(client: httpx.AsyncClient, store: Store) -> None:
    alert_id = (await client.get("/api/v1/alerts", params={"device": "plug-1"})).json()["items"][0]["id"]
    acked = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ana", "note": "kettle"})
    assert acked.status_code == 200
    assert (acked.json()["state"], acked.json()["acknowledged_by"]) == ("acknowledged", "ana")
    again = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ana"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    resolved = await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "bob", "note": None})
    assert resolved.json()["state"] == "resolved"
    assert resolved.json()["resolved_at"]
    assert (await client.post(f"/api/v1/alerts/{alert_id}/resolve", json={"by": "bob"})).status_code == 409
    detail = (await client.get(f"/api/v1/alerts/{alert_id}")).json()
    assert [(e["actor"], e["from_state"], e["to_state"]) for e in detail["audit"]] == [
        ("system", None, "firing"), ("ana", "firing", "acknowledged"), ("bob", "acknowledged", "resolved")
    ]  # fmt: skip
    # The API's transitions wrote their notifications to the outbox, for the alert stage to deliver.
    events = [orjson.loads(m.payload)["event"] for m in await store.outbox_messages(alert_id=alert_id)]
    assert events == ["alert_firing", "alert_acknowledged", "alert_resolved"]


async def test_bad_input_is_a_4xx(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/alerts/999")).status_code == 404
    assert (await client.post("/api/v1/alerts/999/resolve", json={"by": "x"})).status_code == 404
    assert (await client.get("/api/v1/alerts/0")).status_code == 422
    assert (await client.get("/api/v1/alerts/99999999999999999999")).status_code == 422
    assert (await client.post("/api/v1/alerts/1/acknowledge", json={"by": ""})).status_code == 422
    assert (await client.get("/api/v1/alerts", params={"state": "open"})).status_code == 422
    assert (await client.get("/api/v1/alerts", params={"cursor": "garbage!"})).status_code == 400
    bad = (await client.get("/api/v1/alerts", params={"cursor": "eyJiZWZvcmUiOiJ4In0"})).json()  # {"before":"x"}
    assert bad["error"]["code"] == "bad_request"
    assert (await client.delete("/api/v1/mutes/12345")).status_code == 404


async def test_text_with_nul_is_a_422_and_changes_nothing(client: httpx.AsyncClient) -> None:
    # PostgreSQL text cannot hold NUL: before the schemas refused it, PostgreSQL answered 500.
    alert = (await client.get("/api/v1/alerts", params={"device": "plug-1"})).json()["items"][0]
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    for path, body in (
        (f"/api/v1/alerts/{alert['id']}/acknowledge", {"by": "a\x00na"}),
        (f"/api/v1/alerts/{alert['id']}/resolve", {"by": "ana", "note": "\x00"}),
        ("/api/v1/mutes", {"device": "plug-1", "until": until, "by": "\x00"}),
        ("/api/v1/mutes", {"device": "plug-1", "until": until, "by": "ana", "reason": "kettle\x00"}),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 422, (path, body)
        assert response.json()["error"]["code"] == "validation_error"
    assert (await client.get(f"/api/v1/alerts/{alert['id']}")).json()["state"] == alert["state"]
    assert (await client.get("/api/v1/mutes")).json()["items"] == []


async def test_mutes(client: httpx.AsyncClient) -> None:
    # The API judges `until` against its own clock: NOW (fixed at import) may be hours old by now.
    now = datetime.now(UTC)
    until = (now + timedelta(hours=2)).isoformat()
    created = await client.post("/api/v1/mutes", json={"device": "plug-1", "kind": None, "until": until, "by": "ana"})
    assert created.status_code == 201
    mute = created.json()
    assert set(mute) == {"id", "device", "kind", "until", "by", "reason", "created_at"}
    assert [m["id"] for m in (await client.get("/api/v1/mutes")).json()["items"]] == [mute["id"]]
    past = (now - timedelta(hours=1)).isoformat()
    assert (await client.post("/api/v1/mutes", json={"device": "plug-1", "until": past, "by": "a"})).status_code == 400
    assert (
        await client.post("/api/v1/mutes", json={"device": "bad id!", "until": until, "by": "a"})
    ).status_code == 422
    assert (await client.delete(f"/api/v1/mutes/{mute['id']}")).status_code == 204
    assert (await client.get("/api/v1/mutes")).json()["items"] == []

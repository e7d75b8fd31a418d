"""Schemathesis over every route of the OpenAPI document, on both store backends.

The app runs in-process (ASGI) over a store holding a little real data: two
sites, readings with rollups, anomaly episodes and model versions, so the
fuzzer reaches the code behind the 404s too. Every response must be below
500, of a documented status and content type, match its schema, and every error must be
the JSON error envelope. The
routes come from the app's own OpenAPI document, so routers added later are
fuzzed without touching this file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from vatio.api import create_app
from vatio.model import Anomaly, ModelStatus, ModelVersion, Reading
from vatio.store import Store, open_store, write_all
from vatio.testing import run_in_thread

pytestmark = pytest.mark.integration

T = TypeVar("T")

#: Examples per operation and phase: enough to hit the boundaries, small enough for ~30 s in all.
MAX_EXAMPLES = 12


def json_error_envelope(ctx: Any, response: schemathesis.Response, case: schemathesis.Case[Any]) -> bool | None:
    """Every 4xx is the project's JSON error: ``{"error": {"code", "message", "detail"}}``."""
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict), body
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "detail"}, body
        assert isinstance(body["error"]["code"], str), body
        assert isinstance(body["error"]["message"], str), body
        assert body["error"]["message"], body
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    json_error_envelope,
]


async def seed(url: str) -> None:
    """Two sites, a day of readings every 5 minutes, episodes and model versions."""
    store: Store = open_store(url)
    await store.migrate()
    try:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        for site, device in (("home-1", "meter-1"), ("home-2", "plug-2")):
            readings = [
                Reading(device, now - timedelta(minutes=5 * k), seq=288 - k, power_w=100.0 + k, energy_wh=5000.0 - k)
                for k in range(288)
            ]
            await write_all(store, readings, site)
            at = now - timedelta(hours=3)
            await store.record_anomaly(
                Anomaly(device_id=device, kind="spike", detector="edge", start=at, last=at, score=3.0,
                        explanation="900 W above the usual", expected_w=100.0, observed_w=1000.0)
            )  # fmt: skip
            await store.close_anomaly(device, "spike", at=at + timedelta(minutes=10))
            for status in (ModelStatus.LIVE, ModelStatus.SHADOW):
                await store.save_model(
                    ModelVersion(detector="seasonal", device_id=device, version=0, status=status,
                                 trained_from=now - timedelta(days=30), trained_to=now, created_at=now,
                                 metrics={"f1": 0.8})
                )  # fmt: skip
        while await store.refresh_rollups():
            pass
    finally:
        await store.close()


# The routes and their schemas do not depend on the store: the document comes from an app whose
# store is never opened, and each case is sent to the app of the backend under test.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(open_store("sqlite:///:memory:")))
schema.config.generation.update(max_examples=MAX_EXAMPLES)
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])


class FreshApiPerLifespan:
    """ASGI app that builds the API over a new store at every lifespan start.

    Schemathesis ends an app's lifespan after each test and starts it again on
    the next request; the API closes its store at the end of a lifespan, so
    each lifespan gets its own (on the loop schemathesis serves apps from).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.api: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            self.api = create_app(open_store(self.url), manage_store=True)
        assert self.api is not None, "schemathesis starts the lifespan before the first request"
        await self.api(scope, receive, send)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> FreshApiPerLifespan:
    """The API over a seeded store of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/fuzz.db"
    else:
        url = run_in_thread(request.getfixturevalue("pg_databases").create())
    run_in_thread(seed(url))
    return FreshApiPerLifespan(url)


@schema.parametrize()
def test_no_route_errors_or_breaks_its_schema(case: schemathesis.Case[Any], api_app: FreshApiPerLifespan) -> None:
    case.call_and_validate(app=api_app, checks=CHECKS)

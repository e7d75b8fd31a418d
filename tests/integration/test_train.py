"""`vatio train` against a real store (both backends): models per device, versions and statuses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from vatio import cli
from vatio.detect.seasonal_model import SeasonalModel, slot_of
from vatio.detect.train import DETECTOR, TrainOptions, train
from vatio.model import ModelStatus, Reading, WriteBatch
from vatio.store import Store, write_all

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
STEP = timedelta(minutes=15)


def history(device_id: str, days: int, *, evening_w: float, seed: int) -> list[Reading]:
    """Readings every 15 min: 120 W at night, ``evening_w`` from 18:00 to 22:00, noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(days * 96):
        ts = START + i * STEP
        power = (evening_w if 18 <= ts.hour < 22 else 120.0) + float(rng.normal(0.0, 10.0))
        out.append(Reading(device_id, ts, i, power_w=round(power, 1)))
    return out


async def fill(store: Store, *, rollups: bool) -> None:
    readings = history("home-a", 35, evening_w=900.0, seed=1) + history("home-b", 35, evening_w=400.0, seed=2)
    await write_all(store, readings + history("short", 5, evening_w=500.0, seed=3), "site-1")
    while rollups and await store.refresh_rollups():
        pass


async def test_train_fits_a_live_model_per_device_from_rollups(store: Store) -> None:
    await fill(store, rollups=True)
    report = await train(store, TrainOptions(days=60))
    assert report.raw_devices == 1  # "short" has under a week of rollups: auto reads its raw readings
    assert [m.metrics["from_raw_readings"] for m in report.models] == [0.0, 0.0]
    assert sorted(m.device_id for m in report.models) == ["home-a", "home-b"]
    assert set(report.skipped) == {"short"}
    stored = {m.device_id: m for m in await store.models(detector=DETECTOR)}
    assert {m.status for m in stored.values()} == {ModelStatus.LIVE}
    a = stored["home-a"]
    assert (a.version, a.trained_from) == (1, START)
    assert a.trained_to == START + timedelta(days=35)
    assert a.metrics["days_used"] == 35.0
    assert 0.0 <= a.metrics["alert_rate"] < 0.02
    model = SeasonalModel.from_bytes(a.params)
    evening = slot_of(int(START.timestamp()) // 3600 + 19)
    night = slot_of(int(START.timestamp()) // 3600 + 3)
    assert model.expected(slot=evening) == pytest.approx(900.0, abs=20.0)
    assert model.expected(slot=night) == pytest.approx(120.0, abs=20.0)
    b = SeasonalModel.from_bytes(stored["home-b"].params)
    assert b.expected(slot=evening) == pytest.approx(400.0, abs=20.0)


async def test_raw_readings_give_the_same_model_and_later_versions_are_shadows(store: Store) -> None:
    await fill(store, rollups=False)
    first = await train(store, TrainOptions(days=60, devices=("home-a",)))
    assert first.raw_devices == 1  # no rollups yet: auto read the raw readings
    await fill(store, rollups=True)
    from_rollups = await train(store, TrainOptions(days=60, devices=("home-a",), source="rollups"))
    (live,), (shadow,) = first.models, from_rollups.models
    assert (live.status, shadow.status, shadow.version) == (ModelStatus.LIVE, ModelStatus.SHADOW, 2)
    np.testing.assert_allclose(
        SeasonalModel.from_bytes(live.params).season_w, SeasonalModel.from_bytes(shadow.params).season_w, atol=1e-6
    )
    promoted = await train(store, TrainOptions(days=60, devices=("home-a",), mode="promote"))
    assert promoted.models[0].status is ModelStatus.LIVE
    statuses = {m.version: m.status for m in await store.models(device_id="home-a")}
    assert statuses == {1: ModelStatus.RETIRED, 2: ModelStatus.SHADOW, 3: ModelStatus.LIVE}
    (forced,) = (await train(store, TrainOptions(days=60, devices=("home-b",), mode="shadow"))).models
    assert forced.status is ModelStatus.SHADOW  # --shadow even without a live version


async def test_cli_train_and_models(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    await fill(store, rollups=False)
    assert await asyncio.to_thread(cli.main, ["train", "--db", store.url, "--device", "home-b", "--days", "40"]) == 0
    assert '"trained": 1' in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["train", "--db", store.url, "--device", "nope"]) == 2
    assert "unknown device(s): nope" in capsys.readouterr().err
    assert await asyncio.to_thread(cli.main, ["train", "--db", store.url, "--days", "3"]) == 2
    assert await asyncio.to_thread(cli.main, ["train", "--db", store.url, "--device", "home-b", "--shadow"]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["models", "list", "--db", store.url, "--device", "home-b"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[3:5] == ["v2", "shadow"]
    shadow_id = int(lines[0].split()[0])
    assert await asyncio.to_thread(cli.main, ["models", "promote", str(shadow_id), "--db", store.url]) == 0
    assert {m.version: m.status for m in await store.models(device_id="home-b")} == {
        1: ModelStatus.RETIRED, 2: ModelStatus.LIVE
    }  # fmt: skip
    assert await asyncio.to_thread(cli.main, ["models", "promote", "99999", "--db", store.url]) == 2


async def test_history_replayed_long_after_it_was_measured_is_trained_on(store: Store) -> None:
    """The window ends at the newest *reading*, not at when the device was last heard from."""
    readings = history("replayed", 35, evening_w=700.0, seed=4)
    await store.write(
        WriteBatch(readings=readings, sites={"replayed": "site-1"}, last_seen={"replayed": datetime.now(UTC)})
    )
    while await store.refresh_rollups():
        pass
    report = await train(store, TrainOptions(days=60))
    assert [m.device_id for m in report.models] == ["replayed"]
    [model] = await store.models(detector=DETECTOR)
    assert model.trained_to == START + timedelta(days=35)
    assert model.metrics["days_used"] == 35.0

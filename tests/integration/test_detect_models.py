"""`vatio detect` serving the back-end tier from stored model versions (both store backends).

The pipeline is driven as the consumer service drives it (``on_message`` with
wire payloads, then ``flush``); anomalies and model versions live in a real store.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from vatio import cli
from vatio.contracts import encode_telemetry, telemetry_topic
from vatio.detect.seasonal_model import SeasonalModel
from vatio.detect.service import DetectOptions, DetectPipeline
from vatio.detect.serving import Sensitivity
from vatio.model import Anomaly, ModelStatus, ModelVersion, Reading
from vatio.store import Store

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)
STEP = timedelta(minutes=1)


def flat(level_w: float, spread_w: float = 30.0) -> bytes:
    """A model that expects ``level_w`` every hour of the week."""
    return SeasonalModel(np.zeros(168), np.full(168, spread_w), level_w, level_w * 0.8, 10.0).to_bytes()


async def save(store: Store, device_id: str, level_w: float, status: ModelStatus) -> ModelVersion:
    version = ModelVersion(
        detector="seasonal",
        device_id=device_id,
        version=0,
        status=status,
        trained_from=START - timedelta(days=365),
        trained_to=START,
        created_at=START,
        params=flat(level_w),
        metrics={"alert_rate": 0.001},
    )
    return await store.save_model(version)


class Meter:
    """One device's readings every minute, sent as the wire carries them."""

    def __init__(self, pipeline: DetectPipeline, device_id: str) -> None:
        self.pipeline, self.device_id, self.seq = pipeline, device_id, 0
        self.rng = np.random.default_rng(3)

    async def send(self, minutes: int, level_w: float) -> None:
        readings = []
        for _ in range(minutes):
            power = level_w + float(self.rng.normal(0.0, 5.0))
            readings.append(Reading(self.device_id, START + self.seq * STEP, self.seq, power_w=power))
            self.seq += 1
        for k in range(0, len(readings), 30):
            payload = encode_telemetry(self.device_id, readings[k : k + 30])
            self.pipeline.on_message(telemetry_topic("home", self.device_id), payload, 0, 0)
            await self.pipeline.flush()


def pipeline_of(store: Store, events: list[dict[str, object]], **options: object) -> DetectPipeline:
    async def publish(topic: str, payload: bytes) -> None:
        events.append(orjson.loads(payload))

    return DetectPipeline(store=store, publish=publish, options=DetectOptions(**options))  # type: ignore[arg-type]


def seasonal(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if e["detector"] == "seasonal"]


async def test_the_live_version_alerts_and_a_shadow_never_does(store: Store) -> None:
    live = await save(store, "plug-1", 300.0, ModelStatus.LIVE)
    shadow = await save(store, "plug-1", 60.0, ModelStatus.SHADOW)  # would flag every hour of 300 W
    events: list[dict[str, object]] = []
    pipeline = pipeline_of(store, events)
    await pipeline.restore()
    meter = Meter(pipeline, "plug-1")
    await meter.send(180, 300.0)
    assert pipeline.counters.backend_readings == 180
    assert pipeline.counters.shadow_would_flag == 120  # two completed hours, each carried for an hour
    (report,) = pipeline.shadow_report()
    assert (report["model"], report["would_flag"], report["agreement"]) == (shadow.id, 120, 0.3333)
    assert not seasonal(events)
    assert not [a for a in await store.anomalies(device_id="plug-1") if a.detector == "seasonal"]

    await meter.send(120, 2000.0)  # two hours of a load left on
    (episode,) = [a for a in await store.anomalies(device_id="plug-1") if a.detector == "seasonal"]
    assert (episode.kind, episode.model_version) == ("level_high", f"v{live.version}")
    assert episode.observed_w == pytest.approx(2000.0, abs=5.0)
    assert episode.expected_w == pytest.approx(300.0, abs=1.0)
    assert episode.explanation.startswith("level_high: observed 1999.5 W vs expected 300.0 W (band 120.0–480.0 W)")
    (opened,) = seasonal(events)
    assert (opened["event"], opened["model_version"]) == ("anomaly_opened", "v1")


async def test_promotion_switches_the_alerting_version_without_restart(store: Store) -> None:
    await save(store, "plug-1", 300.0, ModelStatus.LIVE)
    candidate = await save(store, "plug-1", 60.0, ModelStatus.SHADOW)
    events: list[dict[str, object]] = []
    pipeline = pipeline_of(store, events)
    await pipeline.restore()
    meter = Meter(pipeline, "plug-1")
    await meter.send(130, 300.0)
    assert pipeline.counters.shadow_would_flag > 0
    assert not seasonal(events)
    code = await asyncio.to_thread(cli.main, ["models", "promote", str(candidate.id), "--db", store.url])
    assert code == 0
    await pipeline.refresh_models()  # what run() does every models_every_s
    await meter.send(60, 300.0)
    (opened,) = seasonal(events)
    assert opened["model_version"] == f"v{candidate.version}"
    assert pipeline.counters.shadow_readings == 130  # the promoted shadow left the shadows
    assert pipeline.shadow_report() == []


async def test_sensitivity_and_mute(store: Store) -> None:
    for device in ("calm", "loud", "muted"):
        await save(store, device, 300.0, ModelStatus.LIVE)
    sensitivity = Sensitivity.parse("[devices.calm]\nsensitivity = 10.0\n[devices.muted]\nmuted = true")
    events: list[dict[str, object]] = []
    pipeline = pipeline_of(store, events, sensitivity=sensitivity)
    await pipeline.restore()
    for device in ("calm", "loud", "muted"):
        await Meter(pipeline, device).send(120, 900.0)  # 4-5 spreads above: anomalous at sensitivity 1
    assert {e["device"] for e in seasonal(events)} == {"loud"}
    assert {a.device_id for a in await store.anomalies()} <= {"loud"}
    assert pipeline.counters.muted_readings == 120
    assert pipeline.counters.backend_anomalous_readings == 2 * 60  # loud and muted were judged alike


async def test_backend_state_survives_a_restart_but_not_a_new_version(store: Store) -> None:
    live = await save(store, "plug-1", 300.0, ModelStatus.LIVE)
    first = pipeline_of(store, [])
    await first.restore()
    await Meter(first, "plug-1").send(150, 300.0)
    await first.checkpoint()
    saved = first._devices["plug-1"].backend
    assert saved is not None
    second = pipeline_of(store, [])
    await second.restore()
    second._sites["plug-1"] = "home"
    restored = second._device("plug-1").backend
    assert restored is not None
    assert restored.state_dict() == saved.state_dict()
    await store.set_model_status(live.id or 0, ModelStatus.RETIRED)
    newer = await save(store, "plug-1", 300.0, ModelStatus.LIVE)
    third = pipeline_of(store, [])
    await third.restore()
    third._sites["plug-1"] = "home"
    device = third._device("plug-1")
    assert device.live is not None
    assert device.live.id == newer.id
    assert device.backend is not None
    assert device.backend.state_dict()["hour"] == -1  # a checkpoint of v1 does not fit v2


async def open_seasonal_episode(
    store: Store, events: list[dict[str, object]], **options: object
) -> tuple[ModelVersion, DetectPipeline, Meter, Anomaly]:
    """A live model for plug-1 and the back-end episode of two hours of a load left on, still open."""
    live = await save(store, "plug-1", 300.0, ModelStatus.LIVE)
    pipeline = pipeline_of(store, events, **options)
    await pipeline.restore()
    meter = Meter(pipeline, "plug-1")
    await meter.send(60, 300.0)
    await meter.send(120, 2000.0)
    (episode,) = [a for a in await store.anomalies(device_id="plug-1", open_only=True) if a.detector == "seasonal"]
    return live, pipeline, meter, episode


async def test_retiring_the_live_version_closes_its_open_episodes(store: Store) -> None:
    events: list[dict[str, object]] = []
    live, pipeline, meter, episode = await open_seasonal_episode(store, events)
    await store.set_model_status(live.id or 0, ModelStatus.RETIRED)
    await pipeline.refresh_models()
    await meter.send(30, 2000.0)  # still high, but no model is left to judge it or clear it
    closed = await store.get_anomaly(episode.id or 0)
    assert closed is not None
    assert closed.end == START + 180 * STEP  # the first reading after the model went
    assert [e["event"] for e in seasonal(events)] == ["anomaly_opened", "anomaly_resolved"]


async def test_muting_a_device_opens_nothing_and_lets_open_episodes_clear(store: Store) -> None:
    events: list[dict[str, object]] = []
    _, pipeline, meter, episode = await open_seasonal_episode(store, events, clear_after=5)
    last_before_mute = episode.last
    pipeline.options = replace(pipeline.options, sensitivity=Sensitivity.parse("[devices.plug-1]\nmuted = true"))
    await meter.send(60, 2000.0)  # muted: the open episode is neither extended nor closed
    still = await store.get_anomaly(episode.id or 0)
    assert still is not None
    assert (still.end, still.last) == (None, last_before_mute)
    await meter.send(180, 300.0)  # normal again: it closes
    closed = await store.get_anomaly(episode.id or 0)
    assert closed is not None
    assert closed.end is not None
    assert closed.end > last_before_mute
    await meter.send(120, 2000.0)  # a new excursion while muted: no episode, no event
    assert [e["event"] for e in seasonal(events)] == ["anomaly_opened", "anomaly_resolved"]
    assert not await store.anomalies(device_id="plug-1", open_only=True)


def test_bad_sensitivity_files_are_refused() -> None:
    from vatio.errors import ConfigError

    for text in ("[devices.x]\nsensitivity = -1", "[devices.x]\nmuted = 3", "devices = 4", "not toml ["):
        with pytest.raises(ConfigError):
            Sensitivity.parse(text)
    assert replace(Sensitivity(), default=2.0).multiplier("x") == 2.0

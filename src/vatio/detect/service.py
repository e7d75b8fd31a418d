"""`vatio detect`: the streaming detection stage.

Consumes telemetry in its own shared-subscription group (so it scales out
apart from ingest), keeps one :class:`~vatio.detect.stream.EdgeSuite` per
device, records anomaly *episodes* in the store — one open episode per device
and kind, extended while the condition lasts, closed after ``clear_after``
consecutive normal readings (hysteresis) — and publishes an event on
``vatio/v1/{site}/alerts`` when an episode opens or resolves. Detector state
is checkpointed to the store and restored on start; because the store says
whether an episode was *newly* opened, a restarted detector never raises a
second alert for an episode that is already open.

Beside the edge tier it serves the back-end tier: the live ``seasonal``
model version of each device (:mod:`vatio.detect.serving`), whose episodes
carry ``model_version``; shadow versions are scored and counted but never
alert. Model versions are re-read every ``models_every_s``, so a promotion
takes effect without a restart. Per-device sensitivity multiplies the
threshold; a muted device is scored and learned but opens or extends no
episode (those already open close when the device is normal again). A
device whose live version is retired closes its back-end episodes at its
next reading: no model is left to clear them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
import orjson

from vatio.contracts import Limits, alerts_topic, decode_telemetry, format_ts, parse_topic
from vatio.detect.backend import SeasonalDetector
from vatio.detect.base import Threshold
from vatio.detect.serving import SEASONAL, ModelBook, Sensitivity, ShadowRun, detector_for
from vatio.detect.stream import BatchVerdicts, EdgeSuite, ObsBatch
from vatio.errors import ContractError, StoreError
from vatio.model import Anomaly, ModelVersion, Reading
from vatio.model.instants import utcnow
from vatio.store import Store

log = logging.getLogger(__name__)

DETECTOR = "edge"
Publish = Callable[[str, bytes], Awaitable[None]]
_UNITS = {"voltage_sag": "V", "voltage_swell": "V", "frequency": "Hz", "level_high": "W", "baseload_increase": "W"}
#: Statistical detectors that take turns on one event (a step fires the
#: z-score, then the EWMA as it catches up): one episode, one alert.
FAMILY = {
    "robust_z": "unusual_consumption",
    "ewma": "unusual_consumption",
    "level_shift": "unusual_consumption",
    "spike": "unusual_consumption",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectOptions:
    threshold: float = 1.0
    clear_after: int = 6
    flush_interval_s: float = 0.5
    checkpoint_every_s: float = 10.0
    models_every_s: float = 30.0
    sensitivity: Sensitivity = field(default_factory=Sensitivity)


@dataclass(slots=True)
class DetectCounters:
    readings: int = 0
    anomalous_readings: int = 0
    opened: int = 0
    extended: int = 0
    resolved: int = 0
    invalid_messages: int = 0
    checkpoints: int = 0
    backend_readings: int = 0
    backend_anomalous_readings: int = 0
    shadow_readings: int = 0
    shadow_would_flag: int = 0
    muted_readings: int = 0
    model_refreshes: int = 0


@dataclass(slots=True)
class _Episode:
    """What one flush saw of one device and kind."""

    site: str
    start: datetime
    last: datetime
    score: float
    verdict_row: int
    verdicts: BatchVerdicts


@dataclass(slots=True)
class _Tier:
    """Episode hysteresis of one detector tier of one device."""

    open_kinds: set[str] = field(default_factory=set)
    normal_streak: dict[str, int] = field(default_factory=lambda: defaultdict(int))


@dataclass(slots=True)
class _Device:
    site: str
    suite: EdgeSuite
    tiers: dict[str, _Tier] = field(default_factory=dict)
    backend: SeasonalDetector | None = None
    live: ModelVersion | None = None
    shadows: dict[int, ShadowRun] = field(default_factory=dict)
    dirty: bool = False


def explain(kind: str, v: BatchVerdicts, i: int, since: datetime) -> str:
    """What was seen against what was expected, leaving out what a detector does not estimate.

    ``over_power: observed 9120.0 W vs expected 300.0 W (band 0.0–7360.0 W) since …; score 4.10``;
    a limit has no expected value: ``over_power: observed 60000.0 W (band up to 14490.0 W) since …``.
    """
    detector = str(v.kind[i])
    unit = _UNITS.get(detector, "W" if detector in {*FAMILY, "over_power"} else "")
    unit = f" {unit}" if unit else ""
    label = kind if detector == kind else f"{kind} ({detector})"
    parts = [f"{label}: observed {v.observed[i]:.1f}{unit}"]
    if v.expected[i] == v.expected[i]:
        parts.append(f"vs expected {v.expected[i]:.1f}{unit}")
    low, high = v.low[i], v.high[i]
    if low == low and high == high:
        parts.append(f"(band {low:.1f}–{high:.1f}{unit})")
    elif high == high:
        parts.append(f"(band up to {high:.1f}{unit})")
    elif low == low:
        parts.append(f"(band from {low:.1f}{unit})")
    parts.append(f"since {format_ts(since)}; score {v.score[i]:.2f}")
    return " ".join(parts)


class DetectPipeline:
    """Batches readings per device, runs both tiers, keeps episodes and alerts."""

    def __init__(
        self, *, store: Store, publish: Publish, options: DetectOptions | None = None, limits: Limits | None = None
    ) -> None:
        self.store = store
        self.publish = publish
        self.options = options or DetectOptions()
        self.limits = limits or Limits()
        self.threshold = Threshold(self.options.threshold)
        self.counters = DetectCounters()
        self.models = ModelBook()
        self.ack: Callable[[Iterable[tuple[int, int]]], object] = lambda _: None
        self.generation = 0
        self._devices: dict[str, _Device] = {}
        self._checkpoint: dict[str, dict[str, bytes]] = {DETECTOR: {}, SEASONAL: {}}
        self._pending: dict[str, list[Reading]] = defaultdict(list)
        self._sites: dict[str, str] = {}
        self._acks: list[tuple[int, int]] = []
        self._restored_open: dict[str, dict[str, set[str]]] = {}
        # The consumer service may throttle a pipeline; detection keeps no unbounded buffer to protect.
        self.pause: Callable[[], None] = lambda: None
        self.resume: Callable[[], None] = lambda: None

    def on_connected(self) -> None:
        """Nothing to re-apply: detection never pauses its transport."""

    async def restore(self) -> None:
        """Load the last checkpoints, the episodes still open and the model versions."""
        for detector in self._checkpoint:
            self._checkpoint[detector] = await self.store.load_states(detector)
        for episode in await self.store.anomalies(open_only=True, limit=1_000_000):
            if episode.detector in self._checkpoint:
                self._restored_open.setdefault(episode.device_id, {}).setdefault(episode.detector, set()).add(
                    episode.kind
                )
        await self.refresh_models()
        log.info("restored %d detector states", len(self._checkpoint[DETECTOR]))

    async def refresh_models(self) -> None:
        """Re-read model versions; devices whose versions changed switch now."""
        changed = await self.models.refresh(self.store)
        self.counters.model_refreshes += 1
        for device_id in changed & set(self._devices):
            self._serve_models(device_id, self._devices[device_id])

    def _serve_models(self, device_id: str, device: _Device) -> None:
        """Attach the live version (a promoted shadow keeps its warm state) and the shadow runs."""
        live = self.models.live.get(device_id)
        if (None if live is None else live.id) != (None if device.live is None else device.live.id):
            previous, backend = device.live, None
            if live is not None:
                running = device.shadows.get(live.id) if live.id is not None else None
                backend = running.detector if running is not None else detector_for(live)
                if running is None and previous is None:
                    self._restore_backend(device_id, live, backend)
                log.info("device %s: seasonal model v%d is live", device_id, live.version)
            device.backend, device.live = (backend, live) if backend is not None else (None, None)
        shadows: dict[int, ShadowRun] = {}
        for model_id, version in self.models.shadow.get(device_id, {}).items():
            run = device.shadows.get(model_id)
            detector = run.detector if run is not None else detector_for(version)
            if detector is not None:
                shadows[model_id] = run or ShadowRun(version, detector)
        device.shadows = shadows

    def _restore_backend(self, device_id: str, live: ModelVersion, detector: SeasonalDetector | None) -> None:
        saved = self._checkpoint[SEASONAL].pop(device_id, None)
        if detector is None or saved is None:
            return
        state = json.loads(saved)
        if state.get("model") == live.id:  # a checkpoint of another version would not fit this model
            detector.load_state(state["state"])

    def on_message(self, topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        if qos:
            self._acks.append((self.generation, packet_id))
        try:
            parsed = parse_topic(topic)
            decoded = decode_telemetry(parsed, payload, limits=self.limits, now=utcnow())
        except ContractError:
            # Ingest dead-letters bad input; detection only skips it.
            self.counters.invalid_messages += 1
            return
        self._pending[decoded.device].extend(decoded.readings)
        self._sites[decoded.device] = parsed.site

    def _device(self, device_id: str) -> _Device:
        device = self._devices.get(device_id)
        if device is None:
            suite = EdgeSuite()
            state = self._checkpoint[DETECTOR].pop(device_id, None)
            if state is not None:
                suite.load_state(json.loads(state))
            restored = self._restored_open.pop(device_id, {})
            device = _Device(self._sites[device_id], suite, {d: _Tier(set(k)) for d, k in restored.items()})
            self._serve_models(device_id, device)
            self._devices[device_id] = device
        return device

    async def flush(self) -> None:
        pending, self._pending = self._pending, defaultdict(list)
        acks, self._acks = self._acks, []
        for device_id, readings in pending.items():
            await self._judge(device_id, sorted(readings, key=lambda r: r.ts))
        self.ack(acks)

    async def _judge(self, device_id: str, readings: list[Reading]) -> None:
        device = self._device(device_id)
        device.dirty = True
        batch = ObsBatch.from_readings(readings)
        threshold = Threshold(self.threshold.value * self.options.sensitivity.multiplier(device_id))
        muted = self.options.sensitivity.is_muted(device_id)
        verdicts = device.suite.score_batch(batch, threshold)
        flagged = threshold.decide(verdicts.score)
        self.counters.readings += len(readings)
        self.counters.anomalous_readings += int(flagged.sum())
        self.counters.muted_readings += len(readings) if muted else 0
        # Muted: nothing is opened or extended, but what was open still closes once the device is normal.
        await self._episodes(device_id, device, DETECTOR, readings, verdicts, flagged, "", record=not muted)
        live_flagged = None
        if device.backend is not None and device.live is not None:
            backend = device.backend.score_batch(batch, threshold)
            live_flagged = threshold.decide(backend.score)
            self.counters.backend_readings += len(readings)
            self.counters.backend_anomalous_readings += int(live_flagged.sum())
            version = f"v{device.live.version}"
            await self._episodes(
                device_id, device, SEASONAL, readings, backend, live_flagged, version, record=not muted
            )
        else:
            await self._orphaned(device_id, device, readings[0].ts)
        for run in device.shadows.values():
            # Shadows are scored and counted only: never an episode, never an alert.
            shadow_flagged = threshold.decide(run.detector.score_batch(batch, threshold).score)
            run.tally(shadow_flagged, live_flagged)
            self.counters.shadow_readings += len(readings)
            self.counters.shadow_would_flag += int(shadow_flagged.sum())

    async def _orphaned(self, device_id: str, device: _Device, at: datetime) -> None:
        """No live model any more (retired, or none after a restart): its open episodes can never clear."""
        tier = device.tiers.get(SEASONAL)
        if tier is None or not tier.open_kinds:
            return
        for kind in sorted(tier.open_kinds):
            await self._resolve(device_id, device.site, kind, at)
        tier.open_kinds.clear()

    async def _episodes(
        self, device_id: str, device: _Device, detector: str, readings: list[Reading], verdicts: BatchVerdicts,
        flagged: npt.NDArray[np.bool_], model_version: str, *, record: bool = True,
    ) -> None:  # fmt: skip
        tier = device.tiers.setdefault(detector, _Tier())
        episodes: dict[str, _Episode] = {}
        closes: dict[str, datetime] = {}
        for i, reading in enumerate(readings):
            kind = FAMILY.get(str(verdicts.kind[i]), str(verdicts.kind[i])) if flagged[i] else None
            for open_kind in list(tier.open_kinds | set(episodes)):
                if open_kind != kind:
                    tier.normal_streak[open_kind] += 1
                    if tier.normal_streak[open_kind] >= self.options.clear_after and open_kind not in closes:
                        closes[open_kind] = reading.ts
                        tier.open_kinds.discard(open_kind)
            if kind is None:
                continue
            tier.normal_streak[kind] = 0
            closes.pop(kind, None)
            ep = episodes.get(kind)
            if ep is None:
                episodes[kind] = _Episode(device.site, reading.ts, reading.ts, float(verdicts.score[i]), i, verdicts)
            else:
                ep.last, ep.verdict_row = reading.ts, i
                ep.score = max(ep.score, float(verdicts.score[i]))
            tier.open_kinds.add(kind)
        for kind, ep in episodes.items() if record else ():
            await self._record(device_id, kind, ep, detector, model_version)
        for kind, at in closes.items():
            await self._resolve(device_id, device.site, kind, at)

    async def _record(self, device_id: str, kind: str, ep: _Episode, detector: str, model_version: str) -> None:
        v, i = ep.verdicts, ep.verdict_row
        stored, opened = await self.store.record_anomaly(
            Anomaly(
                device_id=device_id, kind=kind, detector=detector, start=ep.start, last=ep.last, score=ep.score,
                explanation=explain(kind, v, i, ep.start), expected_w=_num(v.expected[i]), low_w=_num(v.low[i]),
                high_w=_num(v.high[i]), observed_w=_num(v.observed[i]), model_version=model_version,
            )
        )  # fmt: skip
        if opened:
            self.counters.opened += 1
            await self._event("anomaly_opened", ep.site, stored)
        else:
            self.counters.extended += 1

    async def _resolve(self, device_id: str, site: str, kind: str, at: datetime) -> None:
        closed = await self.store.close_anomaly(device_id, kind, at=at)
        if closed is not None:
            self.counters.resolved += 1
            await self._event("anomaly_resolved", site, closed)

    async def _event(self, event: str, site: str, a: Anomaly) -> None:
        body = {
            "v": 1, "event": event, "id": a.id, "site": site, "device": a.device_id, "kind": a.kind,
            "detector": a.detector, "start": format_ts(a.start), "end": format_ts(a.end) if a.end else None,
            "score": round(a.score, 3), "expected": a.expected_w, "low": a.low_w, "high": a.high_w,
            "observed": a.observed_w, "explanation": a.explanation, "model_version": a.model_version,
        }  # fmt: skip
        await self.publish(alerts_topic(site), orjson.dumps(body))

    def shadow_report(self) -> list[dict[str, object]]:
        """Would-be alerts and agreement with the live version of every shadow run so far."""
        return [run.report() for device in self._devices.values() for run in device.shadows.values()]

    async def checkpoint(self) -> None:
        dirty = {d: dev for d, dev in self._devices.items() if dev.dirty}
        states = {d: json.dumps(dev.suite.state_dict()).encode() for d, dev in dirty.items()}
        backend = {
            d: json.dumps({"model": dev.live.id, "state": dev.backend.state_dict()}).encode()
            for d, dev in dirty.items() if dev.backend is not None and dev.live is not None
        }  # fmt: skip
        if states:
            await self.store.save_states(DETECTOR, states, at=utcnow())
            if backend:
                await self.store.save_states(SEASONAL, backend, at=utcnow())
            for device_id in states:
                self._devices[device_id].dirty = False
            self.counters.checkpoints += 1
        for report in self.shadow_report():
            if report["readings"]:
                log.info("shadow model %s", json.dumps(report))

    async def run(self) -> None:
        """Flush every ``flush_interval_s``, checkpoint every ``checkpoint_every_s`` and re-read model
        versions every ``models_every_s``; cancel to stop."""
        loop = asyncio.get_running_loop()
        next_checkpoint = loop.time() + self.options.checkpoint_every_s
        next_models = loop.time() + self.options.models_every_s
        try:
            while True:
                await asyncio.sleep(self.options.flush_interval_s)
                try:
                    await self.flush()
                    if loop.time() >= next_checkpoint:
                        await self.checkpoint()
                        next_checkpoint = loop.time() + self.options.checkpoint_every_s
                    if loop.time() >= next_models:
                        await self.refresh_models()
                        next_models = loop.time() + self.options.models_every_s
                except StoreError as exc:
                    log.warning("detection could not reach the store: %s", exc)
        finally:
            with contextlib.suppress(StoreError, OSError):
                await self.checkpoint()


def _num(value: float) -> float | None:
    return None if value != value else float(value)

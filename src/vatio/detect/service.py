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

import orjson

from vatio.contracts import Limits, alerts_topic, decode_telemetry, format_ts, parse_topic
from vatio.detect.base import Threshold
from vatio.detect.stream import BatchVerdicts, EdgeSuite, ObsBatch
from vatio.errors import ContractError, StoreError
from vatio.model import Anomaly, Reading
from vatio.model.instants import utcnow
from vatio.store import Store

log = logging.getLogger(__name__)

DETECTOR = "edge"
Publish = Callable[[str, bytes], Awaitable[None]]
_UNITS = {"voltage_sag": "V", "voltage_swell": "V", "frequency": "Hz"}
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


@dataclass(slots=True)
class DetectCounters:
    readings: int = 0
    anomalous_readings: int = 0
    opened: int = 0
    extended: int = 0
    resolved: int = 0
    invalid_messages: int = 0
    checkpoints: int = 0


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
class _Device:
    site: str
    suite: EdgeSuite
    open_kinds: set[str] = field(default_factory=set)
    normal_streak: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dirty: bool = False


def explain(kind: str, v: BatchVerdicts, i: int, since: datetime) -> str:
    """``over_power: observed 9120 W vs expected 300 W (band 0–7360 W) since 2026-11-24T10:00:00.000Z``."""
    detector = str(v.kind[i])
    unit = _UNITS.get(detector, "W" if detector in {*FAMILY, "over_power"} else "")
    unit = f" {unit}" if unit else ""
    label = kind if detector == kind else f"{kind} ({detector})"
    return (
        f"{label}: observed {v.observed[i]:.1f}{unit} vs expected {v.expected[i]:.1f}{unit} "
        f"(band {v.low[i]:.1f}–{v.high[i]:.1f}{unit}) since {format_ts(since)}; score {v.score[i]:.2f}"
    )


class DetectPipeline:
    """Batches readings per device, runs the detectors, keeps episodes and alerts."""

    def __init__(
        self, *, store: Store, publish: Publish, options: DetectOptions | None = None, limits: Limits | None = None
    ) -> None:
        self.store = store
        self.publish = publish
        self.options = options or DetectOptions()
        self.limits = limits or Limits()
        self.threshold = Threshold(self.options.threshold)
        self.counters = DetectCounters()
        self.ack: Callable[[Iterable[tuple[int, int]]], object] = lambda _: None
        self.generation = 0
        self._devices: dict[str, _Device] = {}
        self._checkpoint: dict[str, bytes] = {}
        self._pending: dict[str, list[Reading]] = defaultdict(list)
        self._sites: dict[str, str] = {}
        self._acks: list[tuple[int, int]] = []
        self._restored_open: dict[str, set[str]] = {}
        # The consumer service may throttle a pipeline; detection keeps no unbounded buffer to protect.
        self.pause: Callable[[], None] = lambda: None
        self.resume: Callable[[], None] = lambda: None

    def on_connected(self) -> None:
        """Nothing to re-apply: detection never pauses its transport."""

    async def restore(self) -> None:
        """Load the last checkpoint and the episodes still open."""
        self._checkpoint = await self.store.load_states(DETECTOR)
        for episode in await self.store.anomalies(open_only=True, limit=1_000_000):
            if episode.detector == DETECTOR:
                self._open_kinds_of(episode.device_id).add(episode.kind)
        log.info("restored %d detector states", len(self._checkpoint))

    def _open_kinds_of(self, device_id: str) -> set[str]:
        return self._restored_open.setdefault(device_id, set())

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
            state = self._checkpoint.pop(device_id, None)
            if state is not None:
                suite.load_state(json.loads(state))
            device = _Device(self._sites[device_id], suite, set(self._restored_open.pop(device_id, set())))
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
        verdicts = device.suite.score_batch(ObsBatch.from_readings(readings), self.threshold)
        flagged = self.threshold.decide(verdicts.score)
        self.counters.readings += len(readings)
        self.counters.anomalous_readings += int(flagged.sum())
        episodes: dict[str, _Episode] = {}
        closes: dict[str, datetime] = {}
        for i, reading in enumerate(readings):
            kind = FAMILY.get(str(verdicts.kind[i]), str(verdicts.kind[i])) if flagged[i] else None
            for open_kind in list(device.open_kinds | set(episodes)):
                if open_kind != kind:
                    device.normal_streak[open_kind] += 1
                    if device.normal_streak[open_kind] >= self.options.clear_after and open_kind not in closes:
                        closes[open_kind] = reading.ts
                        device.open_kinds.discard(open_kind)
            if kind is None:
                continue
            device.normal_streak[kind] = 0
            closes.pop(kind, None)
            ep = episodes.get(kind)
            if ep is None:
                episodes[kind] = _Episode(device.site, reading.ts, reading.ts, float(verdicts.score[i]), i, verdicts)
            else:
                ep.last, ep.verdict_row = reading.ts, i
                ep.score = max(ep.score, float(verdicts.score[i]))
            device.open_kinds.add(kind)
        for kind, ep in episodes.items():
            await self._record(device_id, kind, ep)
        for kind, at in closes.items():
            await self._resolve(device_id, device.site, kind, at)

    async def _record(self, device_id: str, kind: str, ep: _Episode) -> None:
        v, i = ep.verdicts, ep.verdict_row
        stored, opened = await self.store.record_anomaly(
            Anomaly(
                device_id=device_id, kind=kind, detector=DETECTOR, start=ep.start, last=ep.last, score=ep.score,
                explanation=explain(kind, v, i, ep.start), expected_w=_num(v.expected[i]), low_w=_num(v.low[i]),
                high_w=_num(v.high[i]), observed_w=_num(v.observed[i]),
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
            "observed": a.observed_w, "explanation": a.explanation,
        }  # fmt: skip
        await self.publish(alerts_topic(site), orjson.dumps(body))

    async def checkpoint(self) -> None:
        states = {d: json.dumps(dev.suite.state_dict()).encode() for d, dev in self._devices.items() if dev.dirty}
        if states:
            await self.store.save_states(DETECTOR, states, at=utcnow())
            for device_id in states:
                self._devices[device_id].dirty = False
            self.counters.checkpoints += 1

    async def run(self) -> None:
        """Flush every ``flush_interval_s`` and checkpoint every ``checkpoint_every_s``; cancel to stop."""
        loop = asyncio.get_running_loop()
        next_checkpoint = loop.time() + self.options.checkpoint_every_s
        try:
            while True:
                await asyncio.sleep(self.options.flush_interval_s)
                try:
                    await self.flush()
                    if loop.time() >= next_checkpoint:
                        await self.checkpoint()
                        next_checkpoint = loop.time() + self.options.checkpoint_every_s
                except StoreError as exc:
                    log.warning("detection could not reach the store: %s", exc)
        finally:
            with contextlib.suppress(StoreError, OSError):
                await self.checkpoint()


def _num(value: float) -> float | None:
    return None if value != value else float(value)

"""Replay real data through the pipeline: meter traces published as v1 telemetry.

Each trace becomes a device publishing on ``vatio/v1/{site}/{device}/telemetry``
(power, the cumulative counter, voltage; ``seq`` = grid row + 1). A reading
is stamped at the *end* of its interval, as a meter that reports every
``step_s`` does: its counter is the value at that instant and its power the
mean over the interval just ended (the store attributes a counter delta to
the interval ending at a reading, so energies land in the right buckets).

``shift_to`` moves all timestamps by one offset so the newest reading falls
on the last step boundary at or before ``shift_to`` (a whole number of the
largest step, so hourly data stays on whole hours; ``align="day"`` or
``"week"`` keeps the time of day or the weekday instead, and the data ends up
to a day or a week before ``shift_to``). ``speed`` paces the
publishing: 1 real time, 3600 an hour of data per second, 0 as fast as the
broker takes it. Injected anomalies' labels, shifted by the same offset, go
to ``labels_out`` (JSON if it ends in ``.json``, else CSV).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import orjson

from vatio.contracts import ENCODINGS, Encoding, encode_telemetry, telemetry_topic
from vatio.errors import ConfigError
from vatio.ingest.mqtt_codec import MqttError
from vatio.model import Reading
from vatio.model.anomaly import AnomalyKind, AnomalyLabel
from vatio.sim.datasets import FORMATS, load
from vatio.sim.inject import MeterTrace, inject
from vatio.sim.wire import FastPublisher
from vatio.transport import BrokerUrl

LABEL_COLUMNS = ("kind", "device_id", "start", "end", "magnitude", "detail")
Align = Literal["step", "day", "week"]
ALIGN_S: dict[str, int] = {"step": 0, "day": 86_400, "week": 7 * 86_400}


@dataclass(slots=True)
class ReplayStats:
    """What a replay published; ``offset_s`` is the shift applied to every timestamp."""

    devices: int = 0
    readings: int = 0
    messages: int = 0
    offset_s: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    elapsed_s: float = 0.0
    labels: int = 0
    device_ids: list[str] = field(default_factory=list)


def shift_offset_s(traces: Sequence[MeterTrace], shift_to: datetime | None, align: Align = "step") -> int:
    """Seconds to add to every timestamp so the data ends at ``shift_to`` (0 when None).

    The offset is a whole number of ``align`` units: ``step`` (the largest
    step; the data ends less than a step before ``shift_to``), ``day`` (keeps
    the time of day, so local nights stay nights; ends within a day before)
    or ``week`` (keeps the weekday too).

    >>> trace = MeterTrace.from_intervals("m-1", np.array([0, 3600]), 3600, power_w=np.ones(2))
    >>> shift_offset_s([trace], datetime(1970, 1, 3, 5, 30, tzinfo=UTC))
    183600
    >>> shift_offset_s([trace], datetime(1970, 1, 3, 5, 30, tzinfo=UTC), "day") // 86400
    2
    """
    if shift_to is None or not traces:
        return 0
    if shift_to.tzinfo is None:
        raise ConfigError("shift_to must be timezone-aware")
    ends = [int(t.ts[t.present][-1]) + t.step_s for t in traces if t.present.any()]
    if not ends:
        return 0
    if align not in ALIGN_S:
        raise ConfigError(f"align must be step, day or week, not {align!r}")
    grid = ALIGN_S[align] or max(t.step_s for t in traces)
    return math.floor((shift_to.timestamp() - max(ends)) / grid) * grid


def shift_labels(labels: Sequence[AnomalyLabel], offset_s: int) -> list[AnomalyLabel]:
    """Labels moved by ``offset_s`` seconds, to match shifted data."""
    delta = timedelta(seconds=offset_s)
    return [replace(label, start=label.start + delta, end=label.end + delta) for label in labels]


def write_labels(labels: Sequence[AnomalyLabel], path: Path) -> None:
    """Write labels as JSON (``.json``) or CSV, times as ISO 8601 UTC with ``Z``."""
    rows = [
        {
            "kind": label.kind.value,
            "device_id": label.device_id,
            "start": label.start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "end": label.end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "magnitude": label.magnitude,
            "detail": label.detail,
        }
        for label in labels
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
        return
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


class _Source:
    """One trace's present rows as readings, built one at a time (a year of minutes is 500k)."""

    def __init__(self, trace: MeterTrace, offset_s: int) -> None:
        self.device_id = trace.device_id
        self.rows = np.flatnonzero(trace.present)
        self.stamps = trace.ts[self.rows] + trace.step_s + offset_s
        self.columns = (trace.power_w[self.rows], trace.energy_wh[self.rows], trace.voltage_v[self.rows])
        self.next = 0

    def take(self) -> Reading:
        k = self.next
        self.next += 1
        power, energy, voltage = (float(values[k]) for values in self.columns)
        return Reading(
            self.device_id,
            datetime.fromtimestamp(int(self.stamps[k]), UTC),
            int(self.rows[k]) + 1,
            power_w=power if power == power else None,
            energy_wh=energy if energy == energy else None,
            voltage_v=voltage if voltage == voltage else None,
        )


async def replay(
    traces: Sequence[MeterTrace],
    *,
    broker_host: str,
    broker_port: int,
    speed: float,
    shift_to: datetime | None,
    batch: int = 1,
    qos: int = 1,
    site: str = "replay",
    labels_out: Path | None = None,
    labels: Sequence[AnomalyLabel] = (),
    encoding: Encoding = "json",
    align: Align = "step",
) -> ReplayStats:
    """Publish ``traces`` as telemetry of site ``site``; returns what was sent.

    ``batch`` readings of a device go in one message; ``labels`` (from
    :func:`~vatio.sim.inject.inject`) are written shifted to ``labels_out``
    before the first message; ``align`` as in :func:`shift_offset_s`.
    """
    if speed < 0 or batch < 1 or qos not in (0, 1) or encoding not in ENCODINGS:
        raise ConfigError("speed must be >= 0, batch >= 1, qos 0 or 1 and encoding json, cbor or pb")
    offset = shift_offset_s(traces, shift_to, align)
    stats = ReplayStats(devices=len(traces), offset_s=offset, device_ids=[t.device_id for t in traces])
    if labels_out is not None:
        write_labels(shift_labels(labels, offset), labels_out)
        stats.labels = len(labels)
    topics = [telemetry_topic(site, t.device_id, encoding) for t in traces]
    sources = [_Source(trace, offset) for trace in traces]
    stamps = np.concatenate([source.stamps for source in sources] or [np.zeros(0, np.int64)])
    owner = np.concatenate([np.full(len(source.rows), i) for i, source in enumerate(sources)] or [np.zeros(0)])
    order = np.argsort(stamps, kind="stable")
    first = int(stamps[order[0]]) if len(order) else 0
    pending: list[list[Reading]] = [[] for _ in traces]
    started = time.monotonic()
    client_id = f"vatio-replay-{site}-{os.getpid()}"
    async with FastPublisher(host=broker_host, port=broker_port, client_id=client_id, window=1000) as pub:
        for n, (stamp, i) in enumerate(zip(stamps[order].tolist(), owner[order].tolist(), strict=True)):
            if speed > 0:
                delay = started + (stamp - first) / speed - time.monotonic()
                if delay > 0.001:
                    await asyncio.sleep(delay)
            elif n % 1000 == 999:
                await asyncio.sleep(0)  # let an in-process consumer (vatio up) run too
            pending[i].append(sources[int(i)].take())
            if len(pending[i]) >= batch:
                await _send(pub, topics[i], pending[i], qos, encoding, stats)
                pending[i] = []
        for i, readings in enumerate(pending):
            if readings:
                await _send(pub, topics[i], readings, qos, encoding, stats)
        if qos:
            await pub.drain()
    stats.elapsed_s = time.monotonic() - started
    if len(stamps):
        stats.first_ts = datetime.fromtimestamp(int(stamps.min()), UTC)
        stats.last_ts = datetime.fromtimestamp(int(stamps.max()), UTC)
    return stats


async def _send(
    pub: FastPublisher, topic: str, readings: list[Reading], qos: int, encoding: str, stats: ReplayStats
) -> None:
    await pub.publish(topic, encode_telemetry(readings[0].device_id, readings, encoding), qos=qos)
    stats.messages += 1
    stats.readings += len(readings)


def parse_kinds(text: str) -> list[AnomalyKind]:
    """Kinds from ``left_on,gap`` (values or enum names, any case) or ``all``.

    >>> [k.value for k in parse_kinds("stuck,left_on")]
    ['stuck_meter', 'left_on']
    """
    by_name = {k.name.lower(): k for k in AnomalyKind} | {k.value: k for k in AnomalyKind}
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return list(AnomalyKind)
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        raise ConfigError(f"unknown anomaly kind(s) {unknown or text!r}; known: {', '.join(by_name)}, all")
    return [by_name[name] for name in names]


def parse_shift_to(text: str | None) -> datetime | None:
    """``now``, an ISO 8601 instant (naive = UTC), or None."""
    if text is None:
        return None
    if text == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--shift-to {text!r} is neither 'now' nor an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vatio sim replay", description=__doc__.split("\n", 1)[0])
    parser.add_argument("file", type=Path, help="data file (.csv or .csv.gz)")
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--speed", type=float, default=0.0, help="1 real time, 3600 an hour/s, 0 max")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--shift-to", help="'now' or an ISO 8601 time the data should end at")
    parser.add_argument("--align", choices=tuple(ALIGN_S), default="step", help="shift by whole steps, days or weeks")
    parser.add_argument("--inject", help="anomaly kinds to inject, comma-separated, or 'all'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-kind", type=int, default=1)
    parser.add_argument("--limit-rows", type=int, help="replay only the first N rows of each device")
    parser.add_argument("--labels-out", type=Path, help="where the injected labels go (.json or .csv)")
    parser.add_argument("--site", default="replay")
    parser.add_argument("--tz", help="override the data set's time zone")
    parser.add_argument("--batch", type=int, default=1, help="readings per message")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--encoding", choices=("json", "cbor", "pb"), default="json")
    return parser


def main(argv: list[str]) -> int:
    """``vatio sim replay FILE --format F [...]``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        broker = BrokerUrl.parse(args.broker)
        if broker.tls or broker.username:
            raise ConfigError("replay publishes without TLS or credentials; use an mqtt:// URL without them")
        traces = load(args.file, args.fmt, tz=args.tz)
        if args.limit_rows is not None:
            traces = [t.slice_rows(0, max(0, args.limit_rows)) for t in traces]
        labels: list[AnomalyLabel] = []
        if args.inject:
            kinds = parse_kinds(args.inject)
            injected = [inject(t, kinds, seed=args.seed, per_kind=args.per_kind) for t in traces]
            traces = [trace for trace, _ in injected]
            labels = [label for _, found in injected for label in found]
        stats = asyncio.run(
            replay(
                traces,
                broker_host=broker.host,
                broker_port=broker.port,
                speed=args.speed,
                shift_to=parse_shift_to(args.shift_to),
                batch=args.batch,
                qos=args.qos,
                site=args.site,
                labels_out=args.labels_out,
                labels=labels,
                encoding=args.encoding,
                align=args.align,
            )
        )
    except (ConfigError, ValueError) as exc:
        print(f"vatio sim replay: {exc}", file=sys.stderr)
        return 2
    except (OSError, MqttError) as exc:
        print(f"vatio sim replay: cannot publish to {args.broker}: {exc}", file=sys.stderr)
        return 1
    print(
        f"replayed {stats.readings} readings of {stats.devices} device(s) in {stats.messages} messages "
        f"({stats.first_ts} .. {stats.last_ts}, shifted {stats.offset_s} s) in {stats.elapsed_s:.1f} s"
    )
    if args.labels_out is not None:
        print(f"{len(labels)} injected anomalies, labels in {args.labels_out}")
    else:
        for label in shift_labels(labels, stats.offset_s):
            span = f"{label.start:%Y-%m-%d %H:%M}Z..{label.end:%Y-%m-%d %H:%M}Z"
            print(f"{label.device_id} {label.kind.value} {span} {label.detail}")
    return 0

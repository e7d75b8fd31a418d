"""The ingest pipeline: decode, validate, batch, write, then acknowledge.

Messages arrive synchronously from the MQTT transport. Each is decoded on
arrival and its readings appended to the open batch; the flusher commits the
batch when it is full or ``flush_interval_s`` has passed, and only then
acknowledges the messages it carried. A crash before the commit therefore
loses nothing: the broker redelivers every unacknowledged message, and the
store's idempotence on ``(device_id, ts)`` turns redelivery into exactly-once
storage.

When more than ``max_buffered_readings`` wait for the database, the transport
is paused: a slow database slows consumption and memory stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

import orjson

from vatio.contracts import Limits, ParsedTopic, decode_telemetry, parse_topic
from vatio.errors import BatchRejectedError, ContractError, StoreError
from vatio.model import DeadLetter, WriteBatch
from vatio.model.instants import utcnow
from vatio.store import Store
from vatio.store.late import readings_letter

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How many per-reading reasons a dead letter spells out before summarising.
MAX_REASONS = 5


@dataclass(slots=True)
class IngestCounters:
    """Running totals, read by the terminal display and the metrics endpoint."""

    messages: int = 0
    readings_received: int = 0
    readings_inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    status_updates: int = 0
    flushes: int = 0
    write_errors: int = 0
    lost_dead_letters: int = 0
    #: Readings the store refused as older than its retention cutoff (kept as dead letters).
    too_old: int = 0
    paused: int = 0
    last_flush_s: float = 0.0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Status:
    device_id: str
    site_id: str
    online: bool
    firmware: str | None
    at: datetime
    #: The message as received, kept as a dead letter should the store refuse it.
    topic: str
    payload: bytes


class _OpenBatch:
    __slots__ = ("acks", "batch", "statuses")

    def __init__(self) -> None:
        self.batch = WriteBatch()
        self.acks: list[tuple[int, int]] = []
        self.statuses: list[_Status] = []


class IngestPipeline:
    """Turns MQTT messages into committed store batches.

    ``ack`` is called with ``(generation, packet_id)`` pairs once the messages
    they carried are committed; ``pause``/``resume`` throttle the transport.
    """

    def __init__(
        self,
        *,
        store: Store,
        limits: Limits | None = None,
        batch_readings: int = 10_000,
        flush_interval_s: float = 0.5,
        max_buffered_readings: int = 200_000,
        raw_days: int | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.batch_readings = batch_readings
        self.flush_interval_s = flush_interval_s
        self.max_buffered_readings = max_buffered_readings
        self.raw_days = raw_days
        self.clock = clock
        self.counters = IngestCounters()
        self.ack: Callable[[Iterable[tuple[int, int]]], object] = lambda _: None
        self.pause: Callable[[], None] = lambda: None
        self.resume: Callable[[], None] = lambda: None
        self.generation = 0
        self._open = _OpenBatch()
        self._in_flight = 0
        self._paused = False
        self._full = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._base_limits = self.limits
        self._tick()

    def _tick(self) -> None:
        """Advance the pipeline's notion of now (once per flush, not per message)."""
        self._now = self.clock()
        if self.raw_days is not None:
            # A reading older than raw retention would have its rollups recomputed
            # from neighbours that retention already dropped: refuse it instead.
            horizon = self._now - timedelta(days=self.raw_days)
            self.limits = replace(self._base_limits, min_ts=max(self._base_limits.min_ts, horizon))

    def on_connected(self) -> None:
        """A new connection starts unpaused: re-apply a pause still in force."""
        if self._paused:
            self.pause()

    # -- called by the transport, synchronously, once per message --------------
    def on_message(self, topic: str, payload: bytes, qos: int, packet_id: int) -> None:
        counters = self.counters
        counters.messages += 1
        current = self._open
        if qos:
            current.acks.append((self.generation, packet_id))
        try:
            parsed = parse_topic(topic)
            if parsed.kind == "status":
                current.statuses.append(self._status(parsed, topic, payload))
                return
            if parsed.kind != "telemetry":
                raise ContractError(f"ingest does not consume {parsed.kind!r} topics", field="topic")
            decoded = decode_telemetry(parsed, payload, limits=self.limits, now=self._now)
        except ContractError as exc:
            self._dead_letter(topic, payload, str(exc))
            return
        except Exception as exc:
            # A decoder bug must cost one message, not the consumer.
            log.exception("unexpected error decoding a message on %s", topic)
            self._dead_letter(topic, payload, f"internal error while decoding: {exc!r}")
            return
        batch = current.batch
        if decoded.readings:
            counters.readings_received += len(decoded.readings)
            batch.readings.extend(decoded.readings)
            device = decoded.device
            batch.sites[device] = parsed.site
            batch.last_seen[device] = self._now
        if decoded.rejected:
            self._dead_letter(topic, payload, _summarise(decoded.rejected, len(decoded.readings)))
        if len(batch.readings) >= self.batch_readings:
            self._full.set()
        if not self._paused and self._in_flight + len(batch.readings) >= self.max_buffered_readings:
            self._paused = True
            counters.paused += 1
            self.pause()

    def _status(self, parsed: ParsedTopic, topic: str, payload: bytes) -> _Status:
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ContractError(f"status payload is not valid JSON: {exc}") from exc
        version = body.get("v") if isinstance(body, dict) else None
        # type(): True and 1.0 equal 1, and the telemetry validator refuses them as versions too.
        if type(version) is not int or version != 1 or not isinstance(body.get("online"), bool):
            raise ContractError('status must be {"v": 1, "online": bool, ...}')
        firmware = body.get("fw")
        # PostgreSQL text cannot hold NUL: such a firmware would fail the flusher's commit.
        if firmware is not None and (not isinstance(firmware, str) or "\x00" in firmware):
            raise ContractError("must be a string without NUL characters", field="fw")
        assert parsed.device is not None
        return _Status(parsed.device, parsed.site, body["online"], firmware, self._now, topic, payload)

    def _dead_letter(self, topic: str, payload: bytes, reason: str) -> None:
        letter = _letter(self._now, topic, payload, reason)
        self._open.batch.dead_letters.append(letter)
        self._count_dead_letter(letter)
        if len(self._open.batch.dead_letters) >= 1000:
            self._full.set()

    def _count_dead_letter(self, letter: DeadLetter) -> None:
        self.counters.dead_letters += 1
        key = letter.reason.split(":", 1)[0][:60]
        self.counters.dead_letter_reasons[key] = self.counters.dead_letter_reasons.get(key, 0) + 1

    # -- the flusher -------------------------------------------------------------
    async def run(self) -> None:
        """Flush forever; cancel to stop (pending data is flushed by :meth:`flush`)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=self.flush_interval_s)
            self._tick()
            await self.flush()

    async def flush(self) -> None:
        """Commit the open batch, then acknowledge its messages.

        One flush at a time, so messages are acknowledged in the order they
        arrived. A flush cancelled mid-commit (shutdown) hands its batch back
        in front of the open one: the next flush writes it again (writes are
        idempotent) and acknowledges its messages before the later ones.
        """
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        self._full.clear()
        current, self._open = self._open, _OpenBatch()
        if not current.batch and not current.statuses:
            if current.acks:
                self.ack(current.acks)
            return
        # Count what was added: a rejected batch is replaced by one without readings.
        in_flight = len(current.batch.readings)
        self._in_flight += in_flight
        started = time.perf_counter()
        try:
            await self._commit(current)
        except asyncio.CancelledError:
            self._hand_back(current)
            raise
        finally:
            self._in_flight -= in_flight
        self.counters.last_flush_s = time.perf_counter() - started
        self.counters.flushes += 1
        self.ack(current.acks)
        if self._paused and self._in_flight + len(self._open.batch.readings) < self.max_buffered_readings // 2:
            self._paused = False
            self.resume()

    def _hand_back(self, current: _OpenBatch) -> None:
        """Put an uncommitted batch back in front of what arrived since."""
        later, batch = self._open, current.batch
        batch.readings.extend(later.batch.readings)
        batch.dead_letters.extend(later.batch.dead_letters)
        batch.sites.update(later.batch.sites)
        for device, seen in later.batch.last_seen.items():
            batch.last_seen[device] = max(seen, batch.last_seen.get(device, seen))
        current.acks.extend(later.acks)
        current.statuses.extend(later.statuses)
        self._open = current

    async def _commit(self, current: _OpenBatch) -> None:
        if current.batch:
            await self._retrying(self._write, current)
        for status in current.statuses:
            await self._retrying(self._write_status, status)

    async def _write(self, current: _OpenBatch) -> None:
        try:
            result = await self.store.write(current.batch)
        except BatchRejectedError as exc:
            if not current.batch.readings:
                # Even the dead letters were refused: nothing left to try.
                log.error("store refused %d dead letters: %s", len(current.batch.dead_letters), exc)
                self.counters.lost_dead_letters += len(current.batch.dead_letters)
                return
            # Validation should make this impossible; if the database still
            # refuses, keep the readings as dead letters rather than block.
            log.error("store rejected a batch: %s", exc)
            current.batch = _rejected_batch(current.batch, str(exc), self._now)
            await self._write(current)
            return
        self.counters.readings_inserted += result.inserted
        self.counters.duplicates += result.duplicates
        self.counters.too_old += result.too_old

    async def _write_status(self, status: _Status) -> None:
        try:
            await self.store.set_device_status(
                status.device_id, status.site_id, online=status.online, firmware=status.firmware, at=status.at
            )
        except BatchRejectedError as exc:
            # Validation should make this impossible; keep the message rather than drop it.
            log.error("store refused the status of %s: %s", status.device_id, exc)
            kept = _OpenBatch()
            letter = _letter(status.at, status.topic, status.payload, f"store refused the status: {exc}")
            kept.batch.dead_letters.append(letter)
            # A failed write raises, and the retry comes back here: count only once it is written.
            await self._write(kept)
            self._count_dead_letter(letter)
            return
        self.counters.status_updates += 1

    async def _retrying(self, write: Callable[[_T], Awaitable[None]], item: _T) -> None:
        delay = 0.2
        while True:
            try:
                await write(item)
                return
            except (StoreError, OSError) as exc:
                # Keep the batch and its unacknowledged messages: nothing is lost
                # while the database is away, and the broker holds the rest.
                self.counters.write_errors += 1
                log.warning("store write failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _letter(now: datetime, topic: str, payload: bytes, reason: str) -> DeadLetter:
    # Reasons quote the input (an unknown key's name); PostgreSQL text cannot hold NUL.
    return DeadLetter(received_at=now, topic=topic, reason=reason.replace("\x00", "\\x00"), payload=payload)


def _rejected_batch(batch: WriteBatch, reason: str, now: datetime) -> WriteBatch:
    letters = list(batch.dead_letters)
    for device, site in batch.sites.items():
        rows = [r for r in batch.readings if r.device_id == device]
        letters.append(readings_letter(rows, site, device, f"store rejected the batch: {reason}", now))
    return WriteBatch(dead_letters=letters)


def _summarise(rejected: list[ContractError], accepted: int) -> str:
    shown = "; ".join(str(e) for e in rejected[:MAX_REASONS])
    more = len(rejected) - MAX_REASONS
    tail = f"; and {more} more" if more > 0 else ""
    return f"{len(rejected)} reading(s) rejected, {accepted} accepted: {shown}{tail}"

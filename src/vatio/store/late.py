"""Readings older than raw retention: every store refuses them into dead letters.

Retention deletes raw readings older than its cutoff but keeps their rollups.
A reading written later for such a time would mark its range dirty, and the
rollup refresh would recompute the range's buckets from that reading alone:
the stored buckets of a whole day replaced by a few minutes' worth. So each
store records the newest cutoff it applied, and ``write`` moves readings
older than it into dead letters (one per device, the readings as JSON) with
the reason, inside the same transaction. So does a reading just after the
cutoff whose predecessor retention deleted (the device has rollups just before
the cutoff and no stored reading between the cutoff and it): the refresh would
take that interval's energy out of the buckets. The ingest refuses them earlier
(``--raw-days``); this keeps imports, replays and any other writer honest
too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson

from vatio.model import DeadLetter, Reading, WriteBatch
from vatio.store.rollup import COUNTER_REACH_MS


def readings_letter(readings: Sequence[Reading], site: str, device: str, reason: str, now: datetime) -> DeadLetter:
    """One device's readings kept as a dead letter (JSON rows) with ``reason``.

    PostgreSQL text cannot hold NUL, so any in the reason is escaped.
    """
    return DeadLetter(
        received_at=now,
        topic=f"store/{site}/{device}",
        reason=reason.replace("\x00", "\\x00"),
        payload=orjson.dumps([r._asdict() for r in readings], default=str),
    )


#: Readings this soon after the cutoff may follow a reading retention deleted (see refuse_late):
#: a counter's reach, plus the width of the 1-minute bucket that tells of the deleted reading.
REACH = timedelta(milliseconds=COUNTER_REACH_MS, minutes=1)


def near_cutoff(batch: WriteBatch, cutoff: datetime | None) -> list[str]:
    """Devices of ``batch`` with readings in ``[cutoff, cutoff + REACH)``: the ones to look up."""
    if cutoff is None:
        return []
    return sorted({r.device_id for r in batch.readings if cutoff <= r.ts < cutoff + REACH})


class Neighbours(NamedTuple):
    """A device's data around the cutoff, within ``REACH`` of it (None: none)."""

    #: Start of its last 1-minute rollup bucket before the cutoff: raw readings retention deleted.
    last_before: datetime | None
    #: Its first stored raw reading at or after the cutoff.
    first_after: datetime | None


def refuse_late(
    batch: WriteBatch, cutoff: datetime | None, neighbours: Mapping[str, Neighbours], now: datetime
) -> tuple[WriteBatch, int]:
    """``batch`` without the readings retention makes unwritable, which become dead letters; and their count.

    Unwritable are readings older than ``cutoff``, and readings just after it whose
    predecessor retention deleted: the device has rolled-up data within ``REACH``
    before the cutoff and no stored reading between the cutoff and this one
    (``neighbours``, from the store, for the devices :func:`near_cutoff` names). Such
    a reading's interval energy cannot be computed, and recomputing its range would
    take that energy out of the stored buckets.

    >>> t = datetime(2026, 1, 10, tzinfo=UTC)
    >>> cut = t - timedelta(days=1)
    >>> batch = WriteBatch(readings=[Reading("m", t - timedelta(hours=h), h, 5.0) for h in (0, 20, 30)],
    ...                    sites={"m": "home"}, last_seen={"m": t})
    >>> near_cutoff(batch, cut)
    ['m']
    >>> kept, refused = refuse_late(batch, cut, {"m": Neighbours(None, None)}, now=t)
    >>> [r.seq for r in kept.readings], refused, kept.dead_letters[0].topic
    ([0, 20], 1, 'store/home/m')
    >>> kept.dead_letters[0].reason
    '1 reading(s) older than raw retention (cutoff 2026-01-09T00:00:00Z): their rollups could not be recomputed'
    >>> gone = Neighbours(last_before=cut - timedelta(minutes=5), first_after=t - timedelta(hours=2))
    >>> [r.seq for r in refuse_late(batch, cut, {"m": gone}, now=t)[0].readings]
    [0]
    """
    if cutoff is None or not batch.readings:
        return batch, 0

    def unwritable(r: Reading) -> bool:
        if r.ts < cutoff:
            return True
        last, first = neighbours.get(r.device_id, Neighbours(None, None))
        if last is None or r.ts - last > REACH:
            return False
        return first is None or r.ts < first

    flags = [unwritable(r) for r in batch.readings]
    if not any(flags):
        return batch, 0
    refused = [r for r, bad in zip(batch.readings, flags, strict=True) if bad]
    letters = list(batch.dead_letters)
    stamp = f"{cutoff.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    for device in dict.fromkeys(r.device_id for r in refused):
        mine = [r for r in refused if r.device_id == device]
        old = sum(r.ts < cutoff for r in mine)
        parts = []
        if old:
            parts.append(f"{old} reading(s) older than raw retention (cutoff {stamp})")
        if len(mine) > old:
            parts.append(
                f"{len(mine) - old} reading(s) just after the cutoff ({stamp}) whose previous reading retention deleted"
            )
        reason = " and ".join(parts) + ": their rollups could not be recomputed"
        letters.append(readings_letter(mine, batch.sites.get(device, "unknown"), device, reason, now))
    kept = [r for r, bad in zip(batch.readings, flags, strict=True) if not bad]
    return replace(batch, readings=kept, dead_letters=letters), len(refused)


__all__ = ["REACH", "Neighbours", "near_cutoff", "readings_letter", "refuse_late"]

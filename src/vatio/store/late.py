"""Readings older than raw retention: every store refuses them into dead letters.

Retention deletes raw readings older than its cutoff but keeps their rollups.
A reading written later for such a time would mark its range dirty, and the
rollup refresh would recompute the range's buckets from that reading alone:
the stored buckets of a whole day replaced by a few minutes' worth. So each
store records the newest cutoff it applied, and ``write`` moves readings
older than it into dead letters (one per device, the readings as JSON) with
the reason, inside the same transaction. The ingest refuses them earlier
(``--raw-days``); this keeps imports, replays and any other writer honest
too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from vatio.model import DeadLetter, Reading, WriteBatch


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


def refuse_older_than(batch: WriteBatch, cutoff: datetime | None, now: datetime) -> tuple[WriteBatch, int]:
    """``batch`` without its readings older than ``cutoff``, which become dead letters; and their count.

    >>> from datetime import timedelta
    >>> t = datetime(2026, 1, 10, tzinfo=UTC)
    >>> batch = WriteBatch(readings=[Reading("m", t - timedelta(days=d), d, 5.0) for d in (0, 1, 2)],
    ...                    sites={"m": "home"}, last_seen={"m": t})
    >>> kept, refused = refuse_older_than(batch, t - timedelta(days=1), now=t)
    >>> [r.seq for r in kept.readings], refused, kept.dead_letters[0].topic
    ([0, 1], 1, 'store/home/m')
    >>> kept.dead_letters[0].reason
    '1 reading(s) older than raw retention (cutoff 2026-01-09T00:00:00Z): their rollups could not be recomputed'
    """
    if cutoff is None or not batch.readings:
        return batch, 0
    old = [r for r in batch.readings if r.ts < cutoff]
    if not old:
        return batch, 0
    letters = list(batch.dead_letters)
    for device in dict.fromkeys(r.device_id for r in old):
        mine = [r for r in old if r.device_id == device]
        reason = (
            f"{len(mine)} reading(s) older than raw retention (cutoff {cutoff.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ})"
            ": their rollups could not be recomputed"
        )
        letters.append(readings_letter(mine, batch.sites.get(device, "unknown"), device, reason, now))
    kept = [r for r in batch.readings if r.ts >= cutoff]
    return replace(batch, readings=kept, dead_letters=letters), len(old)


__all__ = ["readings_letter", "refuse_older_than"]

"""The delivery worker: sends due outbox messages through their channels.

Guarantee: at-least-once on the wire, exactly-once marked. A message is
claimed with a lease (no other worker sends it meanwhile), sent, and only
then marked delivered. A crash between sending and marking sends it again
once the lease runs out, with the same id (``X-Vatio-Id`` / ``message_id``),
which receivers use to drop the repeat. Failures retry with capped
exponential backoff and jitter; a permanent failure (a 4xx, an SMTP 5xx, a
route that no longer exists) is recorded with its error and not retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from vatio.alert.channels.base import Channel, DeliveryError
from vatio.alert.events import render
from vatio.alert.passes import repeat_passes
from vatio.alert.routes import AlertConfig
from vatio.model import OutboxMessage
from vatio.model.instants import utcnow
from vatio.store import Store
from vatio.transport import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryOptions:
    poll_s: float = 1.0
    batch: int = 100
    #: How long a claimed message is hidden from other workers: longer than any one send.
    lease_s: float = 120.0
    retry_initial_s: float = 2.0
    retry_cap_s: float = 600.0
    #: After this many failed attempts a message is given up (about 8 h at the default cap).
    max_attempts: int = 50


@dataclass(slots=True)
class DeliveryCounters:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    already_delivered: int = 0


def retry_delay(attempts: int, options: DeliveryOptions, rng: random.Random) -> float:
    """Seconds before the next try after ``attempts`` failures: capped doubling, jittered in [½, 1] of it.

    >>> o = DeliveryOptions(retry_initial_s=1.0, retry_cap_s=8.0)
    >>> [0.5 <= retry_delay(0, o, random.Random(1)) <= 1.0, retry_delay(10, o, random.Random(1)) <= 8.0]
    [True, True]
    """
    ceiling = min(options.retry_cap_s, options.retry_initial_s * 2 ** min(attempts, 32))
    return rng.uniform(ceiling / 2, ceiling)


class DeliveryWorker:
    """Claims due messages and hands each to the channel its route names."""

    def __init__(
        self,
        *,
        store: Store,
        config: AlertConfig,
        channels: Mapping[str, Channel],
        options: DeliveryOptions | None = None,
        clock: Callable[[], datetime] = utcnow,
        seed: int | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.channels = channels
        self.options = options or DeliveryOptions()
        self.clock = clock
        self.seed = seed
        self.counters = DeliveryCounters()
        self._rng = random.Random(seed)

    async def run_once(self) -> int:
        """Send every message due now; returns how many were claimed."""
        now = self.clock()
        lease = now + timedelta(seconds=self.options.lease_s)
        messages = await self.store.claim_outbox(now=now, lease_until=lease, limit=self.options.batch)
        # One route's slow receiver must not hold up the others: routes run side by side.
        by_route: dict[str, list[OutboxMessage]] = {}
        for message in messages:
            by_route.setdefault(message.route, []).append(message)
        outcomes = await asyncio.gather(
            *(self._deliver_in_order(batch, lease) for batch in by_route.values()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # a store outage: the run loop backs off; leases expire and resend
        return len(messages)

    async def _deliver_in_order(self, messages: list[OutboxMessage], lease: datetime) -> None:
        for message in messages:
            if self.clock() >= lease:
                # Slow sends ate the lease: the rest are due again and another worker may have
                # claimed them. Sending them too would deliver them twice; they wait for a claim.
                return
            await self._deliver(message)

    async def _deliver(self, message: OutboxMessage) -> None:
        route = self.config.route(message.route)
        channel = self.channels.get(message.channel)
        try:
            if route is None or channel is None or route.channel != message.channel:
                raise DeliveryError(f"route {message.route!r} ({message.channel}) is not configured", permanent=True)
            await channel.send(route, message, render(message))
        except DeliveryError as exc:
            await self._failed(message, exc)
            return
        except Exception as exc:  # a channel fault no channel translated (a malformed URL in the routes file…)
            # Recorded and retried with backoff like any failure, and given up after max_attempts,
            # rather than re-claimed at every lease forever.
            await self._failed(message, DeliveryError(f"{message.channel} {message.route}: {exc!r}"))
            return
        if await self.store.outbox_delivered(message.id, at=self.clock()):
            self.counters.delivered += 1
        else:
            self.counters.already_delivered += 1

    async def _failed(self, message: OutboxMessage, exc: DeliveryError) -> None:
        now = self.clock()
        attempts = message.attempts + 1
        if exc.permanent or attempts >= self.options.max_attempts:
            log.warning("giving up on message %s after %d attempts: %s", message.id, attempts, exc)
            await self.store.outbox_failed(message.id, at=now, error=exc.reason, retry_at=None)
            self.counters.failed += 1
            return
        delay = retry_delay(message.attempts, self.options, self._rng)
        log.info("message %s not delivered (%s); retrying in %.1fs", message.id, exc, delay)
        retry_at = now + timedelta(seconds=delay)
        await self.store.outbox_failed(message.id, at=now, error=exc.reason, retry_at=retry_at)
        self.counters.retried += 1

    async def run(self, wake: asyncio.Event | None = None) -> None:
        """Deliver forever: every ``poll_s`` or when ``wake`` is set; store outages are logged and retried."""

        async def one_pass() -> float:
            claimed = await self.run_once()
            return 0.0 if claimed >= self.options.batch else self.options.poll_s

        backoff = Backoff(initial_s=self.options.poll_s, cap_s=30.0)
        await repeat_passes(one_pass, backoff=backoff, wake=wake, what="delivery pass")

"""The loop both alerting workers run: one pass, a pause, again, whatever goes wrong."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from vatio.errors import StoreError
from vatio.transport import Backoff

log = logging.getLogger(__name__)


async def repeat_passes(
    one_pass: Callable[[], Awaitable[float]], *, backoff: Backoff, wake: asyncio.Event | None, what: str
) -> None:
    """Run ``one_pass`` forever; it returns how long to wait before the next one.

    ``wake`` cuts a wait short. A store outage is logged and the pass retried
    after ``backoff``; any other fault is logged with its traceback and
    retried the same way: a worker never dies in its loop.
    """
    wake = wake or asyncio.Event()
    while True:
        try:
            delay = await one_pass()
            backoff.reset()
        except StoreError as exc:
            delay = backoff.next()
            log.warning("%s cannot reach the store (%s); retrying in %.1fs", what, exc, delay)
        except Exception:  # a driver error no backend translated
            delay = backoff.next()
            log.exception("%s failed; retrying in %.1fs", what, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
        wake.clear()

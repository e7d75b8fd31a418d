"""Webhooks: a JSON POST signed with the route's secret.

Headers: ``X-Vatio-Id`` (the idempotency key: the same for every retry of one
notification), ``X-Vatio-Timestamp`` (unix seconds when sent) and
``X-Vatio-Signature: sha256=<hex>``, the HMAC-SHA256 of ``f"{timestamp}.{body}"``
under the route's ``secret``. A receiver checks it with :func:`verify_signature`,
which also rejects a timestamp older than ``tolerance_s`` (a replay) and, given
the ``X-Vatio-Id``, one that differs from the body's signed ``message_id``; it
then drops an id it has already processed.

Status handling: 2xx delivered; 4xx other than 408 and 429 is permanent (the
request itself is wrong: recorded, not retried); anything else is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from vatio.alert.channels.base import DeliveryError
from vatio.alert.routes import Route
from vatio.model import OutboxMessage

_RETRYABLE_4XX = (408, 429)


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Vatio-Signature`` value of ``body`` sent at ``timestamp``.

    >>> sign("s3cret", 1700000000, b'{"v":1}')[:15]
    'sha256=bf81b0df'
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: int | str,
    body: bytes,
    signature: str | None,
    tolerance_s: float = 300,
    *,
    now: float | None = None,
    message_id: str | None = None,
) -> bool:
    """True when ``signature`` is ``body``'s under ``secret`` and ``timestamp`` is within ``tolerance_s`` of now.

    Pass the ``X-Vatio-Id`` header as ``message_id`` when deduplicating on it: the header is not
    signed, so it must equal the (signed) ``message_id`` of the body, or a replay within the
    tolerance could dodge the dedup by changing it. Never raises on malformed input.

    >>> ts = int(time.time())
    >>> verify_signature("k", ts, b"{}", sign("k", ts, b"{}"))
    True
    >>> verify_signature("k", ts - 3600, b"{}", sign("k", ts - 3600, b"{}"))  # replayed an hour later
    False
    >>> verify_signature("other", ts, b"{}", sign("k", ts, b"{}"))
    False
    """
    try:
        sent = int(timestamp)
    except (TypeError, ValueError, OverflowError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    if not isinstance(signature, str):
        return False
    # Bytes, not str: compare_digest raises TypeError on a str with non-ASCII characters.
    if not hmac.compare_digest(sign(secret, sent, body).encode(), signature.encode("utf-8", "surrogateescape")):
        return False
    return message_id is None or _body_id(body) == message_id


def _body_id(body: bytes) -> object:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return event.get("message_id") if isinstance(event, dict) else None


class WebhookChannel:
    """POSTs notifications to the route's ``url``; route settings: ``url``, ``secret``, ``timeout_s``."""

    def __init__(self, *, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def send(self, route: Route, message: OutboxMessage, body: bytes) -> None:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "vatio-alert/1",
            "X-Vatio-Id": message.id,
            "X-Vatio-Timestamp": str(timestamp),
            "X-Vatio-Signature": sign(str(route.settings["secret"]), timestamp, body),
        }
        timeout = float(route.settings.get("timeout_s", self.timeout_s))
        try:
            response = await self._client.post(
                str(route.settings["url"]), content=body, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {route.name}: {type(exc).__name__}: {exc}") from exc
        if 200 <= response.status_code < 300:
            return
        permanent = 400 <= response.status_code < 500 and response.status_code not in _RETRYABLE_4XX
        raise DeliveryError(f"webhook {route.name}: HTTP {response.status_code}", permanent=permanent)

    async def aclose(self) -> None:
        await self._client.aclose()

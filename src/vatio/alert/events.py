"""The alert as JSON: the API's Alert object and the body of every notification.

A notification body is ``{"v": 1, "event": "alert_firing" | "alert_acknowledged" |
"alert_resolved", "message_id": ..., "at": ..., **alert}``. ``message_id`` is the
idempotency key: a channel may deliver a message more than once (at-least-once
on the wire), a receiver drops repeats of an id it has seen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from vatio.contracts import format_ts
from vatio.model import Alert, AlertState, OutboxMessage

EVENTS = {
    AlertState.FIRING: "alert_firing",
    AlertState.ACKNOWLEDGED: "alert_acknowledged",
    AlertState.RESOLVED: "alert_resolved",
}


def _ts(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)


def alert_fields(alert: Alert) -> dict[str, Any]:
    """The API contract's Alert object."""
    return {
        "id": alert.id, "site": alert.site_id, "device": alert.device_id, "kind": alert.kind,
        "severity": alert.severity.value, "state": alert.state.value, "title": alert.title,
        "explanation": alert.explanation, "anomaly_id": alert.anomaly_id, "opened_at": _ts(alert.opened_at),
        "updated_at": _ts(alert.updated_at), "acknowledged_at": _ts(alert.acknowledged_at),
        "resolved_at": _ts(alert.resolved_at), "acknowledged_by": alert.acknowledged_by, "muted": alert.muted,
    }  # fmt: skip


def event_payload(alert: Alert, state: AlertState, at: datetime, note: str | None = None) -> bytes:
    """The stored payload of a notification (``id`` and ``message_id`` are filled in at send time)."""
    body = {"v": 1, "event": EVENTS[state], "at": format_ts(at), **alert_fields(alert), "note": note}
    return orjson.dumps(body)


def render(message: OutboxMessage) -> bytes:
    """The body as sent: the stored payload with the alert id and the message's idempotency key."""
    body = orjson.loads(message.payload)
    body["id"] = message.alert_id
    body["message_id"] = message.id
    return orjson.dumps(body)

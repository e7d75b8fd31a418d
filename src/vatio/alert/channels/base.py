"""What every delivery channel is: one ``send`` that delivers a rendered notification or says why not."""

from __future__ import annotations

from typing import Protocol

from vatio.alert.routes import Route
from vatio.errors import VatioError
from vatio.model import OutboxMessage


class DeliveryError(VatioError):
    """A notification was not delivered. ``permanent``: retrying cannot help (recorded as failed)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        self.reason = reason
        self.permanent = permanent
        super().__init__(reason)


class Channel(Protocol):
    """Delivers one notification.

    Contract: return only once the receiver has taken the message (HTTP 2xx,
    SMTP accepted, MQTT PUBACK); raise :class:`DeliveryError` otherwise. A
    channel may be asked to send one message again (a crash between sending
    and marking it delivered): it passes ``message.id`` on, so receivers dedup.
    """

    async def send(self, route: Route, message: OutboxMessage, body: bytes) -> None: ...

    async def aclose(self) -> None: ...

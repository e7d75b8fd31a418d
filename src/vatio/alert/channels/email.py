"""Email over SMTP with STARTTLS (smtplib, run in a worker thread).

Route settings: ``host``, ``port`` (587), ``sender``, ``to`` (an address or a
list), ``username``/``password`` (optional), ``starttls`` (true; refusing to
send in clear unless set to false), ``ca_file`` (a CA bundle to trust instead
of the system's, e.g. a private relay). The notification's id is the
``Message-ID`` and the ``X-Vatio-Id`` header, so a resend is recognisable.
SMTP 5xx answers are permanent failures; 4xx and connection trouble retry.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

import orjson

from vatio.alert.channels.base import DeliveryError
from vatio.alert.routes import Route
from vatio.model import OutboxMessage


def compose(route: Route, message: OutboxMessage, body: bytes) -> EmailMessage:
    """The email of one notification: a readable text part and the event JSON attached."""
    event: dict[str, Any] = orjson.loads(body)
    recipients = route.settings["to"]
    mail = EmailMessage()
    mail["From"] = str(route.settings["sender"])
    mail["To"] = ", ".join(recipients) if isinstance(recipients, list) else str(recipients)
    state = str(event.get("event", "alert")).removeprefix("alert_")
    mail["Subject"] = f"[Vatio {event.get('severity', '')}] {event.get('title', '')}: {state}"
    mail["Message-ID"] = f"<{message.id}@vatio>"
    mail["X-Vatio-Id"] = message.id
    lines = [
        f"{event.get('title')} ({event.get('severity')}) is {state}.",
        "",
        str(event.get("explanation", "")),
        "",
        f"site {event.get('site')}, device {event.get('device')}, alert {event.get('id')}, at {event.get('at')}",
    ]
    if event.get("note"):
        lines += ["", f"note: {event['note']}"]
    mail.set_content("\n".join(lines))
    mail.add_attachment(body, maintype="application", subtype="json", filename="alert.json")
    return mail


class EmailChannel:
    """Sends each notification as one email through the route's SMTP relay."""

    def __init__(self, *, timeout_s: float = 20.0) -> None:
        self.timeout_s = timeout_s

    async def send(self, route: Route, message: OutboxMessage, body: bytes) -> None:
        mail = compose(route, message, body)
        try:
            await asyncio.to_thread(self._send, route, mail)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"email {route.name}: SMTP {exc.smtp_code} {exc.smtp_error!r}", permanent=exc.smtp_code >= 500
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"email {route.name}: recipients refused {exc.recipients}", permanent=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"email {route.name}: {type(exc).__name__}: {exc}") from exc

    def _send(self, route: Route, mail: EmailMessage) -> None:
        settings = route.settings
        ca_file = settings.get("ca_file")
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        with smtplib.SMTP(str(settings["host"]), int(settings.get("port", 587)), timeout=self.timeout_s) as smtp:
            smtp.ehlo()
            if settings.get("starttls", True):
                smtp.starttls(context=context)
                smtp.ehlo()
            if settings.get("username"):
                smtp.login(str(settings["username"]), str(settings.get("password", "")))
            smtp.send_message(mail)

    async def aclose(self) -> None:
        """Nothing to release: one connection per message."""

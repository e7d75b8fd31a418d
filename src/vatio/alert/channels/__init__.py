"""Delivery channels: webhook (signed HTTP POST), email (SMTP + STARTTLS), MQTT, Home Assistant discovery."""

from vatio.alert.channels.base import Channel, DeliveryError
from vatio.alert.channels.webhook import WebhookChannel, sign, verify_signature

__all__ = ["Channel", "DeliveryError", "WebhookChannel", "sign", "verify_signature"]

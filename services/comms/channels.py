"""Delivery channels. Each sends one notification or raises DeliveryFailed with the reason."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Protocol

import httpx
import orjson

from shared.events import NotificationPlanned

log = logging.getLogger("lynchpin.comms.channels")


class DeliveryFailed(Exception):
    pass


class Channel(Protocol):
    async def send(self, notification: NotificationPlanned) -> None: ...


class LogChannel:
    """Writes the notification to the service log: always available, the last-resort channel."""

    async def send(self, notification: NotificationPlanned) -> None:
        log.info(
            "notification %s to %s: %s",
            notification.notification_id,
            notification.recipient,
            notification.subject,
        )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`, as receivers verify it."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookChannel:
    """POSTs JSON signed with HMAC-SHA256; `Idempotency-Key` is the notification id."""

    def __init__(self, client: httpx.AsyncClient, secret: str) -> None:
        self.client = client
        self.secret = secret

    async def send(self, notification: NotificationPlanned) -> None:
        body = orjson.dumps(
            {
                "notification_id": notification.notification_id,
                "incident_id": notification.incident_id,
                "cause": notification.cause_type,
                "audience": notification.audience,
                "subject": notification.subject,
                "text": notification.body,
            }
        )
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": notification.notification_id,
            "X-Lynchpin-Signature": signature(self.secret, int(time.time()), body),
        }
        try:
            response = await self.client.post(notification.recipient, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise DeliveryFailed(f"{type(e).__name__}: {e}") from e
        if response.status_code >= 300:
            raise DeliveryFailed(f"HTTP {response.status_code} from {notification.recipient}")

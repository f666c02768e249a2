"""Delivery channels. Each sends one message or raises DeliveryFailed with the reason.

email (SMTP, aiosmtplib), a generic signed webhook, Slack- and Teams-compatible incoming
webhooks, and the log (always available). Outbound URLs are checked against the policy's
allowlist before anything is sent. Secrets (webhook secret, SMTP password) are never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiosmtplib
import httpx
import orjson

from shared.policy.comms import EmailPolicy, OutboundPolicy

log = logging.getLogger("lynchpin.comms.channels")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
METADATA = [
    ipaddress.ip_network(n) for n in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")
]


class DeliveryFailed(Exception):
    """The attempt failed. `permanent`: retrying this channel is pointless (go to the fallback)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Message:
    notification_id: str
    incident_id: str
    cause: str
    audience: str
    subject: str
    body: str
    channel: str
    address: str


class Channel(Protocol):
    async def send(self, message: Message) -> None: ...


class LogChannel:
    """Writes the notification to the service log: always available, the last-resort channel."""

    async def send(self, message: Message) -> None:
        log.info("notification %s to %s: %s", message.notification_id, message.address, message.subject)


class Outbound:
    """Which hosts webhooks may reach: loopback, link-local, metadata, multicast and unspecified
    addresses are refused unless allowed by name, address or network."""

    def __init__(self, policy: OutboundPolicy, extra_hosts: Iterable[str] = ()) -> None:
        self.allow_private = policy.allow_private
        self.hosts: set[str] = set()
        self.networks: list[IpNetwork] = []
        for entry in [*policy.allow, *extra_hosts]:
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower())

    def refusal(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        if any(ip in n for n in self.networks):
            return None
        if any(ip in n for n in METADATA):
            return "a cloud metadata address"
        if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            return "a loopback, link-local, multicast or reserved address"
        if ip.is_private and not self.allow_private:
            return "a private address"
        return None

    def check_url(self, url: str) -> str:
        """Syntax and literal addresses (at save time); returns the host."""
        return self._check_url(url)[0]

    def _check_url(self, url: str) -> tuple[str, bool]:
        """The host, and whether it is settled (allowed by name, or an allowed literal address)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeliveryFailed(f"{url!r} is not an http(s) URL", permanent=True)
        host = parts.hostname.lower()
        if host in self.hosts:
            return host, True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host, False
        reason = self.refusal(ip)
        if reason is not None:
            raise DeliveryFailed(f"{host} is {reason}; not in the outbound allowlist", permanent=True)
        return host, True

    async def check(self, url: str) -> None:
        """Before sending: every address the host resolves to must be allowed (a literal address
        is its only one: no lookup)."""
        host, settled = self._check_url(url)
        if settled:
            return
        port = urlsplit(url).port or 443
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise DeliveryFailed(f"cannot resolve {host}: {e}") from e
        for info in infos:
            ip = ipaddress.ip_address(info[4][0])
            reason = self.refusal(ip)
            if reason is not None:
                raise DeliveryFailed(f"{host} resolves to {ip}, {reason}; not allowed", permanent=True)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`, as receivers verify it."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class _HttpChannel:
    def __init__(self, client: httpx.AsyncClient, outbound: Outbound) -> None:
        self.client = client
        self.outbound = outbound

    def payload(self, m: Message) -> dict[str, Any]:
        raise NotImplementedError

    def headers(self, m: Message, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", "Idempotency-Key": m.notification_id}

    async def send(self, message: Message) -> None:
        await self.outbound.check(message.address)
        body = orjson.dumps(self.payload(message))
        try:
            response = await self.client.post(
                message.address, content=body, headers=self.headers(message, body)
            )
        except httpx.HTTPError as e:
            raise DeliveryFailed(f"{type(e).__name__}: {e}") from e
        if response.status_code >= 300:
            permanent = response.status_code in (400, 401, 403, 404, 410, 413)
            host = urlsplit(message.address).hostname
            raise DeliveryFailed(f"HTTP {response.status_code} from {host}", permanent=permanent)


class WebhookChannel(_HttpChannel):
    """POSTs JSON signed with HMAC-SHA256; `Idempotency-Key` is the notification id."""

    def __init__(self, client: httpx.AsyncClient, outbound: Outbound, secret: str) -> None:
        super().__init__(client, outbound)
        self._secret = secret

    def payload(self, m: Message) -> dict[str, Any]:
        return {
            "notification_id": m.notification_id,
            "incident_id": m.incident_id,
            "cause": m.cause,
            "audience": m.audience,
            "subject": m.subject,
            "text": m.body,
        }

    def headers(self, m: Message, body: bytes) -> dict[str, str]:
        return {
            **super().headers(m, body),
            "X-Lynchpin-Signature": signature(self._secret, int(time.time()), body),
        }


class SlackChannel(_HttpChannel):
    """A Slack-compatible incoming webhook (also Mattermost and Rocket.Chat): `text` plus blocks."""

    def payload(self, m: Message) -> dict[str, Any]:
        return {
            "text": f"*{m.subject}*\n{m.body}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": m.subject[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": m.body[:3000]}},
            ],
        }


class TeamsChannel(_HttpChannel):
    """A Teams-compatible incoming webhook (workflows): an Adaptive Card message."""

    def payload(self, m: Message) -> dict[str, Any]:
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": m.subject, "weight": "Bolder", "size": "Medium", "wrap": True},
                {"type": "TextBlock", "text": m.body, "wrap": True},
            ],
        }
        return {
            "type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
        }


class EmailChannel:
    """Plain-text email over SMTP; the notification id is the Message-ID's local part."""

    def __init__(self, policy: EmailPolicy, password: str | None) -> None:
        self.policy = policy
        self._password = password

    async def send(self, message: Message) -> None:
        p = self.policy
        mail = EmailMessage()
        mail["From"] = p.sender
        mail["To"] = message.address
        mail["Subject"] = message.subject
        domain = p.sender.rpartition("@")[2] or "lynchpin"
        mail["Message-ID"] = f"<{message.notification_id}@{domain}>"
        mail["X-Lynchpin-Notification"] = message.notification_id
        mail["X-Lynchpin-Incident"] = message.incident_id
        mail.set_content(message.body)
        try:
            await aiosmtplib.send(
                mail,
                hostname=p.host,
                port=p.port,
                use_tls=p.use_tls,
                start_tls=p.start_tls,
                username=p.username,
                password=self._password if p.username else None,
                timeout=p.timeout.total_seconds(),
            )
        except aiosmtplib.SMTPRecipientsRefused as e:
            raise DeliveryFailed(f"recipient refused: {message.address}", permanent=True) from e
        except (aiosmtplib.SMTPException, OSError) as e:
            raise DeliveryFailed(f"SMTP {p.host}:{p.port}: {type(e).__name__}: {e}") from e

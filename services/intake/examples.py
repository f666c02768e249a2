"""Request bodies as the OpenAPI document shows them: the alert routes read the raw body themselves
(to check signatures and name bad fields), so FastAPI cannot derive these."""

from __future__ import annotations

from typing import Any


def body_of(description: str, example: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    """The request body as the OpenAPI document shows it (these routes read the raw body themselves)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media: {"schema": {"type": "object"}, "example": example}},
        }
    }


AM_EXAMPLE = {
    "version": "4",
    "groupKey": '{}/{}:{alertname="DiskFull"}',
    "status": "firing",
    "receiver": "lynchpin",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DiskFull", "service": "checkout", "severity": "critical"},
            "annotations": {"summary": "Disk almost full on db-1"},
            "startsAt": "2026-11-22T11:38:27.027Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "19b741f6086c42b2",
        }
    ],
}
PD_EXAMPLE = {
    "routing_key": "lpk_...",
    "event_action": "trigger",
    "dedup_key": "srv01/HTTP",
    "payload": {"summary": "Checkout latency high", "source": "web-2", "severity": "warning"},
}
DATADOG_EXAMPLE = {
    "cycle_key": "$ALERT_CYCLE_KEY",
    "transition": "$ALERT_TRANSITION",
    "title": "$EVENT_TITLE",
}
CE_EXAMPLE = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "//probes/eu",
    "type": "com.example.alert.fired",
    "data": {"title": "Probe failing", "service": "edge", "severity": "critical"},
}

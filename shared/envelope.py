"""The envelope every stored or published event travels in, CloudEvents-compatible."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from shared.events import Event, parse_event

SPEC_VERSION = "1.0"
TYPE_PREFIX = "dev.lynchpin."

Checkpoint = tuple[int, int]
"""Where a follower of a store's global log stands: (transaction order, global position)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    stream: str
    version: int
    position: int
    event: Event
    recorded_at: datetime
    source: str
    correlation_id: str
    causation_id: str | None = None
    schema_version: int = 1
    tx: int = 0

    @property
    def type(self) -> str:
        return self.event.type

    @property
    def occurred_at(self) -> datetime:
        return self.event.occurred_at

    @property
    def partition_key(self) -> str:
        return self.event.partition_key or self.stream

    @property
    def checkpoint(self) -> Checkpoint:
        return (self.tx, self.position)

    def to_cloudevent(self) -> dict[str, Any]:
        """Structured-mode CloudEvent; extensions carry the store's own attributes."""
        return {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": f"lynchpin/{self.source}",
            "type": TYPE_PREFIX + self.type,
            "subject": self.stream,
            "time": self.occurred_at.isoformat(),
            "datacontenttype": "application/json",
            "partitionkey": self.partition_key,
            "correlationid": self.correlation_id,
            "causationid": self.causation_id or "",
            "streamversion": self.version,
            "position": self.position,
            "recordedat": self.recorded_at.isoformat(),
            "schemaversion": self.schema_version,
            "data": self.event.model_dump(mode="json"),
        }

    @classmethod
    def from_cloudevent(cls, ce: dict[str, Any]) -> Envelope:
        return cls(
            id=ce["id"],
            stream=ce["subject"],
            version=int(ce["streamversion"]),
            position=int(ce["position"]),
            event=parse_event(dict(ce["data"]), int(ce.get("schemaversion", 1))),
            recorded_at=datetime.fromisoformat(ce["recordedat"]),
            source=str(ce["source"]).removeprefix("lynchpin/"),
            correlation_id=ce["correlationid"],
            causation_id=ce.get("causationid") or None,
            schema_version=int(ce.get("schemaversion", 1)),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_cloudevent())

    @classmethod
    def from_json(cls, raw: bytes) -> Envelope:
        return cls.from_cloudevent(orjson.loads(raw))

"""Buses: embedded (store subscriptions) or Kafka, chosen by settings."""

from __future__ import annotations

from collections.abc import Sequence

from shared.bus.base import Bus, Handler, tracking_name
from shared.settings import Settings

__all__ = ["Bus", "Handler", "open_bus", "tracking_name"]


def open_bus(settings: Settings, *, sources: Sequence[str]) -> Bus:
    """Kafka when `kafka_bootstrap` is set; otherwise follow the sources' own stores directly."""
    if settings.kafka_bootstrap is not None:
        from shared.bus.kafka import KafkaBus

        namespace = settings.kafka_namespace
        return KafkaBus(settings.kafka_bootstrap, group_prefix=namespace, namespace=namespace)
    from shared.bus.embedded import EmbeddedBus
    from shared.store import open_store

    return EmbeddedBus(
        {s: open_store(settings.store_url_for(s), source=s) for s in sources}, owns_sources=True
    )

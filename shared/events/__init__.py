"""The event catalogue: every fact any service records, as frozen pydantic models in one union.

Names are past tense. Each event carries `occurred_at`, the domain time (from the sender where it
has one). Events that concern an incident carry `incident_id`, which is also their partition key.
Each producing service's events live in a module of their own, listed in its `EVENTS`; this package
re-exports them all, so `from shared.events import IncidentOpened` works wherever you are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from shared.events import auth, common, comms, intake, triage
from shared.events.auth import *
from shared.events.base import *
from shared.events.base import Event
from shared.events.common import *
from shared.events.comms import *
from shared.events.intake import *
from shared.events.triage import *

PRODUCERS: Mapping[str, tuple[type[Event], ...]] = {
    "intake": (*intake.EVENTS, *auth.EVENTS),
    "triage": triage.EVENTS,
    "comms": comms.EVENTS,
}
"""Which service records which events; `common.EVENTS` may be recorded by any of them."""

ALL_EVENTS: tuple[type[Event], ...] = (
    *intake.EVENTS,
    *auth.EVENTS,
    *triage.EVENTS,
    *comms.EVENTS,
    *common.EVENTS,
)

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[ALL_EVENTS], Field(discriminator="type")]  # type: ignore[arg-type]  # noqa: UP007
)

# Upcasters turn an old stored shape into the current one: (type, stored schema version) -> function.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def event_types() -> dict[str, type[Event]]:
    """Every event class in the catalogue, by type name."""
    return {cls.model_fields["type"].default: cls for cls in ALL_EVENTS}


def parse_event(data: dict[str, Any], schema_version: int = 1) -> Event:
    """Parse stored event data (with its `type`), upcasting older schema versions first."""
    kind = data.get("type")
    version = schema_version
    while (upcast := UPCASTERS.get((str(kind), version))) is not None:
        data = upcast(data)
        version += 1
    event: Event = EVENT_ADAPTER.validate_python(data)
    return event

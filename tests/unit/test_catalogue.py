"""The published event catalogue (docs/events.md, docs/asyncapi.json) matches the models."""

from __future__ import annotations

from pathlib import Path

from shared.catalogue import ANY_SERVICE, PRODUCING, asyncapi, outputs
from shared.events import event_types

ROOT = Path(__file__).resolve().parents[2]


def test_committed_catalogue_is_not_stale() -> None:
    for path, text in outputs(ROOT).items():
        assert path.read_text() == text, (
            f"{path.relative_to(ROOT)} is stale: run `python -m shared.catalogue`"
        )


def test_every_event_type_has_a_producer() -> None:
    produced = {n for names in PRODUCING.values() for n in names} | set(ANY_SERVICE)
    assert produced == set(event_types())


def test_asyncapi_document_is_version_3_with_a_channel_per_producing_service() -> None:
    doc = asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert {c["address"] for c in doc["channels"].values()} == {f"lynchpin.{s}.events" for s in PRODUCING}
    for message in doc["components"]["messages"].values():
        ref = message["payload"]["$ref"].rsplit("/", 1)[-1]
        assert ref in doc["components"]["schemas"]

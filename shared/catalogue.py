"""Publish the event catalogue: an AsyncAPI 3 document and docs/events.md, generated from the models.

`python -m shared.catalogue` rewrites both; a test fails when the committed copies are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from shared.events import PRODUCERS, common, event_types

PRODUCING = {service: [cls.__name__ for cls in events] for service, events in PRODUCERS.items()}
ANY_SERVICE = [cls.__name__ for cls in common.EVENTS]

ENVELOPE = {
    "specversion": "CloudEvents spec version, `1.0`",
    "id": "event id (UUID), unique in the store",
    "source": "`lynchpin/<service>`: the producing service",
    "type": "`dev.lynchpin.<EventType>`",
    "subject": "the stream, e.g. `incident-<id>`",
    "time": "occurred_at: the domain time, from the sender where it has one",
    "partitionkey": "the incident id (Kafka record key)",
    "correlationid": "the incident id, or what started the chain",
    "causationid": "the id of the event this one reacts to",
    "streamversion": "the event's version in its stream (1, 2, ...)",
    "position": "the store's global position",
    "recordedat": "when the store recorded it",
    "schemaversion": "the data's schema version (older versions are upcast on read)",
    "data": "the event, below",
}


def asyncapi() -> dict[str, Any]:
    types = event_types()
    schemas = {
        name: cls.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, cls in types.items()
    }
    defs: dict[str, Any] = {}
    for schema in schemas.values():
        defs.update(schema.pop("$defs", {}))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for service, names in PRODUCING.items():
        names = names + ANY_SERVICE
        channel = f"lynchpin.{service}.events"
        channels[service] = {
            "address": channel,
            "description": f"Every event {service} records, relayed from its store; key = incident id.",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        operations[f"{service}.publish"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{service}"},
            "messages": [{"$ref": f"#/channels/{service}/messages/{n}"} for n in names],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Lynchpin events",
            "version": "1",
            "description": "Events the four services exchange, as CloudEvents (structured JSON) on Kafka.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {
                name: {
                    "name": name,
                    "title": name,
                    "summary": (cls.__doc__ or name).strip().splitlines()[0],
                    "payload": {"$ref": f"#/components/schemas/{name}"},
                }
                for name, cls in types.items()
            },
            "schemas": {**defs, **schemas},
        },
    }


def markdown() -> str:
    types = event_types()
    lines = [
        "# Events",
        "",
        "Generated from `shared/events.py` by `python -m shared.catalogue`; do not edit.",
        "The same catalogue as an AsyncAPI 3 document: [asyncapi.json](asyncapi.json).",
        "",
        "## Envelope (CloudEvents 1.0, structured JSON)",
        "",
        "| attribute | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {v} |" for k, v in ENVELOPE.items()]
    for service, names in [*PRODUCING.items(), ("every service", ANY_SERVICE)]:
        lines += ["", f"## Recorded by {service}", ""]
        for name in names:
            cls = types[name]
            doc = " ".join((cls.__doc__ or "").split())
            lines += [f"### {name}", ""] + ([doc, ""] if doc else [])
            lines += ["| field | type | required |", "|---|---|---|"]
            schema = cls.model_json_schema()
            required = set(schema.get("required", []))
            for field, spec in schema["properties"].items():
                if field == "type":
                    continue
                kind = (
                    spec.get("type")
                    or spec.get("$ref", "").rsplit("/", 1)[-1]
                    or " | ".join(
                        str(a.get("type") or a.get("$ref", "").rsplit("/", 1)[-1])
                        for a in spec.get("anyOf", [])
                    )
                )
                fmt = spec.get("format")
                lines.append(
                    f"| `{field}` | {kind}{f' ({fmt})' if fmt else ''} "
                    f"| {'yes' if field in required else ''} |"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def outputs(root: Path) -> dict[Path, str]:
    return {
        root / "docs" / "asyncapi.json": orjson.dumps(
            asyncapi(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        ).decode()
        + "\n",
        root / "docs" / "events.md": markdown(),
    }


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for path, text in outputs(root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

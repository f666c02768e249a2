"""Fifty copies of one alert arriving together open exactly one incident, in one process or two."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path

from services.intake import domain
from services.intake.handlers import Intake, incident_stream
from shared.events import AlertStatus, Severity
from shared.store import open_store

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def alert() -> domain.Alert:
    return domain.Alert(
        key="am:abc",
        dedup_key="abc",
        title="CPU",
        service="api",
        severity=Severity.HIGH,
        status=AlertStatus.FIRING,
        source="canonical",
    )


def ids(prefix: str) -> object:
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter)}"


async def test_fifty_concurrent_copies_open_one_incident(tmp_path: Path) -> None:
    async with open_store(f"sqlite://{tmp_path / 'i.db'}", source="intake") as store:
        intake = Intake(store, lambda: NOW, ids("a"))  # type: ignore[arg-type]
        decisions = await asyncio.gather(*(intake.receive(alert()) for _ in range(50)))
        assert len({d.incident_id for d in decisions}) == 1
        assert sum(d.opened for d in decisions) == 1
        history = await store.read(incident_stream(decisions[0].incident_id))
        assert [e.type for e in history].count("AlertRepeated") == 49
        assert getattr(history[-1].event, "count") == 50


async def test_two_intake_instances_on_one_store_still_open_one_incident(tmp_path: Path) -> None:
    async with open_store(f"sqlite://{tmp_path / 'i.db'}", source="intake") as store:
        first = Intake(store, lambda: NOW, ids("a"))  # type: ignore[arg-type]
        second = Intake(store, lambda: NOW, ids("b"))  # type: ignore[arg-type]
        decisions = await asyncio.gather(*(i.receive(alert()) for _ in range(25) for i in (first, second)))
        assert len({d.incident_id for d in decisions}) == 1
        assert sum(d.opened for d in decisions) == 1
        assert len(await store.read("alert-am:abc")) == 1


def grouped(key: str) -> domain.Alert:
    return domain.Alert(
        key=f"am:{key}",
        dedup_key=key,
        title="CPU",
        service="api",
        severity=Severity.HIGH,
        status=AlertStatus.FIRING,
        source="alertmanager",
        group_key="api|g",
    )


async def test_fifty_different_alerts_of_one_group_from_two_instances_open_one_incident(
    tmp_path: Path,
) -> None:
    async with open_store(f"sqlite://{tmp_path / 'i.db'}", source="intake") as store:
        first = Intake(store, lambda: NOW, ids("a"))  # type: ignore[arg-type]
        second = Intake(store, lambda: NOW, ids("b"))  # type: ignore[arg-type]
        decisions = await asyncio.gather(
            *(i.receive(grouped(f"k{n}-{x}")) for n in range(25) for x, i in enumerate((first, second)))
        )
        assert len({d.incident_id for d in decisions}) == 1
        assert sum(d.opened for d in decisions) == 1
        assert sorted({d.outcome for d in decisions}) == ["attached", "opened"]
        assert len(await store.read("group-api|g")) == 1

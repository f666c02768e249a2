"""Fault-test wiring: the size (LYNCHPIN_FAULTS_SCALE), servers owned by one test, the figures summary.

`make test` runs the fault tests reduced (scale 0.2 unless LYNCHPIN_FAULTS_SCALE says otherwise); `make
faults` runs them at full size (scale 1). The figures of every run are printed at the end of the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from shared.testing.servers import KafkaServer, PostgresServer

FIGURES: list[str] = []


@dataclass(frozen=True)
class Scale:
    factor: float

    def n(self, full: int, least: int = 1) -> int:
        return max(least, round(full * self.factor))

    @property
    def full(self) -> bool:
        return self.factor >= 1


@pytest.fixture
def scale() -> Scale:
    return Scale(float(os.environ.get("LYNCHPIN_FAULTS_SCALE", "0.2")))


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test alone: it is stopped, killed and restarted here."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def own_kafka() -> Iterator[KafkaServer]:
    """A Kafka broker for this test alone."""
    with KafkaServer() as server:
        yield server


@pytest.fixture
def figures() -> list[str]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault-test figures")
        for line in FIGURES:
            terminalreporter.write_line(line)

"""Pytest fixtures for the real servers (registered from tests/conftest.py via `pytest_plugins`).

- `postgres_server` (session): a PostgresServer started once per session, or ExternalPostgres when
  LYNCHPIN_TEST_PG_DSN is set. `.dsn` points at the `lynchpin` database.
- `kafka_server` (session): a KafkaServer started once per session, or ExternalKafka when LYNCHPIN_TEST_KAFKA
  (host:port) is set. `.bootstrap`, `await .create_topics([...], partitions=...)`.
- `pg_dsn` (function): DSN of a brand-new database `t_<uuid hex>` on that server, dropped after the test.

The fixtures are synchronous on purpose: they work with any event-loop scope the tests choose.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from shared.testing.servers import ExternalKafka, ExternalPostgres, KafkaServer, PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | ExternalPostgres]:
    external = os.environ.get("LYNCHPIN_TEST_PG_DSN")
    if external:
        yield ExternalPostgres(external)
        return
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[KafkaServer | ExternalKafka]:
    external = os.environ.get("LYNCHPIN_TEST_KAFKA")
    if external:
        yield ExternalKafka(external)
        return
    with KafkaServer() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer | ExternalPostgres) -> Iterator[str]:
    if not postgres_server.running:
        postgres_server.start()  # an earlier (fault) test stopped or killed the shared server
    name = f"t_{uuid.uuid4().hex}"
    dsn = postgres_server.create_database(name)
    try:
        yield dsn
    finally:
        # A test that left the server down has nothing to drop: its data folder is deleted at session end.
        if postgres_server.running:
            postgres_server.drop_database(name)

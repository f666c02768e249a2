"""The real servers the test suite runs on answer: PostgreSQL (asyncpg) and Kafka (aiokafka)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.testing.servers import ExternalKafka, ExternalPostgres, KafkaServer, PostgresServer


@pytest.mark.postgres
async def test_postgres_round_trip(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        version = await conn.fetchval("SELECT version()")
        assert version.startswith("PostgreSQL ")
        assert await conn.fetchval("SELECT current_database()") == pg_dsn.rsplit("/", 1)[1]
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        await conn.execute("INSERT INTO t VALUES (1, 'one')")
        assert await conn.fetchval("SELECT v FROM t WHERE id = 1") == "one"
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_lynchpin_database_exists(postgres_server: PostgresServer | ExternalPostgres) -> None:
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await conn.fetchval("SELECT current_database()") == "lynchpin"
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_postgres_survives_sigkill() -> None:
    """A committed row survives SIGKILL of the postmaster and a restart (own server, not the shared one)."""
    with PostgresServer() as server:
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute("CREATE TABLE durable (id int PRIMARY KEY)")
            await conn.execute("INSERT INTO durable VALUES (7)")
        finally:
            await conn.close()
        port = server.port
        server.kill()
        assert server.pid is None
        server.restart()
        assert server.port == port
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("SELECT id FROM durable") == 7
        finally:
            await conn.close()


@pytest.mark.kafka
async def test_kafka_produce_consume_round_trip(kafka_server: KafkaServer | ExternalKafka) -> None:
    topic = f"test-servers-{uuid.uuid4().hex[:12]}"
    await kafka_server.create_topics([topic], partitions=3)
    await kafka_server.create_topics([topic], partitions=3)  # already exists (error 36) is fine

    producer = AIOKafkaProducer(bootstrap_servers=kafka_server.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, key=b"k", value=f"m{i}".encode()) for i in range(5)]
    finally:
        await producer.stop()
    assert len({md.partition for md in sent}) == 1  # one key, one partition
    assert [md.offset for md in sent] == list(range(5))

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_server.bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got: list[bytes] = []
        while len(got) < 5:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"no records within 10 s, got {got}"
            for records in batches.values():
                got.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert got == [f"m{i}".encode() for i in range(5)]

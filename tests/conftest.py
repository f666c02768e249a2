"""Test wiring: real servers (PostgreSQL, Kafka) come from tests.servers_fixtures."""

pytest_plugins = ["tests.servers_fixtures"]

"""Event stores: pick a backend from a URL."""

from __future__ import annotations

from shared.store.base import (
    START,
    Committed,
    ConcurrencyError,
    EventStore,
    StoreError,
    StoreUnavailable,
    Tracking,
    Write,
    append,
)

__all__ = [
    "START",
    "Committed",
    "ConcurrencyError",
    "EventStore",
    "StoreError",
    "StoreUnavailable",
    "Tracking",
    "Write",
    "append",
    "open_store",
    "sqlite_path",
]


def sqlite_path(url: str) -> str:
    """The file a `sqlite:` URL names (`sqlite:///abs/file.db` or `sqlite:relative/file.db`)."""
    return url.removeprefix("sqlite:").removeprefix("//")


def open_store(url: str, *, source: str) -> EventStore:
    """`memory://`, `sqlite:///abs/file.db` or `sqlite:relative/file.db`, `postgresql://...` or `kurrentdb://...`."""
    if url.startswith("memory:"):
        from shared.store.memory import MemoryStore

        return MemoryStore(source=source)
    if url.startswith("sqlite:"):
        from shared.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url), source=source)
    if url.startswith(("postgresql:", "postgres:")):
        from shared.store.postgres import PostgresStore

        return PostgresStore(url, source=source)
    if url.startswith(("kurrentdb:", "esdb:")):
        from shared.store.kurrent import KurrentStore

        return KurrentStore(url, source=source)
    raise ValueError(f"unknown store URL scheme: {url!r}")

"""Store adapters, chosen by URL: `sqlite:///path` or `cassandra://host:9042/keyspace`."""

from __future__ import annotations

from typing import Any

from services.common.errors import ConfigError
from services.common.store.port import Store

__all__ = ["Store", "store_from_url"]


def store_from_url(url: str, **options: Any) -> Store:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "sqlite":
        from services.common.store.sqlite import SqliteStore

        return SqliteStore(url, **options)
    if scheme == "cassandra":
        from services.common.store.cassandra import CassandraStore

        return CassandraStore(url, **options)
    raise ConfigError(f"unknown store URL scheme in {url!r} (expected sqlite:// or cassandra://)")

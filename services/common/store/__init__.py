"""Store adapters, chosen by URL: `sqlite:///path` or `cassandra://host:9042/keyspace`."""

from __future__ import annotations

from typing import Any

from services.common.errors import ConfigError
from services.common.store.port import Store

__all__ = ["Store", "store_from_url"]


def store_from_url(url: str, **options: Any) -> Store:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "sqlite":
        from services.common.store.sqlite import SqliteStore  # type: ignore[import-not-found]

        return SqliteStore(url, **options)  # type: ignore[no-any-return]
    if scheme == "cassandra":
        from services.common.store.cassandra import CassandraStore  # type: ignore[import-not-found]

        return CassandraStore(url, **options)  # type: ignore[no-any-return]
    raise ConfigError(f"unknown store URL scheme in {url!r} (expected sqlite:// or cassandra://)")

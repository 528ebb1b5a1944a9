"""The full in-memory store: the real `SqliteStore` on a database in memory.

Tests that need a store use this one rather than a hand-written fake: it is the adapter
`csms run` uses, and it passes the same store contract suite as SQLite on disk and
Cassandra (tests/contract, backend "sqlite-memory"). Nothing to clean up, no files.

- `memory_store()`: a store on its own private database (`sqlite:///:memory:`), gone when
  the store closes. Enough for most tests: one store, one process.
- `SharedMemoryDatabase`: one in-memory database that several stores open at once, and
  that survives a store closing and another opening (SQLite's `memdb` VFS; the database
  lives while any connection holds it, so this object holds one until `close()`). For
  tests about two processes on one database, or about reopening.
"""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import asynccontextmanager
from types import TracebackType
from typing import AsyncIterator

from services.common.store.sqlite import SqliteStore
from services.common.timeutil import Clock

__all__ = ["MEMORY_URL", "SharedMemoryDatabase", "memory_store", "opened"]

MEMORY_URL = "sqlite:///:memory:"


def memory_store(*, clock: Clock | None = None) -> SqliteStore:
    """A store on a private in-memory database (not started)."""
    return SqliteStore(MEMORY_URL, clock=clock)


class SharedMemoryDatabase:
    """An in-memory database with a name, open by several stores; `url` is for `SqliteStore`."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"csms-test-{uuid.uuid4().hex}"
        self.uri = f"file:/{self.name}?vfs=memdb"
        self.url = f"sqlite:///{self.uri}"
        self._keeper: sqlite3.Connection | None = sqlite3.connect(self.uri, uri=True)

    def store(self, *, clock: Clock | None = None) -> SqliteStore:
        """Another store on this database (not started)."""
        if self._keeper is None:
            raise RuntimeError(f"{self.name} is closed: its data is gone")
        return SqliteStore(self.url, clock=clock)

    def close(self) -> None:
        """Lets the database go once the stores on it have closed."""
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    def __enter__(self) -> SharedMemoryDatabase:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@asynccontextmanager
async def opened(store: SqliteStore | None = None) -> AsyncIterator[SqliteStore]:
    """`async with opened() as store:` a started, migrated store (in memory by default), closed after."""
    s = store if store is not None else memory_store()
    await s.start()
    try:
        await s.migrate()
        yield s
    finally:
        await s.close()

"""The one aiosqlite connection a `SqliteStore` runs on, and how its errors map.

Every port of the store (stations.py, tokens.py, ... each a mixin over this class) sends
its statements through `_fetch`/`_write`, or through `_session` when it needs several in
one transaction; all of them count `ops` per statement here.

One connection per store, in WAL mode with synchronous=NORMAL and a busy timeout.
Every operation runs under one asyncio.Lock, so a multi-statement transaction
(`BEGIN IMMEDIATE ... COMMIT`) never interleaves with another coroutine's statements
on the shared connection, and BEGIN IMMEDIATE also serializes against other
processes using the same file. With `durable`, a transaction commits with
synchronous=FULL (transaction ids: an id handed to a charger must survive a power loss).
The database file is private (0600, `private_files`): it holds credentials.

Errors: SQLite failures that mean "the database did not answer" (busy/locked, I/O,
disk full, cannot open, out of memory) raise `StoreUnavailable` (retriable) and make
`healthy` False until an operation succeeds again; constraint violations raise
`ConflictError`; anything else `StoreError`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import time
from collections import Counter
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiosqlite

from services.common.errors import ConfigError, ConflictError, StoreError, StoreUnavailable
from services.common.store.metrics import OpKey, count_op, statement_ops, time_op
from services.common.timeutil import Clock, to_iso_us, utcnow

__all__ = ["SqliteConnection", "parse_sqlite_url", "private_files", "time_in", "time_out"]

log = logging.getLogger("csms.store.sqlite")

UTC = timezone.utc
_URL_PREFIX = "sqlite:///"
# Primary result codes meaning "the database is not available (right now)".
_UNAVAILABLE_CODES = frozenset({
    5,   # SQLITE_BUSY
    6,   # SQLITE_LOCKED
    7,   # SQLITE_NOMEM
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
})
_CLOSED_MESSAGES = ("Connection closed", "no active connection")


def parse_sqlite_url(url: str) -> str:
    """`sqlite:///./a.db` -> `./a.db`, `sqlite:////abs/a.db` -> `/abs/a.db`, `sqlite:///:memory:`;
    `sqlite:///file:...` keeps its query (an SQLite URI)."""
    if not url.startswith(_URL_PREFIX):
        raise ConfigError(f"not a SQLite URL: {url!r} (expected sqlite:///path or sqlite:///:memory:)")
    path = url[len(_URL_PREFIX):]
    if not path.startswith("file:"):
        path = path.split("?", 1)[0]
    if not path:
        raise ConfigError(f"SQLite URL without a path: {url!r}")
    return path


def time_out(dt: datetime | None) -> str | None:
    """Stored form of a datetime: fixed-width UTC text, so text order is time order
    (naive datetimes are taken as UTC)."""
    return None if dt is None else to_iso_us(dt)


def time_in(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=UTC)


PRIVATE_MODE = 0o600
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def private_files(path: str) -> None:
    """The database holds password hashes, API key HMACs and certificates: its file is
    created 0600 before SQLite opens it (SQLite gives the -wal/-shm files it creates the
    database file's mode), and an existing file, or side file, readable by group or others
    is tightened to 0600. Failing to do so (another owner, a read-only mount) is logged,
    not fatal: opening then fails, or not, exactly as before."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE)
    except FileExistsError:
        pass
    except OSError as e:
        log.warning("sqlite store %s: cannot create the file 0600: %s", path, e)
    else:
        os.close(fd)
    for suffix in _SIDE_FILES:
        name = path + suffix
        try:
            mode = stat.S_IMODE(os.stat(name).st_mode)
            if mode & 0o077:
                os.chmod(name, mode & 0o700)
                log.info("sqlite store %s: file mode %o tightened to %o", name, mode, mode & 0o700)
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("sqlite store %s: cannot make the file private: %s", name, e)


async def _quietly(db: aiosqlite.Connection, sql: str) -> bool:
    """Clean-up statement on an error path: never masks the original exception."""
    try:
        await db.execute(sql)
        return True
    except (sqlite3.Error, ValueError):
        return False


class SqliteConnection:
    """Lifecycle, locking, counting and error mapping of the store's connection."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000, clock: Clock | None = None) -> None:
        self.url = url
        self.path = parse_sqlite_url(url)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._clock: Clock = clock or utcnow
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._healthy = False
        self._dirty = False  # a caller was interrupted mid-transaction; roll back before reuse
        # (op, table) -> statements sent; see services/common/store/metrics.py
        self.ops: Counter[OpKey] = Counter()
        self._timed: list[OpKey] = []  # counted in the current session: timed when it ends

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:" and not self.path.startswith("file:"):
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreUnavailable(f"sqlite: cannot create the directory of {self.path}: {e}") from e
            private_files(self.path)
        pending = aiosqlite.connect(
            self.path, isolation_level=None, timeout=self._busy_timeout_ms / 1000, uri=self.path.startswith("file:")
        )
        try:
            db = await pending
        except sqlite3.Error as e:
            # aiosqlite stops its worker thread without awaiting it; let it finish while the
            # loop is alive, or it reports to a closed loop later.
            worker = getattr(pending, "_thread", None)
            if worker is not None:
                await asyncio.to_thread(worker.join, 5.0)
            raise self._map(e, "open") from e
        try:
            await db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as e:
            await db.close()
            raise self._map(e, "open") from e
        self._db = db
        self._dirty = False
        self._healthy = True
        log.info("sqlite store opened at %s", self.path)

    async def close(self) -> None:
        db = self._db
        if db is None:
            return
        async with self._lock:
            self._db = None
            self._healthy = False
            try:
                await db.close()
            except (sqlite3.Error, ValueError):
                log.warning("closing sqlite store %s failed", self.path, exc_info=True)

    @property
    def healthy(self) -> bool:
        return self._db is not None and self._healthy

    # -- statements ----------------------------------------------------------
    def _count(self, sql: str) -> None:
        for key in statement_ops(sql):
            count_op(self.ops, key)
            self._timed.append(key)

    async def _fetch(self, op: str, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        async with self._session(op) as db:
            self._count(sql)
            return list(await db.execute_fetchall(sql, tuple(params)))

    async def _write(self, op: str, sql: str, params: Iterable[Any] = ()) -> int:
        async with self._session(op) as db:
            self._count(sql)
            cursor = await db.execute(sql, tuple(params))
            count = cursor.rowcount
            await cursor.close()
            return count

    @asynccontextmanager
    async def _session(
        self, op: str, *, immediate: bool = False, durable: bool = False
    ) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection; with `immediate`, inside BEGIN IMMEDIATE ... COMMIT."""
        async with self._lock:
            db = self._db
            if db is None:
                raise StoreUnavailable(f"sqlite {op}: store is not started (or closed)")
            timed = self._timed = []
            started = time.perf_counter()
            try:
                if self._dirty:
                    await db.execute("SELECT 1")  # drain statements queued by the interrupted caller
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    self._dirty = False
                if durable:
                    await db.execute("PRAGMA synchronous = FULL")
                try:
                    if immediate:
                        await db.execute("BEGIN IMMEDIATE")
                    try:
                        yield db
                        if immediate:
                            await db.execute("COMMIT")
                    except BaseException:
                        self._dirty = True
                        if immediate and await _quietly(db, "ROLLBACK"):
                            self._dirty = False
                        raise
                finally:
                    if durable and not await _quietly(db, "PRAGMA synchronous = NORMAL"):
                        self._dirty = True
            except sqlite3.Error as e:
                raise self._map(e, op) from e
            except ValueError as e:
                if str(e) in _CLOSED_MESSAGES:
                    self._healthy = False
                    raise StoreUnavailable(f"sqlite {op}: connection closed") from e
                raise
            finally:
                if timed:  # csms_store_op_seconds: each statement its share of the session
                    share = (time.perf_counter() - started) / len(timed)
                    for key in timed:
                        time_op(key, share)
            self._dirty = False
            self._healthy = True

    def _map(self, error: sqlite3.Error, op: str) -> StoreError:
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None and (code & 0xFF) in _UNAVAILABLE_CODES:
            self._healthy = False
            log.warning("sqlite store %s unavailable during %s: %s", self.path, op, error)
            return StoreUnavailable(f"sqlite {op}: {error}")
        if isinstance(error, sqlite3.IntegrityError):
            return ConflictError(f"sqlite {op}: {error}")
        if "no such table" in str(error):
            return StoreError(f"sqlite {op}: {error} (schema missing: run `csms migrate`)")
        return StoreError(f"sqlite {op}: {error}")

"""`sqlite:///path`: the store of embedded mode (`csms run`), on aiosqlite.

URLs: `sqlite:///./csms.db` (relative), `sqlite:////abs/path.db` (absolute),
`sqlite:///:memory:` (one private in-memory database per store).

One connection per store, in WAL mode with synchronous=NORMAL and a busy timeout.
Every operation runs under one asyncio.Lock, so a multi-statement transaction
(`BEGIN IMMEDIATE ... COMMIT`) never interleaves with another coroutine's statements
on the shared connection, and BEGIN IMMEDIATE also serializes against other
processes using the same file. Transaction-id allocation commits with
synchronous=FULL: an id handed to a charger must survive a power loss.

Batches (ADR 015): `put_docs` is one transaction running one upsert statement over the
documents; `get_docs` one query (the ids as one JSON array parameter); `append_samples` one
statement over a JSON array of rows. `ops` counts statements per (op, table)
(services/common/store/metrics.py): an `executemany` counts once.

Errors: SQLite failures that mean "the database did not answer" (busy/locked, I/O,
disk full, cannot open, out of memory) raise `StoreUnavailable` (retriable) and make
`healthy` False until an operation succeeds again; constraint violations raise
`ConflictError`; anything else `StoreError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import math
import re
import sqlite3
from collections import Counter
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Sequence

import aiosqlite
import orjson

from services.common.errors import ConfigError, ConflictError, StoreError, StoreUnavailable
from services.common.store.metrics import OpKey, count_op
from services.common.store.port import DocWrite, MeterRow, Owner, Station, Token
from services.common.store.sqlite_schema import BOOKKEEPING, MIGRATIONS, TX_ID_COUNTER
from services.common.timeutil import Clock, utcnow

__all__ = ["SqliteStore", "parse_sqlite_url", "MAX_TRANSACTION_ID"]

log = logging.getLogger("csms.store.sqlite")

UTC = timezone.utc
MAX_TRANSACTION_ID = 2**31 - 1  # OCPP 1.6 transactionId is a (signed) int32
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

_STATION_COLUMNS = (
    "id, password_hash, password_fingerprint, site_id, tariff_id, enabled, created_at, "
    "max_current_a, phases, priority"
)
_TOKEN_COLUMNS = "id_token, status, expires_at, group_id, updated_at"

# -- ADR 015 statements (fixed text: no per-call string building) ---------------
_APPEND_SAMPLES = """INSERT INTO meter_samples
    (session_id, ts, measurand, phase, value, unit, raw_value, station_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (session_id, ts, measurand, phase) DO UPDATE SET
        value = excluded.value, unit = excluded.unit, raw_value = excluded.raw_value,
        station_time = excluded.station_time"""
# The same upsert as ONE statement over a JSON array of rows (one statement is atomic on its
# own: no BEGIN/COMMIT round trips to aiosqlite's thread; measured about half the CPU of
# executemany in a transaction for a meter event's few rows). Floats round-trip exactly
# through orjson and SQLite's JSON parser; a non-finite value (not JSON) takes _APPEND_SAMPLES.
_APPEND_SAMPLES_JSON = """INSERT INTO meter_samples
    (session_id, ts, measurand, phase, value, unit, raw_value, station_time)
    SELECT ?, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),
        json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'),
        json_extract(j.value, '$[6]')
    FROM json_each(?) AS j WHERE true
    ON CONFLICT (session_id, ts, measurand, phase) DO UPDATE SET
        value = excluded.value, unit = excluded.unit, raw_value = excluded.raw_value,
        station_time = excluded.station_time"""
_SAMPLE_COLUMNS = "ts, measurand, phase, value, unit, raw_value, station_time"
# LIMIT -1 is "no limit" in SQLite.
_READ_SAMPLES = (
    f"SELECT {_SAMPLE_COLUMNS} FROM meter_samples WHERE session_id = ? ORDER BY ts, measurand, phase LIMIT ?"
)
_READ_SAMPLES_AFTER = (
    f"SELECT {_SAMPLE_COLUMNS} FROM meter_samples WHERE session_id = ? AND (ts, measurand, phase) > (?, ?, ?) "
    "ORDER BY ts, measurand, phase LIMIT ?"
)
# One statement for versioned and unversioned documents: a versioned write lands only over
# no row, an unversioned row or a smaller version; an unversioned one always lands and keeps
# the stored version (the highest ever written), exactly like put_doc.
_PUT_DOCS = """INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (kind, id) DO UPDATE SET
        parent = excluded.parent, version = COALESCE(excluded.version, docs.version),
        updated_at = excluded.updated_at, body = excluded.body
    WHERE excluded.version IS NULL OR docs.version IS NULL OR docs.version < excluded.version"""
_GET_DOCS = "SELECT id, body FROM docs WHERE kind = ? AND id IN (SELECT value FROM json_each(?))"
_PAGE_KIND = "SELECT id, body FROM docs WHERE kind = ? ORDER BY id LIMIT ?"
_PAGE_KIND_AFTER = "SELECT id, body FROM docs WHERE kind = ? AND id > ? ORDER BY id LIMIT ?"
_PAGE_PARENT = "SELECT id, body FROM docs WHERE kind = ? AND parent = ? ORDER BY id LIMIT ?"
_PAGE_PARENT_AFTER = "SELECT id, body FROM docs WHERE kind = ? AND parent = ? AND id > ? ORDER BY id LIMIT ?"

_SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def _op_key(sql: str) -> OpKey:
    """("read" | "write", first table named) of a statement, for the operation counters."""
    match = _SQL_TABLE.search(sql)
    op = "read" if sql.lstrip()[:6].upper() == "SELECT" else "write"
    return op, match.group(1) if match else "?"


def parse_sqlite_url(url: str) -> str:
    """`sqlite:///./a.db` -> `./a.db`, `sqlite:////abs/a.db` -> `/abs/a.db`, `sqlite:///:memory:`."""
    if not url.startswith(_URL_PREFIX):
        raise ConfigError(f"not a SQLite URL: {url!r} (expected sqlite:///path or sqlite:///:memory:)")
    path = url[len(_URL_PREFIX):].split("?", 1)[0]
    if not path:
        raise ConfigError(f"SQLite URL without a path: {url!r}")
    return path


def _dt_out(dt: datetime | None) -> str | None:
    """Fixed-width UTC text; naive datetimes are taken as UTC."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _dt_in(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=UTC)


def _station(row: sqlite3.Row | tuple[Any, ...]) -> Station:
    return Station(
        id=row[0],
        password_hash=row[1],
        password_fingerprint=row[2],
        site_id=row[3],
        tariff_id=row[4],
        enabled=bool(row[5]),
        created_at=_dt_in(row[6]),
        max_current_a=row[7],
        phases=row[8],
        priority=row[9],
    )


def _token(row: sqlite3.Row | tuple[Any, ...]) -> Token:
    return Token(id_token=row[0], status=row[1], expires_at=_dt_in(row[2]), group_id=row[3], updated_at=_dt_in(row[4]))


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(["id", last_id])).decode("ascii")


def _decode_cursor(cursor: str) -> str:
    """The last id of the previous page; a cursor this adapter did not make raises ValueError."""
    try:
        tag, last_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as e:
        raise ValueError(f"not a document page cursor: {cursor!r}") from e
    if tag != "id" or not isinstance(last_id, str):
        raise ValueError(f"not a document page cursor: {cursor!r}")
    return last_id


def _sample_params(session_id: str, r: MeterRow) -> tuple[Any, ...]:
    return (
        session_id, _dt_out(r.timestamp), r.measurand, r.phase, float(r.value), r.unit, r.raw_value,
        _dt_out(r.station_time),
    )


def _sample(row: tuple[Any, ...]) -> MeterRow:
    return MeterRow(
        timestamp=_dt_in(row[0]),  # type: ignore[arg-type]
        measurand=row[1],
        phase=row[2],
        value=row[3],
        unit=row[4],
        raw_value=row[5],
        station_time=_dt_in(row[6]),
    )


def _encode_doc(doc: dict[str, Any]) -> str:
    if not isinstance(doc, dict):
        raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
    return orjson.dumps(doc).decode("utf-8")


async def _quietly(db: aiosqlite.Connection, sql: str) -> bool:
    """Clean-up statement on an error path: never masks the original exception."""
    try:
        await db.execute(sql)
        return True
    except (sqlite3.Error, ValueError):
        return False


class SqliteStore:
    """The `Store` port on one aiosqlite connection (see module docstring)."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000, clock: Clock | None = None) -> None:
        self.url = url
        self.path = parse_sqlite_url(url)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._clock: Clock = clock or utcnow
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._healthy = False
        self._dirty = False  # a caller was interrupted mid-transaction; roll back before reuse
        self._last_stamp: datetime | None = None
        # (op, table) -> statements sent; see services/common/store/metrics.py
        self.ops: Counter[OpKey] = Counter()

    def __repr__(self) -> str:
        return f"SqliteStore({self.url!r})"

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreUnavailable(f"sqlite: cannot create the directory of {self.path}: {e}") from e
        pending = aiosqlite.connect(self.path, isolation_level=None, timeout=self._busy_timeout_ms / 1000)
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

    async def migrate(self) -> None:
        async with self._session("migrate") as db:
            await db.execute(BOOKKEEPING)
        for m in MIGRATIONS:
            async with self._session(f"migration {m.version}", immediate=True) as db:
                rows = await db.execute_fetchall("SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,))
                if rows:
                    continue
                for statement in m.statements:
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, _dt_out(self._clock())),
                )
                log.info("sqlite store %s: applied migration %d (%s)", self.path, m.version, m.name)

    async def applied_migrations(self) -> list[int]:
        """Versions recorded in `schema_migrations` (empty before the first migrate())."""
        async with self._session("applied_migrations") as db:
            exists = await db.execute_fetchall(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            )
            if not exists:
                return []
            rows = await db.execute_fetchall("SELECT version FROM schema_migrations ORDER BY version")
        return [int(r[0]) for r in rows]

    # -- stations ----------------------------------------------------------
    async def get_station(self, station_id: str) -> Station | None:
        rows = await self._fetch("get_station", f"SELECT {_STATION_COLUMNS} FROM stations WHERE id = ?", (station_id,))
        return _station(rows[0]) if rows else None

    async def put_station(self, station: Station) -> None:
        await self._write(
            "put_station",
            f"""INSERT INTO stations ({_STATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET
                password_hash = excluded.password_hash,
                password_fingerprint = excluded.password_fingerprint,
                site_id = excluded.site_id,
                tariff_id = excluded.tariff_id,
                enabled = excluded.enabled,
                created_at = excluded.created_at,
                max_current_a = excluded.max_current_a,
                phases = excluded.phases,
                priority = excluded.priority""",
            (
                station.id, station.password_hash, station.password_fingerprint, station.site_id,
                station.tariff_id, 1 if station.enabled else 0, _dt_out(station.created_at),
                station.max_current_a, station.phases, station.priority,
            ),
        )

    async def delete_station(self, station_id: str) -> bool:
        return await self._write("delete_station", "DELETE FROM stations WHERE id = ?", (station_id,)) > 0

    async def list_stations(self, *, site_id: str | None = None, limit: int = 1000) -> list[Station]:
        if site_id is None:
            sql, params = f"SELECT {_STATION_COLUMNS} FROM stations ORDER BY id LIMIT ?", (max(0, limit),)
        else:
            sql = f"SELECT {_STATION_COLUMNS} FROM stations WHERE site_id = ? ORDER BY id LIMIT ?"
            params = (site_id, max(0, limit))
        return [_station(r) for r in await self._fetch("list_stations", sql, params)]

    # -- tokens ------------------------------------------------------------
    async def get_token(self, id_token: str) -> Token | None:
        rows = await self._fetch("get_token", f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id_token = ?", (id_token,))
        return _token(rows[0]) if rows else None

    async def put_token(self, token: Token) -> None:
        await self._write(
            "put_token",
            f"""INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (id_token) DO UPDATE SET
                status = excluded.status,
                expires_at = excluded.expires_at,
                group_id = excluded.group_id,
                updated_at = excluded.updated_at""",
            (token.id_token, token.status, _dt_out(token.expires_at), token.group_id, _dt_out(token.updated_at)),
        )

    async def delete_token(self, id_token: str) -> bool:
        return await self._write("delete_token", "DELETE FROM tokens WHERE id_token = ?", (id_token,)) > 0

    async def list_tokens(self, *, limit: int = 1000) -> list[Token]:
        rows = await self._fetch("list_tokens", f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY id_token LIMIT ?", (max(0, limit),))
        return [_token(r) for r in rows]

    # -- transaction ids ---------------------------------------------------
    async def allocate_transaction_id(self, business_key: str) -> int:
        async with self._session("allocate_transaction_id", immediate=True, durable=True) as db:
            self._count("SELECT tx_id FROM tx_ids")
            rows = await db.execute_fetchall("SELECT tx_id FROM tx_ids WHERE business_key = ?", (business_key,))
            if rows:
                return int(rows[0][0])
            # The counter never falls behind an id already handed out (self-healing after manual edits).
            self._count("UPDATE counters")
            rows = await db.execute_fetchall(
                """UPDATE counters
                   SET value = MAX(value, (SELECT COALESCE(MAX(tx_id), 0) FROM tx_ids)) + 1
                   WHERE name = ? RETURNING value""",
                (TX_ID_COUNTER,),
            )
            if not rows:
                raise StoreError("sqlite: transaction id counter missing (run `csms migrate`)")
            tx_id = int(rows[0][0])
            if tx_id > MAX_TRANSACTION_ID:
                raise StoreError("sqlite: transaction id space (positive int32) exhausted")
            self._count("INSERT INTO tx_ids")
            await db.execute(
                "INSERT INTO tx_ids (business_key, tx_id, created_at) VALUES (?, ?, ?)",
                (business_key, tx_id, _dt_out(self._clock())),
            )
            return tx_id

    # -- ownership ---------------------------------------------------------
    async def claim_station(self, station_id: str, gateway_id: str) -> int:
        # One statement, so atomic on its own: insert epoch 1, or bump the stored epoch.
        async with self._session("claim_station") as db:
            self._count("INSERT INTO owners")
            rows = await db.execute_fetchall(
                """INSERT INTO owners (station_id, gateway_id, epoch, connected, updated_at)
                   VALUES (?, ?, 1, 1, ?)
                   ON CONFLICT (station_id) DO UPDATE SET
                       gateway_id = excluded.gateway_id,
                       epoch = owners.epoch + 1,
                       connected = 1,
                       updated_at = excluded.updated_at
                   RETURNING epoch""",
                (station_id, gateway_id, _dt_out(self._clock())),
            )
        return int(list(rows)[0][0])

    async def get_owner(self, station_id: str) -> Owner | None:
        rows = await self._fetch(
            "get_owner",
            "SELECT station_id, gateway_id, epoch, connected, updated_at FROM owners WHERE station_id = ?",
            (station_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return Owner(station_id=r[0], gateway_id=r[1], epoch=int(r[2]), connected=bool(r[3]), updated_at=_dt_in(r[4]))

    async def release_station(self, station_id: str, gateway_id: str, epoch: int) -> bool:
        changed = await self._write(
            "release_station",
            "UPDATE owners SET connected = 0, updated_at = ? WHERE station_id = ? AND gateway_id = ? AND epoch = ?",
            (_dt_out(self._clock()), station_id, gateway_id, epoch),
        )
        return changed > 0

    # -- documents ---------------------------------------------------------
    async def put_doc(
        self,
        kind: str,
        doc_id: str,
        doc: dict[str, Any],
        *,
        parent: str = "",
        version: int | None = None,
    ) -> bool:
        """Upsert. With `version`: written only if there is no row, the stored row has no
        version, or the stored version is smaller. Without: always written, and the stored
        version (the highest ever written) is kept, so stale versioned writes stay harmless."""
        body = _encode_doc(doc)
        if version is None:
            on_conflict = "SET parent = excluded.parent, updated_at = excluded.updated_at, body = excluded.body"
        else:
            on_conflict = (
                "SET parent = excluded.parent, version = excluded.version, "
                "updated_at = excluded.updated_at, body = excluded.body "
                "WHERE docs.version IS NULL OR docs.version < excluded.version"
            )
        async with self._session("put_doc") as db:
            self._count("INSERT INTO docs")
            rows = await db.execute_fetchall(
                f"""INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (kind, id) DO UPDATE {on_conflict}
                    RETURNING 1""",
                (kind, doc_id, parent, version, self._stamp(), body),
            )
        return bool(list(rows))

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("get_doc", "SELECT body FROM docs WHERE kind = ? AND id = ?", (kind, doc_id))
        return orjson.loads(rows[0][0]) if rows else None

    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if parent is None:
            sql = "SELECT body FROM docs WHERE kind = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
            params: tuple[Any, ...] = (kind, max(0, limit))
        else:
            sql = "SELECT body FROM docs WHERE kind = ? AND parent = ? ORDER BY updated_at DESC, id DESC LIMIT ?"
            params = (kind, parent, max(0, limit))
        return [orjson.loads(r[0]) for r in await self._fetch("list_docs", sql, params)]

    async def delete_doc(self, kind: str, doc_id: str) -> bool:
        return await self._write("delete_doc", "DELETE FROM docs WHERE kind = ? AND id = ?", (kind, doc_id)) > 0

    async def get_docs(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One query (the ids travel as one JSON array parameter, so any number fits)."""
        if not ids:
            return {}
        rows = await self._fetch("get_docs", _GET_DOCS, (kind, orjson.dumps(list(ids)).decode("utf-8")))
        return {r[0]: orjson.loads(r[1]) for r in rows}

    async def put_docs(self, kind: str, items: Sequence[DocWrite]) -> None:
        """One transaction, one statement run over the items in order (see `_PUT_DOCS`)."""
        if not items:
            return
        bodies = [_encode_doc(item.doc) for item in items]  # a bad document fails before the transaction
        async with self._session("put_docs", immediate=True) as db:
            params = [
                (kind, item.doc_id, item.parent, item.version, self._stamp(), body)
                for item, body in zip(items, bodies)
            ]
            self._count(_PUT_DOCS)
            await db.executemany(_PUT_DOCS, params)

    async def list_docs_page(
        self, kind: str, *, parent: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Pages in id order (not update time: a document updated during the listing must not
        be skipped or repeated). Every document present for the whole listing is returned
        exactly once; one written or deleted meanwhile may or may not be. A cursor this
        adapter did not issue raises ValueError."""
        limit = max(1, int(limit))
        after = None if cursor is None else _decode_cursor(cursor)
        if parent is None:
            sql, params = (_PAGE_KIND, (kind,)) if after is None else (_PAGE_KIND_AFTER, (kind, after))
        else:
            sql, params = (_PAGE_PARENT, (kind, parent)) if after is None else (_PAGE_PARENT_AFTER, (kind, parent, after))
        rows = await self._fetch("list_docs_page", sql, params + (limit + 1,))
        more = len(rows) > limit
        rows = rows[:limit]
        return [orjson.loads(r[1]) for r in rows], (_encode_cursor(rows[-1][0]) if more else None)

    # -- meter samples (ADR 015) -------------------------------------------------
    async def append_samples(self, session_id: str, rows: Sequence[MeterRow]) -> None:
        """One statement (an upsert per key, in order: a key given twice keeps its last row)."""
        if not rows:
            return
        params = [_sample_params(session_id, r)[1:] for r in rows]
        if all(math.isfinite(p[3]) for p in params):
            await self._write("append_samples", _APPEND_SAMPLES_JSON, (session_id, orjson.dumps(params).decode("utf-8")))
            return
        async with self._session("append_samples", immediate=True) as db:
            self._count(_APPEND_SAMPLES)
            await db.executemany(_APPEND_SAMPLES, [(session_id,) + p for p in params])

    async def read_samples(
        self, session_id: str, *, after: tuple[datetime, str, str] | None = None, limit: int | None = None
    ) -> list[MeterRow]:
        n = -1 if limit is None else max(0, int(limit))
        if after is None:
            rows = await self._fetch("read_samples", _READ_SAMPLES, (session_id, n))
        else:
            rows = await self._fetch(
                "read_samples", _READ_SAMPLES_AFTER, (session_id, _dt_out(after[0]), after[1], after[2], n)
            )
        return [_sample(r) for r in rows]

    # -- plumbing ----------------------------------------------------------
    def _count(self, sql: str) -> None:
        count_op(self.ops, _op_key(sql))

    def _stamp(self) -> str:
        """Update time for documents: strictly increasing within this store (call under the lock)."""
        now = self._clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        if self._last_stamp is not None and now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return _dt_out(now)  # type: ignore[return-value]

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

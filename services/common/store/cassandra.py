"""`cassandra://host[,host2]:9042/keyspace[?replication=3]`: the store on Apache Cassandra.

- Prepared statements everywhere; the driver's futures are bridged to asyncio.
- 1.6 transaction ids: blocks of ids are claimed with a lightweight transaction on
  one row (`UPDATE tx_blocks SET next = ? IF next = ?`), then handed out locally, so
  ids are unique across all gateway pods without counter columns (counters are not
  idempotent). The business key is bound to its id with `INSERT ... IF NOT EXISTS`:
  a replayed StartTransaction (on any pod) reads the winner's id back. On a CAS
  timeout (outcome unknown) we re-read at SERIAL.
- Ownership epochs: compare-and-set on the owner row (`IF epoch = ?`).
- Documents: versioned kinds are written `USING TIMESTAMP <version>`, so Cassandra's
  last-write-wins keeps the highest version whatever the arrival order, without a
  Paxos round per write; a kind is either always versioned or never. A document lives in
  three tables (`docs` by (kind, id); `docs_by_parent` by (kind, parent); `docs_by_kind_b`
  by (kind, bucket) with a fixed number of hash buckets, so no kind is one ever-growing
  partition); its three rows go in one unlogged batch (one request), and `put_docs`
  sends a batch's documents concurrently without reading first.
- Meter samples (ADR 015): `meter_samples` partitioned by (session_id, day), clustered
  by (ts, measurand, phase); `meter_sample_days` lists a session's days. An append is one
  unlogged single-partition batch per day touched, plus one `meter_sample_days` write the
  first time this process sees that (session, day) (remembered in a bounded in-process
  set: the write is idempotent, so forgetting only costs a repeat). Reads go day by day
  in order, page by page (never a blocking page fetch on the event loop).
- CPU: the driver's per-request Python cost (~50-100 us) dominates, so the hot paths send
  few requests (batches), reuse prepared statements and build no CQL per call.
- `ops` counts requests per (op, table) (services/common/store/metrics.py); a batch
  counts one write per table it touches, a paged read one read per page.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import random
import re
import zlib
from collections import Counter, deque
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Sequence
from urllib.parse import parse_qs, urlparse

import orjson
from cassandra import ConsistencyLevel, OperationTimedOut, Unavailable, WriteTimeout, ReadTimeout
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement, SimpleStatement

from services.common.errors import ConfigError, StoreUnavailable
from services.common.store.metrics import OpKey, count_op
from services.common.store.port import DocWrite, MeterRow, Owner, Station, Token

__all__ = ["CassandraStore", "KIND_BUCKETS"]

log = logging.getLogger("csms.store.cassandra")

UTC = timezone.utc
_BLOCK = 100
_MAX_TX_ID = 2**31 - 1
_EPOCH = datetime(1970, 1, 1)  # naive UTC, as the driver returns timestamps

KIND_BUCKETS = 16            # docs_by_kind_b partitions per kind; never change on a live keyspace
_SAMPLE_BATCH_ROWS = 100     # rows per single-partition batch (well under batch_size_fail_threshold)
# Documents per unlogged batch in put_docs: 3 documents are at most 9 partitions, under
# Cassandra's unlogged_batch_across_partitions_warn_threshold (10); fewer requests is what
# saves CPU (bench/store_ops.py). Bodies in one batch stay under _DOC_BATCH_MAX_BODY bytes
# (x3 tables: under batch_size_fail_threshold, 50 KiB); a bigger body goes as three requests.
_DOCS_PER_BATCH = 3
_DOC_BATCH_MAX_BODY = 14_000
_PAGE_ROWS = 5000            # rows per page of a read
_DOC_CONCURRENCY = 128       # documents in flight per put_docs/get_docs
_DAYS_SEEN_MAX = 200_000     # (session, day) pairs remembered as written

_W_DOCS: tuple[OpKey, ...] = (("write", "docs"), ("write", "docs_by_parent"), ("write", "docs_by_kind_b"))
_W_SAMPLES: tuple[OpKey, ...] = (("write", "meter_samples"),)
_NO_KEYS: tuple[OpKey, ...] = ()

Step = str | Callable[["CassandraStore"], Awaitable[None]]


async def _copy_docs_by_kind(store: "CassandraStore") -> None:
    """Migration 2: copy the single-partition-per-kind `docs_by_kind` into the bucketed
    `docs_by_kind_b`, page by page, keeping each row's write time (so a newer write that
    already reached the new table is not overwritten by the copy, and versioned rows keep
    their version-timestamps)."""
    await store._copy_docs_by_kind()


MIGRATIONS: list[tuple[int, list[Step]]] = [
    (1, [
        """CREATE TABLE IF NOT EXISTS stations (id text PRIMARY KEY, password_hash text, password_fingerprint text,
           site_id text, tariff_id text, enabled boolean, created_at timestamp, max_current_a double, phases int, priority int)""",
        "CREATE INDEX IF NOT EXISTS stations_site_idx ON stations (site_id)",
        """CREATE TABLE IF NOT EXISTS tokens (id_token text PRIMARY KEY, status text, expires_at timestamp,
           group_id text, updated_at timestamp)""",
        "CREATE TABLE IF NOT EXISTS tx_ids (business_key text PRIMARY KEY, tx_id int)",
        "CREATE TABLE IF NOT EXISTS tx_blocks (name text PRIMARY KEY, next int)",
        """CREATE TABLE IF NOT EXISTS owners (station_id text PRIMARY KEY, gateway_id text, epoch bigint,
           connected boolean, updated_at timestamp)""",
        """CREATE TABLE IF NOT EXISTS docs (kind text, id text, parent text, version bigint, updated_at timestamp,
           body text, PRIMARY KEY ((kind, id)))""",
        """CREATE TABLE IF NOT EXISTS docs_by_parent (kind text, parent text, id text, updated_at timestamp, body text,
           PRIMARY KEY ((kind, parent), id))""",
        """CREATE TABLE IF NOT EXISTS docs_by_kind (kind text, id text, updated_at timestamp, body text,
           PRIMARY KEY ((kind), id))""",
    ]),
    (2, [
        # ADR 015. `day` = days since 1970-01-01 (UTC) of `ts`.
        """CREATE TABLE IF NOT EXISTS meter_samples (session_id text, day int, ts timestamp, measurand text,
           phase text, value double, unit text, raw_value text, station_time timestamp,
           PRIMARY KEY ((session_id, day), ts, measurand, phase))""",
        "CREATE TABLE IF NOT EXISTS meter_sample_days (session_id text, day int, PRIMARY KEY ((session_id), day))",
        """CREATE TABLE IF NOT EXISTS docs_by_kind_b (kind text, bucket int, id text, updated_at timestamp,
           body text, PRIMARY KEY ((kind, bucket), id))""",
        _copy_docs_by_kind,  # the old docs_by_kind stays, unused
    ]),
]


_TABLES = (
    "stations|tokens|tx_ids|tx_blocks|owners|docs|docs_by_parent|docs_by_kind_b|docs_by_kind|"
    "meter_samples|meter_sample_days|schema_migrations"
)
_TABLE_RE = re.compile(rf"\b(FROM|INTO|UPDATE|EXISTS|ON)\s+({_TABLES})\b")
_OP_TABLE_RE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+(?:\w+\.)?(\w+)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def _op_keys(cql: str) -> tuple[OpKey, ...]:
    """The (op, table) counted for one statement; DDL is not counted."""
    head = cql.lstrip()[:6].upper()
    if head in ("CREATE", "ALTER ", "DROP T"):
        return _NO_KEYS
    match = _OP_TABLE_RE.search(cql)
    return (("read" if head == "SELECT" else "write", match.group(1) if match else "?"),)


def _parse(url: str) -> tuple[list[str], int, str, int]:
    u = urlparse(url)
    if u.scheme != "cassandra":
        raise ConfigError(f"not a cassandra URL: {url!r}")
    netloc = u.netloc
    hosts, port = [], 9042
    for part in netloc.split(","):
        host, _, p = part.partition(":")
        hosts.append(host or "127.0.0.1")
        if p:
            port = int(p)
    keyspace = u.path.strip("/") or "csms"
    if not keyspace.replace("_", "").isalnum():
        raise ConfigError(f"bad keyspace name {keyspace!r}")
    rf = int(parse_qs(u.query).get("replication", ["1"])[0])
    return hosts, port, keyspace, rf


def _ts(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).replace(tzinfo=None)  # the driver stores naive UTC


def _utc_naive(dt: datetime) -> datetime:
    """Naive UTC for the driver; a naive input is taken as UTC already (not local time)."""
    return dt if dt.tzinfo is None else dt.astimezone(UTC).replace(tzinfo=None)


def _aware(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.replace(tzinfo=UTC)


def _bucket(doc_id: str) -> int:
    """Stable across processes (unlike hash()): the bucket of a document in docs_by_kind_b."""
    return zlib.crc32(doc_id.encode("utf-8")) % KIND_BUCKETS


def _encode_cursor(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode("ascii")


def _decode_cursor(cursor: str, tag: str) -> list[Any]:
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as e:
        raise ValueError(f"not a document page cursor: {cursor!r}") from e
    ok = isinstance(position, list) and position and position[0] == tag
    if ok and tag == "b":
        ok = len(position) == 3 and isinstance(position[1], int) and 0 <= position[1] < KIND_BUCKETS and isinstance(position[2], str)
    elif ok:
        ok = len(position) == 2 and isinstance(position[1], str)
    if not ok:
        raise ValueError(f"not a document page cursor: {cursor!r}")
    return position  # type: ignore[return-value]


class _Completions:
    """Hands finished requests from the driver's thread to the event loop with one wakeup
    per burst (not one `call_soon_threadsafe`, i.e. one self-pipe write and loop wakeup,
    per request): concurrent requests that finish together cost one handoff."""

    __slots__ = ("loop", "items", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self.scheduled = False

    def ok(self, _rows: Any, fut: asyncio.Future[Any], rf: Any) -> None:  # driver thread
        self._push(fut, rf, None)

    def err(self, exc: BaseException, fut: asyncio.Future[Any]) -> None:  # driver thread
        self._push(fut, None, exc)

    def _push(self, fut: asyncio.Future[Any], rf: Any, exc: BaseException | None) -> None:
        self.items.append((fut, rf, exc))
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self.scheduled = False

    def _drain(self) -> None:  # event loop
        self.scheduled = False  # before draining: a push from now on schedules another drain
        items = self.items
        while items:
            fut, rf, exc = items.popleft()
            if fut.done():
                continue
            if exc is None:
                fut.set_result(rf)
            else:
                fut.set_exception(exc)


class CassandraStore:
    def __init__(
        self,
        url: str,
        *,
        request_timeout_s: float = 10.0,
        batch_docs: bool = True,
        docs_per_batch: int = _DOCS_PER_BATCH,
        get_docs_in: bool = True,
    ) -> None:
        self.hosts, self.port, self.keyspace, self.replication = _parse(url)
        self.request_timeout_s = request_timeout_s
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._ps: dict[str, PreparedStatement] = {}
        self._ps_keys: dict[int, tuple[OpKey, ...]] = {}  # id(prepared statement) -> counted keys
        self._block: list[int] = []  # [next, end) of the locally owned id block
        self._block_lock = asyncio.Lock()
        self._healthy = False
        self._days_seen: set[tuple[str, int]] = set()
        self._done: _Completions | None = None
        # Tuning switches kept for bench/store_ops.py: documents batched (else three requests
        # each), how many per batch, and get_docs as one `IN` query (else concurrent
        # single-partition reads).
        self._batch_docs = batch_docs
        self._docs_per_batch = max(1, int(docs_per_batch))
        self._get_docs_in = get_docs_in
        # (op, table) -> requests sent; see services/common/store/metrics.py
        self.ops: Counter[OpKey] = Counter()

    # -- plumbing -----------------------------------------------------------------
    def _q(self, cql: str) -> str:
        return _TABLE_RE.sub(lambda m: f"{m.group(1)} {self.keyspace}.{m.group(2)}", cql)

    def _keys_of(self, stmt: Any) -> tuple[OpKey, ...]:
        if isinstance(stmt, str):
            return _op_keys(stmt)
        if isinstance(stmt, SimpleStatement):
            return _op_keys(stmt.query_string)
        if isinstance(stmt, PreparedStatement):
            return self._ps_keys.get(id(stmt), _NO_KEYS)
        prepared = getattr(stmt, "prepared_statement", None)  # a BoundStatement
        return self._ps_keys.get(id(prepared), _NO_KEYS) if prepared is not None else _NO_KEYS

    async def _run(
        self,
        stmt: Any,
        params: Any = None,
        *,
        timeout: float | None = None,
        keys: tuple[OpKey, ...] | None = None,
        paging_state: bytes | None = None,
    ) -> Any:
        """One request; `keys` are the (op, table) it counts as (derived from the statement
        when not given; a batch must say)."""
        if self._session is None:
            raise StoreUnavailable("cassandra session not started")
        for key in self._keys_of(stmt) if keys is None else keys:
            count_op(self.ops, key)
        if isinstance(stmt, str):
            stmt = self._q(stmt)
        elif isinstance(stmt, SimpleStatement):
            stmt = SimpleStatement(self._q(stmt.query_string), consistency_level=stmt.consistency_level, fetch_size=stmt.fetch_size)
        loop = asyncio.get_running_loop()
        done = self._done
        if done is None or done.loop is not loop:
            done = self._done = _Completions(loop)
        fut: asyncio.Future[Any] = loop.create_future()
        rf = self._session.execute_async(stmt, params, timeout=timeout or self.request_timeout_s, paging_state=paging_state)
        rf.add_callbacks(done.ok, done.err, callback_args=(fut, rf), errback_args=(fut,))
        try:
            result = await fut
        except (NoHostAvailable, Unavailable, OperationTimedOut, ReadTimeout) as exc:
            self._healthy = False
            raise StoreUnavailable(f"cassandra: {exc!r}") from exc
        self._healthy = True
        return result.result()

    async def _read_all(self, stmt: PreparedStatement, params: Sequence[Any], *, limit: int | None = None) -> list[Any]:
        """Every row of a query (at most `limit`), one request per page, never blocking the
        loop (iterating a ResultSet past its first page would fetch synchronously)."""
        out: list[Any] = []
        state: bytes | None = None
        while True:
            bound = stmt.bind(params)
            bound.fetch_size = _PAGE_ROWS if limit is None else max(1, min(_PAGE_ROWS, limit - len(out)))
            rs = await self._run(bound, paging_state=state)
            out.extend(rs.current_rows)
            state = rs.paging_state
            if state is None or (limit is not None and len(out) >= limit):
                return out if limit is None else out[:limit]

    def _prep(self, name: str, cql: str, consistency: int = ConsistencyLevel.LOCAL_QUORUM, serial: int | None = None) -> PreparedStatement:
        ps = self._ps.get(name)
        if ps is None:
            assert self._session is not None
            ps = self._session.prepare(self._q(cql))
            ps.consistency_level = consistency
            if serial is not None:
                ps.serial_consistency_level = serial
            self._ps[name] = ps
            self._ps_keys[id(ps)] = _op_keys(cql)
        return ps

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def connect() -> Session:
            profile = ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                request_timeout=self.request_timeout_s,
                consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            )
            self._cluster = Cluster(
                self.hosts, port=self.port, protocol_version=5,
                execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=10,
            )
            return self._cluster.connect()

        try:
            self._session = await loop.run_in_executor(None, connect)
        except NoHostAvailable as exc:
            raise StoreUnavailable(f"cassandra at {self.hosts}:{self.port} unreachable: {exc}") from exc
        await self._run(
            f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {self.replication}}}", timeout=60
        )
        self._healthy = True

    async def close(self) -> None:
        self._healthy = False
        if self._cluster is not None:
            cluster = self._cluster
            self._cluster = self._session = None
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def migrate(self) -> None:
        await self._run("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamp)", timeout=60)
        rows = await self._run("SELECT version FROM schema_migrations", keys=_NO_KEYS)
        done = {r.version for r in rows}
        for version, steps in MIGRATIONS:
            if version in done:
                continue
            for step in steps:
                if isinstance(step, str):
                    await self._run(step, timeout=60)
                else:
                    self._ps.clear()  # tables created by this migration: prepare afresh
                    self._ps_keys.clear()
                    await step(self)
            await self._run(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)",
                (version, _ts(datetime.now(UTC))), keys=_NO_KEYS,
            )
            log.info("cassandra keyspace %s migrated to version %d", self.keyspace, version)
        self._ps.clear()  # tables may have changed under prepared statements
        self._ps_keys.clear()

    async def _copy_docs_by_kind(self) -> None:
        select = self._prep(
            "copy_kind_select",
            "SELECT kind, id, updated_at, body, WRITETIME(body) AS written FROM docs_by_kind",
        )
        insert = self._prep(
            "copy_kind_insert",
            "INSERT INTO docs_by_kind_b (kind, bucket, id, updated_at, body) VALUES (?,?,?,?,?) USING TIMESTAMP ?",
        )
        state: bytes | None = None
        copied = 0
        while True:
            bound = select.bind(())
            bound.fetch_size = 500
            rs = await self._run(bound, paging_state=state, timeout=60)
            rows = [r for r in rs.current_rows if r.body is not None]
            await asyncio.gather(*(
                self._run(insert, (r.kind, _bucket(r.id), r.id, r.updated_at, r.body, r.written), timeout=60)
                for r in rows
            ))
            copied += len(rows)
            state = rs.paging_state
            if state is None:
                break
        log.info("cassandra keyspace %s: copied %d rows of docs_by_kind into docs_by_kind_b", self.keyspace, copied)

    # -- stations -------------------------------------------------------------------
    @staticmethod
    def _station(r: Any) -> Station:
        return Station(
            id=r.id, password_hash=r.password_hash or "", password_fingerprint=r.password_fingerprint or "",
            site_id=r.site_id, tariff_id=r.tariff_id, enabled=True if r.enabled is None else r.enabled,
            created_at=_aware(r.created_at), max_current_a=r.max_current_a, phases=r.phases, priority=r.priority or 0,
        )

    async def get_station(self, station_id: str) -> Station | None:
        rows = await self._run(self._prep("get_station", "SELECT * FROM stations WHERE id = ?"), (station_id,))
        row = rows.one()
        return self._station(row) if row else None

    async def put_station(self, station: Station) -> None:
        ps = self._prep("put_station", "INSERT INTO stations (id, password_hash, password_fingerprint, site_id, tariff_id, enabled, created_at, max_current_a, phases, priority) VALUES (?,?,?,?,?,?,?,?,?,?)")
        await self._run(ps, (station.id, station.password_hash, station.password_fingerprint, station.site_id, station.tariff_id,
                             station.enabled, _ts(station.created_at), station.max_current_a, station.phases, station.priority))

    async def delete_station(self, station_id: str) -> bool:
        existed = await self.get_station(station_id) is not None
        await self._run(self._prep("del_station", "DELETE FROM stations WHERE id = ?"), (station_id,))
        return existed

    async def list_stations(self, *, site_id: str | None = None, limit: int = 1000) -> list[Station]:
        if site_id is None:
            rows = await self._run(SimpleStatement(f"SELECT * FROM stations LIMIT {int(limit)}", consistency_level=ConsistencyLevel.LOCAL_QUORUM))
        else:
            rows = await self._run(self._prep("stations_by_site", "SELECT * FROM stations WHERE site_id = ? LIMIT ?"), (site_id, int(limit)))
        return sorted((self._station(r) for r in rows), key=lambda s: s.id)

    # -- tokens ---------------------------------------------------------------------
    async def get_token(self, id_token: str) -> Token | None:
        row = (await self._run(self._prep("get_token", "SELECT * FROM tokens WHERE id_token = ?"), (id_token,))).one()
        if not row:
            return None
        return Token(row.id_token, row.status or "Accepted", _aware(row.expires_at), row.group_id, _aware(row.updated_at))

    async def put_token(self, token: Token) -> None:
        ps = self._prep("put_token", "INSERT INTO tokens (id_token, status, expires_at, group_id, updated_at) VALUES (?,?,?,?,?)")
        await self._run(ps, (token.id_token, token.status, _ts(token.expires_at), token.group_id, _ts(token.updated_at)))

    async def delete_token(self, id_token: str) -> bool:
        existed = await self.get_token(id_token) is not None
        await self._run(self._prep("del_token", "DELETE FROM tokens WHERE id_token = ?"), (id_token,))
        return existed

    async def list_tokens(self, *, limit: int = 1000) -> list[Token]:
        rows = await self._run(SimpleStatement(f"SELECT * FROM tokens LIMIT {int(limit)}", consistency_level=ConsistencyLevel.LOCAL_QUORUM))
        return sorted((Token(r.id_token, r.status or "Accepted", _aware(r.expires_at), r.group_id, _aware(r.updated_at)) for r in rows), key=lambda t: t.id_token)

    # -- transaction ids ------------------------------------------------------------
    async def _cas(self, stmt: PreparedStatement, params: tuple[Any, ...], reread: PreparedStatement, reread_params: tuple[Any, ...]) -> tuple[bool, Any]:
        """Run an LWT; on a timeout (outcome unknown) re-read at SERIAL and report what is there."""
        try:
            rows = await self._run(stmt, params)
            row = rows.one()
            return bool(row[0]), row
        except WriteTimeout:
            current = (await self._run(reread, reread_params)).one()
            return False, current

    async def _next_id(self) -> int:
        async with self._block_lock:
            while not self._block or self._block[0] >= self._block[1]:
                read = self._prep("read_block", "SELECT next FROM tx_blocks WHERE name = 'tx'", ConsistencyLevel.SERIAL)
                row = (await self._run(read)).one()
                if row is None:
                    ins = self._prep("init_block", "INSERT INTO tx_blocks (name, next) VALUES ('tx', ?) IF NOT EXISTS", serial=ConsistencyLevel.SERIAL)
                    applied, _ = await self._cas(ins, (1 + _BLOCK,), read, ())
                    if applied:
                        self._block = [1, 1 + _BLOCK]
                    continue
                start = int(row.next)
                if start + _BLOCK > _MAX_TX_ID:
                    raise StoreUnavailable("transaction id space exhausted")
                upd = self._prep("claim_block", "UPDATE tx_blocks SET next = ? WHERE name = 'tx' IF next = ?", serial=ConsistencyLevel.SERIAL)
                applied, _ = await self._cas(upd, (start + _BLOCK, start), read, ())
                if applied:
                    self._block = [start, start + _BLOCK]
            tx_id = self._block[0]
            self._block[0] += 1
            return tx_id

    async def allocate_transaction_id(self, business_key: str) -> int:
        get = self._prep("get_tx", "SELECT tx_id FROM tx_ids WHERE business_key = ?", ConsistencyLevel.SERIAL)
        row = (await self._run(get, (business_key,))).one()
        if row is not None:
            return int(row.tx_id)
        candidate = await self._next_id()
        bind = self._prep("bind_tx", "INSERT INTO tx_ids (business_key, tx_id) VALUES (?, ?) IF NOT EXISTS", serial=ConsistencyLevel.SERIAL)
        applied, current = await self._cas(bind, (business_key, candidate), get, (business_key,))
        if applied:
            return candidate
        if current is None:  # timed out and nothing visible yet: try again with the same candidate
            applied, current = await self._cas(bind, (business_key, candidate), get, (business_key,))
            if applied:
                return candidate
        return int(current.tx_id)

    # -- ownership --------------------------------------------------------------------
    async def get_owner(self, station_id: str) -> Owner | None:
        row = (await self._run(self._prep("get_owner", "SELECT * FROM owners WHERE station_id = ?", ConsistencyLevel.SERIAL), (station_id,))).one()
        if row is None:
            return None
        return Owner(row.station_id, row.gateway_id, int(row.epoch), bool(row.connected), _aware(row.updated_at))

    async def claim_station(self, station_id: str, gateway_id: str) -> int:
        now = _ts(datetime.now(UTC))
        read = self._prep("get_owner", "SELECT * FROM owners WHERE station_id = ?", ConsistencyLevel.SERIAL)
        ins = self._prep("ins_owner", "INSERT INTO owners (station_id, gateway_id, epoch, connected, updated_at) VALUES (?, ?, 1, true, ?) IF NOT EXISTS", serial=ConsistencyLevel.SERIAL)
        upd = self._prep("claim_owner", "UPDATE owners SET gateway_id = ?, epoch = ?, connected = true, updated_at = ? WHERE station_id = ? IF epoch = ?", serial=ConsistencyLevel.SERIAL)
        current = await self.get_owner(station_id)
        for attempt in range(200):
            # A timed-out CAS counts as lost: retrying with the next epoch may skip one,
            # never hand the same epoch out twice.
            if current is None:
                applied, _ = await self._cas(ins, (station_id, gateway_id, now), read, (station_id,))
                if applied:
                    return 1
            else:
                applied, _ = await self._cas(upd, (gateway_id, current.epoch + 1, now, station_id, current.epoch), read, (station_id,))
                if applied:
                    return current.epoch + 1
            await asyncio.sleep(random.uniform(0, 0.005 * min(attempt + 1, 20)))
            current = await self.get_owner(station_id)
        raise StoreUnavailable(f"could not claim station {station_id}: contention")

    async def release_station(self, station_id: str, gateway_id: str, epoch: int) -> bool:
        read = self._prep("get_owner", "SELECT * FROM owners WHERE station_id = ?", ConsistencyLevel.SERIAL)
        upd = self._prep("release_owner", "UPDATE owners SET connected = false, updated_at = ? WHERE station_id = ? IF gateway_id = ? AND epoch = ?", serial=ConsistencyLevel.SERIAL)
        applied, _ = await self._cas(upd, (_ts(datetime.now(UTC)), station_id, gateway_id, epoch), read, (station_id,))
        return applied


    # -- documents --------------------------------------------------------------------
    def _doc_statements(self, versioned: bool) -> tuple[PreparedStatement, PreparedStatement, PreparedStatement]:
        if versioned:
            return (
                self._prep("put_doc_v", "INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?,?,?,?,?,?) USING TIMESTAMP ?"),
                self._prep("put_doc_parent_v", "INSERT INTO docs_by_parent (kind, parent, id, updated_at, body) VALUES (?,?,?,?,?) USING TIMESTAMP ?"),
                self._prep("put_doc_kind_v", "INSERT INTO docs_by_kind_b (kind, bucket, id, updated_at, body) VALUES (?,?,?,?,?) USING TIMESTAMP ?"),
            )
        return (
            self._prep("put_doc", "INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?,?,?,?,?,?)"),
            self._prep("put_doc_parent", "INSERT INTO docs_by_parent (kind, parent, id, updated_at, body) VALUES (?,?,?,?,?)"),
            self._prep("put_doc_kind", "INSERT INTO docs_by_kind_b (kind, bucket, id, updated_at, body) VALUES (?,?,?,?,?)"),
        )

    def _doc_rows(
        self, kind: str, doc_id: str, doc: dict[str, Any], parent: str, version: int | None, now: datetime
    ) -> tuple[int, list[tuple[PreparedStatement, tuple[Any, ...]]]]:
        """(body bytes, the document's three rows). Versioned rows carry `USING TIMESTAMP
        version`; an unversioned write leaves the stored version as it is (unset, not null)."""
        if not isinstance(doc, dict):
            raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
        raw = orjson.dumps(doc)
        body = raw.decode()
        p_doc, p_parent, p_kind = self._doc_statements(version is not None)
        if version is None:
            return len(raw), [
                (p_doc, (kind, doc_id, parent, UNSET_VALUE, now, body)),
                (p_parent, (kind, parent, doc_id, now, body)),
                (p_kind, (kind, _bucket(doc_id), doc_id, now, body)),
            ]
        v = int(version)
        return len(raw), [
            (p_doc, (kind, doc_id, parent, v, now, body, v)),
            (p_parent, (kind, parent, doc_id, now, body, v)),
            (p_kind, (kind, _bucket(doc_id), doc_id, now, body, v)),
        ]

    async def _run_batch(self, rows: list[tuple[PreparedStatement, tuple[Any, ...]]], keys: tuple[OpKey, ...]) -> None:
        batch = BatchStatement(BatchType.UNLOGGED)
        for ps, params in rows:
            batch.add(ps, params)
        await self._run(batch, keys=keys)

    def _doc_requests(self, kind: str, items: Iterable[DocWrite], now: datetime) -> list[Callable[[], Awaitable[Any]]]:
        """Unlogged batches of up to `docs_per_batch` documents' rows (a document's rows are
        never split across requests unless its body is too big for a batch), as thunks: no
        coroutine exists before it is run (a failure leaves none un-awaited)."""
        requests: list[Callable[[], Awaitable[Any]]] = []
        group: list[tuple[PreparedStatement, tuple[Any, ...]]] = []
        group_docs = group_bytes = 0
        for w in items:
            size, rows = self._doc_rows(kind, w.doc_id, w.doc, w.parent, w.version, now)
            if not self._batch_docs or size > _DOC_BATCH_MAX_BODY:
                requests.extend(functools.partial(self._run, ps, params) for ps, params in rows)
                continue
            if group and (group_docs >= self._docs_per_batch or group_bytes + size > _DOC_BATCH_MAX_BODY):
                requests.append(functools.partial(self._run_batch, group, _W_DOCS))
                group, group_docs, group_bytes = [], 0, 0
            group.extend(rows)
            group_docs += 1
            group_bytes += size
        if group:
            requests.append(functools.partial(self._run_batch, group, _W_DOCS))
        return requests

    async def put_doc(self, kind: str, doc_id: str, doc: dict[str, Any], *, parent: str = "", version: int | None = None) -> bool:
        if version is not None:
            row = (await self._run(self._prep("get_doc_version", "SELECT version FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
            if row is not None and row.version is not None and int(row.version) >= version:
                return False
        requests = self._doc_requests(kind, [DocWrite(doc_id, doc, parent, version)], _utc_naive(datetime.now(UTC)))
        await asyncio.gather(*(request() for request in requests))
        return True

    async def put_docs(self, kind: str, items: Sequence[DocWrite]) -> None:
        """No read: the documents' rows in unlogged batches of `docs_per_batch` documents,
        the batches concurrently. A document named twice is written once: the highest
        version (the first of equal ones), or the last unversioned write."""
        if not items:
            return
        latest: dict[str, DocWrite] = {}
        for item in items:
            seen = latest.get(item.doc_id)
            if seen is None or item.version is None or (seen.version is not None and item.version > seen.version):
                latest[item.doc_id] = item
        requests = self._doc_requests(kind, latest.values(), _utc_naive(datetime.now(UTC)))
        for i in range(0, len(requests), _DOC_CONCURRENCY):
            await asyncio.gather(*(request() for request in requests[i:i + _DOC_CONCURRENCY]))

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        row = (await self._run(self._prep("get_doc", "SELECT body FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
        return orjson.loads(row.body) if row is not None and row.body is not None else None

    async def get_docs(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One `IN` query per 128 ids, fanned out by the coordinator: measured about 3x less
        client CPU than concurrent single-partition reads (get_docs_in=False keeps those for
        bench/store_ops.py)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        out: dict[str, dict[str, Any]] = {}
        if self._get_docs_in:
            ps = self._prep("get_docs_in", "SELECT id, body FROM docs WHERE kind = ? AND id IN ?")
            for i in range(0, len(wanted), _DOC_CONCURRENCY):
                for r in await self._read_all(ps, (kind, wanted[i:i + _DOC_CONCURRENCY])):
                    if r.body is not None:
                        out[r.id] = orjson.loads(r.body)
            return out
        ps = self._prep("get_doc", "SELECT body FROM docs WHERE kind = ? AND id = ?")
        for i in range(0, len(wanted), _DOC_CONCURRENCY):
            chunk = wanted[i:i + _DOC_CONCURRENCY]
            results = await asyncio.gather(*(self._run(ps, (kind, doc_id)) for doc_id in chunk))
            for doc_id, rs in zip(chunk, results):
                rows = rs.current_rows
                if rows and rows[0].body is not None:
                    out[doc_id] = orjson.loads(rows[0].body)
        return out

    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if parent is None:
            ps = self._prep("list_docs_kind_b", "SELECT id, updated_at, body FROM docs_by_kind_b WHERE kind = ? AND bucket = ?")
            parts = await asyncio.gather(*(self._read_all(ps, (kind, b)) for b in range(KIND_BUCKETS)))
            rows: Iterable[Any] = (r for part in parts for r in part)
        else:
            ps = self._prep("list_docs_parent", "SELECT id, updated_at, body FROM docs_by_parent WHERE kind = ? AND parent = ?")
            rows = await self._read_all(ps, (kind, parent))
        items = sorted(((r.updated_at or datetime.min, r.id, r.body) for r in rows if r.body is not None), key=lambda t: (t[0], t[1]), reverse=True)
        return [orjson.loads(body) for _, _, body in items[:max(0, limit)]]

    async def list_docs_page(
        self, kind: str, *, parent: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Pages by (bucket, id) (by id within one parent). Each page asks for one row more
        than it returns, so the last page says None instead of promising an empty one."""
        limit = max(1, int(limit))
        if parent is not None:
            after = None if cursor is None else _decode_cursor(cursor, "p")[1]
            if after is None:
                ps = self._prep("page_parent", "SELECT id, body FROM docs_by_parent WHERE kind = ? AND parent = ? LIMIT ?")
                rows = (await self._run(ps, (kind, parent, limit + 1))).current_rows
            else:
                ps = self._prep("page_parent_after", "SELECT id, body FROM docs_by_parent WHERE kind = ? AND parent = ? AND id > ? LIMIT ?")
                rows = (await self._run(ps, (kind, parent, after, limit + 1))).current_rows
            more = len(rows) > limit
            rows = rows[:limit]
            docs = [orjson.loads(r.body) for r in rows if r.body is not None]
            return docs, (_encode_cursor(["p", rows[-1].id]) if more else None)
        bucket, after = (0, None) if cursor is None else _decode_cursor(cursor, "b")[1:]
        first = self._prep("page_kind", "SELECT id, body FROM docs_by_kind_b WHERE kind = ? AND bucket = ? LIMIT ?")
        rest = self._prep("page_kind_after", "SELECT id, body FROM docs_by_kind_b WHERE kind = ? AND bucket = ? AND id > ? LIMIT ?")
        found: list[tuple[int, str, str | None]] = []
        while bucket < KIND_BUCKETS and len(found) <= limit:
            need = limit + 1 - len(found)
            if after is None:
                got = (await self._run(first, (kind, bucket, need))).current_rows
            else:
                got = (await self._run(rest, (kind, bucket, after, need))).current_rows
            found.extend((bucket, r.id, r.body) for r in got)
            bucket, after = bucket + 1, None
        more = len(found) > limit
        found = found[:limit]
        docs = [orjson.loads(body) for _, _, body in found if body is not None]
        return docs, (_encode_cursor(["b", found[-1][0], found[-1][1]]) if more else None)

    async def delete_doc(self, kind: str, doc_id: str) -> bool:
        row = (await self._run(self._prep("get_doc_meta", "SELECT parent, version FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
        if row is None:
            return False
        parent = row.parent or ""
        keys = (kind, doc_id), (kind, parent, doc_id), (kind, _bucket(doc_id), doc_id)
        batch = BatchStatement(BatchType.UNLOGGED)
        if row.version is not None:
            # a delete must shadow versioned writes (USING TIMESTAMP version): delete above the version
            ts = int(row.version) + 1
            batch.add(self._prep("del_doc_t", "DELETE FROM docs USING TIMESTAMP ? WHERE kind = ? AND id = ?"), (ts,) + keys[0])
            batch.add(self._prep("del_doc_parent_t", "DELETE FROM docs_by_parent USING TIMESTAMP ? WHERE kind = ? AND parent = ? AND id = ?"), (ts,) + keys[1])
            batch.add(self._prep("del_doc_kind_t", "DELETE FROM docs_by_kind_b USING TIMESTAMP ? WHERE kind = ? AND bucket = ? AND id = ?"), (ts,) + keys[2])
        else:
            batch.add(self._prep("del_doc", "DELETE FROM docs WHERE kind = ? AND id = ?"), keys[0])
            batch.add(self._prep("del_doc_parent", "DELETE FROM docs_by_parent WHERE kind = ? AND parent = ? AND id = ?"), keys[1])
            batch.add(self._prep("del_doc_kind", "DELETE FROM docs_by_kind_b WHERE kind = ? AND bucket = ? AND id = ?"), keys[2])
        await self._run(batch, keys=_W_DOCS)
        return True

    # -- meter samples (ADR 015) ------------------------------------------------------
    async def append_samples(self, session_id: str, rows: Sequence[MeterRow]) -> None:
        """One unlogged single-partition batch per (session, day) touched (chunked at
        `_SAMPLE_BATCH_ROWS` rows), plus the `meter_sample_days` row of a day this process has
        not written yet; all concurrently. Nothing is read. A key given twice keeps its last row."""
        if not rows:
            return
        ins = self._prep(
            "ins_sample",
            "INSERT INTO meter_samples (session_id, day, ts, measurand, phase, value, unit, raw_value, station_time) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
        )
        by_day: dict[int, dict[tuple[datetime, str, str], tuple[Any, ...]]] = {}
        for r in rows:
            ts = _utc_naive(r.timestamp)
            day = (ts - _EPOCH).days
            st = r.station_time
            keyed = by_day.get(day)
            if keyed is None:
                keyed = by_day[day] = {}
            keyed[(ts, r.measurand, r.phase)] = (
                session_id, day, ts, r.measurand, r.phase, float(r.value), r.unit, r.raw_value,
                UNSET_VALUE if st is None else _utc_naive(st),  # unset, not null: no tombstones
            )
        requests: list[tuple[Any, Any]] = []  # (statement, params): all bound before anything is sent
        new_days = []
        for day, keyed in by_day.items():
            params = list(keyed.values())
            for i in range(0, len(params), _SAMPLE_BATCH_ROWS):
                chunk = params[i:i + _SAMPLE_BATCH_ROWS]
                if len(chunk) == 1:
                    requests.append((ins.bind(chunk[0]), None))
                    continue
                batch = BatchStatement(BatchType.UNLOGGED)
                for p in chunk:
                    batch.add(ins, p)
                requests.append((batch, None))
            if (session_id, day) not in self._days_seen:
                new_days.append(day)
        await asyncio.gather(
            *(self._run(stmt, params, keys=_W_SAMPLES) for stmt, params in requests),
            *(self._note_day(session_id, day) for day in new_days),
        )

    async def _note_day(self, session_id: str, day: int) -> None:
        ps = self._prep("ins_sample_day", "INSERT INTO meter_sample_days (session_id, day) VALUES (?, ?)")
        await self._run(ps, (session_id, day))
        if len(self._days_seen) >= _DAYS_SEEN_MAX:
            self._days_seen.clear()  # forgetting costs one idempotent write per (session, day)
        self._days_seen.add((session_id, day))

    async def read_samples(
        self, session_id: str, *, after: tuple[datetime, str, str] | None = None, limit: int | None = None
    ) -> list[MeterRow]:
        """The session's days (one read), then each day's partition in order, page by page;
        without a limit the days are read concurrently."""
        if limit is not None and limit <= 0:
            return []
        days_ps = self._prep("sample_days", "SELECT day FROM meter_sample_days WHERE session_id = ?")
        days = [r.day for r in await self._read_all(days_ps, (session_id,))]
        cols = "SELECT ts, measurand, phase, value, unit, raw_value, station_time FROM meter_samples"
        whole = self._prep("read_samples", f"{cols} WHERE session_id = ? AND day = ?")
        tail = self._prep("read_samples_after", f"{cols} WHERE session_id = ? AND day = ? AND (ts, measurand, phase) > (?, ?, ?)")
        queries: list[tuple[PreparedStatement, tuple[Any, ...]]] = []
        if after is None:
            queries = [(whole, (session_id, day)) for day in days]
        else:
            a_ts = _utc_naive(after[0])
            a_day = (a_ts - _EPOCH).days
            for day in days:
                if day == a_day:
                    queries.append((tail, (session_id, day, a_ts, after[1], after[2])))
                elif day > a_day:
                    queries.append((whole, (session_id, day)))
        if limit is None:
            parts = await asyncio.gather(*(self._read_all(ps, params) for ps, params in queries))
            found = [r for part in parts for r in part]
        else:
            found = []
            for ps, params in queries:
                found.extend(await self._read_all(ps, params, limit=limit - len(found)))
                if len(found) >= limit:
                    break
        return [
            MeterRow(
                timestamp=r.ts.replace(tzinfo=UTC), measurand=r.measurand, phase=r.phase, value=r.value,
                unit=r.unit if r.unit is not None else "Wh", raw_value=r.raw_value or "",
                station_time=_aware(r.station_time),
            )
            for r in found
        ]

"""The driver session a `CassandraStore` runs on: requests, prepared statements, paging,
lightweight transactions, and the handoff of finished requests to asyncio.

Every port of the store (stations.py, tokens.py, ... each a mixin over this class) sends
its requests through `_run` (or `_read_all` for every page of a query, `_cas` for a
compare-and-set), which counts `ops` per (op, table): a request counts what its statement
names (services/common/store/metrics.py `statement_ops`), a batch the keys it is given.

- Prepared statements everywhere, prepared once per store under a name (`_prep`).
- The driver's futures are bridged to asyncio (`_Completions`: one loop wakeup per burst
  of finished requests).
- CPU: the driver's per-request Python cost (~50-100 us) dominates, so the hot paths send
  few requests (batches), reuse prepared statements and build no CQL per call. (The
  driver's default row factory makes a namedtuple class per result, ~0.1 ms of its I/O
  thread; it stays: `ResultSet.was_applied` refuses any other factory.)
- Server warnings that this design causes on purpose are not logged one by one
  (`_ExpectedWarnings`): a document batch is over Cassandra's batch_size_warn_threshold
  (5 KiB, a session's three rows alone are) but well under its fail threshold, and the
  driver logs every such warning (one per batch: hundreds a second, each formatted and
  written by the driver's I/O thread). The first one of a process is logged with a note,
  the rest are only counted (`_ExpectedWarnings.suppressed`); other warnings pass.
- "Cassandra did not answer" errors raise `StoreUnavailable` and make `healthy` False
  until a request succeeds again.
- Secured clusters (ADR 019 §2): `CassandraAuth` (services/common/engine_security.py)
  gives the driver a PlainTextAuthProvider (PasswordAuthenticator) and a TLS context.
  Nodes that answer but refuse us (wrong credentials, a certificate we do not trust) make
  `start` raise `ConfigError`, not `StoreUnavailable`: retrying cannot help.
- The keyspace is created (if it does not exist; an existing one is left alone) with
  `replication_factor` (CSMS_CASSANDRA_REPLICATION_FACTOR; 0 = the URL's ?replication=,
  else 1): `NetworkTopologyStrategy {local_dc: rf}` and DC-aware routing with `local_dc`
  as the local data centre when one is named (CSMS_CASSANDRA_LOCAL_DC), else
  `SimpleStrategy`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections import Counter, deque
from datetime import datetime, timezone
from typing import Any, Sequence
from urllib.parse import parse_qs, urlparse

from cassandra import AuthenticationFailed, ConsistencyLevel, OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, SimpleStatement

from services.common.engine_security import CassandraAuth
from services.common.errors import ConfigError, StoreUnavailable
from services.common.store.metrics import OpKey, count_op, statement_ops, time_op

__all__ = ["CassandraConnection", "parse_cassandra_url", "NO_KEYS", "time_in", "time_out", "utc_naive"]

UTC = timezone.utc
NO_KEYS: tuple[OpKey, ...] = ()
_PAGE_ROWS = 5000            # rows per page of a read

# Every table of schema.py: statements name them bare, `_q` qualifies them with the keyspace.
_TABLES = (
    "stations|tokens|tx_ids|tx_blocks|owners|docs|docs_by_parent|docs_by_kind_b|docs_by_kind|"
    "meter_samples|meter_sample_days|schema_migrations|"
    "station_events_by_type|station_events|station_event_months|file_chunks|files"
)
_TABLE_RE = re.compile(rf"\b(FROM|INTO|UPDATE|EXISTS|ON)\s+({_TABLES})\b")


def parse_cassandra_url(url: str) -> tuple[list[str], int, str, int]:
    """`cassandra://host[,host2]:9042/keyspace[?replication=3]` -> (hosts, port, keyspace, replication)."""
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


def time_out(dt: datetime | None) -> datetime | None:
    """Stored form of a datetime: naive UTC, as the driver stores it."""
    if dt is None:
        return None
    return dt.astimezone(UTC).replace(tzinfo=None)


def utc_naive(dt: datetime) -> datetime:
    """Naive UTC for the driver; a naive input is taken as UTC already (not local time)."""
    return dt if dt.tzinfo is None else dt.astimezone(UTC).replace(tzinfo=None)


def time_in(dt: datetime | None) -> datetime | None:
    """A timestamp as the driver returns it (naive UTC) -> aware UTC."""
    return None if dt is None else dt.replace(tzinfo=UTC)


class _ExpectedWarnings(logging.Filter):
    """Drops the driver's "Server warning: Batch for [...] is of size N, exceeding specified
    threshold" records after the first (module docstring); counts them."""

    suppressed = 0
    _seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Server warning: %s" or not record.args:
            return True
        text = str(record.args[0] if isinstance(record.args, tuple) else record.args)
        if not (text.startswith("Batch for [") and "exceeding specified threshold" in text):
            return True
        if not _ExpectedWarnings._seen:
            _ExpectedWarnings._seen = True
            record.msg = "%s (expected for document batches; further ones are not logged)"
            record.args = (f"Server warning: {text}",)
            return True
        _ExpectedWarnings.suppressed += 1
        return False


def _filter_expected_warnings() -> None:
    logger = logging.getLogger("cassandra.protocol")
    if not any(isinstance(f, _ExpectedWarnings) for f in logger.filters):
        logger.addFilter(_ExpectedWarnings())


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


def _refusal(exc: NoHostAvailable) -> str | None:
    """The hint when the nodes answered and refused us (credentials, TLS trust): retrying
    cannot help. None when they did not answer (an outage)."""
    errors = list(getattr(exc, "errors", {}).values())
    for err in errors:
        if isinstance(err, AuthenticationFailed):
            return f"{err}; check CSMS_CASSANDRA_USERNAME and CSMS_CASSANDRA_PASSWORD"
    for err in errors:
        if isinstance(err, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(err):
            return f"{err}; check CSMS_CASSANDRA_SSL_CAFILE and CSMS_CASSANDRA_SSL_CHECK_HOSTNAME"
    return None


class CassandraConnection:
    """Lifecycle, requests and counting of the store's driver session."""

    def __init__(
        self,
        url: str,
        *,
        request_timeout_s: float = 10.0,
        auth: CassandraAuth | None = None,
        replication_factor: int = 0,
        local_dc: str = "",
    ) -> None:
        """`auth`: credentials and TLS (none when left out). `replication_factor` (0 = the
        URL's) and `local_dc`: the keyspace's replication, see the module docstring."""
        self.hosts, self.port, self.keyspace, self.replication = parse_cassandra_url(url)
        if replication_factor < 0:
            raise ConfigError(f"CSMS_CASSANDRA_REPLICATION_FACTOR={replication_factor}: must be 0 (the URL's) or more")
        if replication_factor:
            self.replication = replication_factor
        self.local_dc = local_dc.strip()
        self.auth = auth if auth is not None else CassandraAuth()
        self.request_timeout_s = request_timeout_s
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._ps: dict[str, PreparedStatement] = {}
        self._ps_keys: dict[int, tuple[OpKey, ...]] = {}  # id(prepared statement) -> counted keys
        self._healthy = False
        self._done: _Completions | None = None
        # (op, table) -> requests sent; see services/common/store/metrics.py
        self.ops: Counter[OpKey] = Counter()

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        _filter_expected_warnings()

        def connect() -> Session:
            profile = ExecutionProfile(
                # no local DC named: the driver takes the first contact point's
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_dc or None)),
                request_timeout=self.request_timeout_s,
                consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            )
            auth = self.auth
            self._cluster = Cluster(
                self.hosts, port=self.port, protocol_version=5,
                execution_profiles={EXEC_PROFILE_DEFAULT: profile}, connect_timeout=10,
                auth_provider=PlainTextAuthProvider(auth.username, auth.password) if auth.username else None,
                ssl_context=auth.ssl_context,
            )
            return self._cluster.connect()

        try:
            self._session = await loop.run_in_executor(None, connect)
        except NoHostAvailable as exc:
            refused = _refusal(exc)
            if refused is not None:
                raise ConfigError(
                    f"cassandra at {self.hosts}:{self.port} refused the connection ({self.auth.describe()}): {refused}"
                ) from exc
            raise StoreUnavailable(f"cassandra at {self.hosts}:{self.port} unreachable: {exc}") from exc
        await self._run(f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = {self.replication_map()}", timeout=60)
        self._healthy = True

    def replication_map(self) -> str:
        """The keyspace's replication as CQL (module docstring)."""
        if self.local_dc:
            dc = self.local_dc.replace("'", "''")
            return f"{{'class': 'NetworkTopologyStrategy', '{dc}': {self.replication}}}"
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {self.replication}}}"

    async def close(self) -> None:
        self._healthy = False
        if self._cluster is not None:
            cluster = self._cluster
            self._cluster = self._session = None
            await asyncio.get_running_loop().run_in_executor(None, cluster.shutdown)

    @property
    def healthy(self) -> bool:
        return self._healthy

    # -- requests -------------------------------------------------------------------
    def _q(self, cql: str) -> str:
        return _TABLE_RE.sub(lambda m: f"{m.group(1)} {self.keyspace}.{m.group(2)}", cql)

    def _keys_of(self, stmt: Any) -> tuple[OpKey, ...]:
        if isinstance(stmt, str):
            return statement_ops(stmt)
        if isinstance(stmt, SimpleStatement):
            return statement_ops(stmt.query_string)
        if isinstance(stmt, PreparedStatement):
            return self._ps_keys.get(id(stmt), NO_KEYS)
        prepared = getattr(stmt, "prepared_statement", None)  # a BoundStatement
        return self._ps_keys.get(id(prepared), NO_KEYS) if prepared is not None else NO_KEYS

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
        counted = self._keys_of(stmt) if keys is None else keys
        for key in counted:
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
        started = time.perf_counter()
        rf = self._session.execute_async(stmt, params, timeout=timeout or self.request_timeout_s, paging_state=paging_state)
        rf.add_callbacks(done.ok, done.err, callback_args=(fut, rf), errback_args=(fut,))
        try:
            result = await fut
        except (NoHostAvailable, Unavailable, OperationTimedOut, ReadTimeout) as exc:
            self._healthy = False
            raise StoreUnavailable(f"cassandra: {exc!r}") from exc
        finally:  # csms_store_op_seconds: the request's round trip, failed ones too
            elapsed = time.perf_counter() - started
            for key in counted:
                time_op(key, elapsed)
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
            self._ps_keys[id(ps)] = statement_ops(cql)
        return ps

    def _forget_prepared(self) -> None:
        """After a schema change: tables may have changed under prepared statements."""
        self._ps.clear()
        self._ps_keys.clear()

    async def _cas(self, stmt: PreparedStatement, params: tuple[Any, ...], reread: PreparedStatement, reread_params: tuple[Any, ...]) -> tuple[bool, Any]:
        """Run an LWT; on a timeout (outcome unknown) re-read at SERIAL and report what is there."""
        try:
            rows = await self._run(stmt, params)
            row = rows.one()
            return bool(row[0]), row
        except WriteTimeout:
            current = (await self._run(reread, reread_params)).one()
            return False, current

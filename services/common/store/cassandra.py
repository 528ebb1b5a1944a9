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
  Paxos round per write; a kind is either always versioned or never.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import orjson
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlparse

from cassandra import ConsistencyLevel, OperationTimedOut, Unavailable, WriteTimeout, ReadTimeout
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, SimpleStatement

from services.common.errors import ConfigError, StoreUnavailable
from services.common.store.port import Owner, Station, Token

__all__ = ["CassandraStore"]

log = logging.getLogger("csms.store.cassandra")

UTC = timezone.utc
_BLOCK = 100
_MAX_TX_ID = 2**31 - 1

MIGRATIONS: list[tuple[int, list[str]]] = [
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
]


_TABLES = "stations|tokens|tx_ids|tx_blocks|owners|docs|docs_by_parent|docs_by_kind|schema_migrations"
_TABLE_RE = re.compile(rf"\b(FROM|INTO|UPDATE|EXISTS|ON)\s+({_TABLES})\b")


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


def _aware(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.replace(tzinfo=UTC)


class CassandraStore:
    def __init__(self, url: str, *, request_timeout_s: float = 10.0) -> None:
        self.hosts, self.port, self.keyspace, self.replication = _parse(url)
        self.request_timeout_s = request_timeout_s
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._ps: dict[str, PreparedStatement] = {}
        self._block: list[int] = []  # [next, end) of the locally owned id block
        self._block_lock = asyncio.Lock()
        self._healthy = False

    # -- plumbing -----------------------------------------------------------------
    def _q(self, cql: str) -> str:
        return _TABLE_RE.sub(lambda m: f"{m.group(1)} {self.keyspace}.{m.group(2)}", cql)

    async def _run(self, stmt: Any, params: Any = None, *, timeout: float | None = None) -> Any:
        if isinstance(stmt, str):
            stmt = self._q(stmt)
        elif isinstance(stmt, SimpleStatement):
            stmt = SimpleStatement(self._q(stmt.query_string), consistency_level=stmt.consistency_level)
        if self._session is None:
            raise StoreUnavailable("cassandra session not started")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        rf = self._session.execute_async(stmt, params, timeout=timeout or self.request_timeout_s)

        def ok(rows: Any) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(rf))

        def err(exc: BaseException) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_exception(exc))

        rf.add_callbacks(ok, err)
        try:
            result = await fut
        except (NoHostAvailable, Unavailable, OperationTimedOut, ReadTimeout) as exc:
            self._healthy = False
            raise StoreUnavailable(f"cassandra: {exc!r}") from exc
        self._healthy = True
        return result.result()

    def _prep(self, name: str, cql: str, consistency: int = ConsistencyLevel.LOCAL_QUORUM, serial: int | None = None) -> PreparedStatement:
        ps = self._ps.get(name)
        if ps is None:
            assert self._session is not None
            ps = self._session.prepare(self._q(cql))
            ps.consistency_level = consistency
            if serial is not None:
                ps.serial_consistency_level = serial
            self._ps[name] = ps
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
        rows = await self._run("SELECT version FROM schema_migrations")
        done = {r.version for r in rows}
        for version, statements in MIGRATIONS:
            if version in done:
                continue
            for cql in statements:
                await self._run(cql, timeout=60)
            await self._run("INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)", (version, _ts(datetime.now(UTC))))
            log.info("cassandra keyspace %s migrated to version %d", self.keyspace, version)
        self._ps.clear()  # tables may have changed under prepared statements

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
    async def put_doc(self, kind: str, doc_id: str, doc: dict[str, Any], *, parent: str = "", version: int | None = None) -> bool:
        now = datetime.now(UTC)
        body = orjson.dumps(doc).decode()
        if version is not None:
            row = (await self._run(self._prep("get_doc_version", "SELECT version FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
            if row is not None and row.version is not None and int(row.version) >= version:
                return False
            ts_clause, params_ts = " USING TIMESTAMP ?", (int(version),)
        else:
            ts_clause, params_ts = "", ()
        naive = _ts(now)
        p1 = self._prep(f"put_doc{bool(ts_clause)}", f"INSERT INTO docs (kind, id, parent, version, updated_at, body) VALUES (?,?,?,?,?,?){ts_clause}")
        p2 = self._prep(f"put_doc_parent{bool(ts_clause)}", f"INSERT INTO docs_by_parent (kind, parent, id, updated_at, body) VALUES (?,?,?,?,?){ts_clause}")
        p3 = self._prep(f"put_doc_kind{bool(ts_clause)}", f"INSERT INTO docs_by_kind (kind, id, updated_at, body) VALUES (?,?,?,?){ts_clause}")
        await asyncio.gather(
            self._run(p1, (kind, doc_id, parent, version, naive, body) + params_ts),
            self._run(p2, (kind, parent, doc_id, naive, body) + params_ts),
            self._run(p3, (kind, doc_id, naive, body) + params_ts),
        )
        return True

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        row = (await self._run(self._prep("get_doc", "SELECT body FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
        return orjson.loads(row.body) if row is not None and row.body is not None else None

    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        if parent is None:
            rows = await self._run(self._prep("list_docs_kind", "SELECT id, updated_at, body FROM docs_by_kind WHERE kind = ?"), (kind,))
        else:
            rows = await self._run(self._prep("list_docs_parent", "SELECT id, updated_at, body FROM docs_by_parent WHERE kind = ? AND parent = ?"), (kind, parent))
        items = sorted(((r.updated_at or datetime.min, r.id, r.body) for r in rows if r.body is not None), key=lambda t: (t[0], t[1]), reverse=True)
        return [orjson.loads(body) for _, _, body in items[:limit]]

    async def delete_doc(self, kind: str, doc_id: str) -> bool:
        row = (await self._run(self._prep("get_doc_meta", "SELECT parent, version FROM docs WHERE kind = ? AND id = ?"), (kind, doc_id))).one()
        if row is None:
            return False
        # a delete must shadow versioned writes (USING TIMESTAMP version): delete above the version
        ts = int(row.version) + 1 if row.version is not None else None
        clause = f" USING TIMESTAMP {ts}" if ts is not None else ""
        await asyncio.gather(
            self._run(f"DELETE FROM docs{clause} WHERE kind = %s AND id = %s", (kind, doc_id)),
            self._run(f"DELETE FROM docs_by_parent{clause} WHERE kind = %s AND parent = %s AND id = %s", (kind, row.parent or "", doc_id)),
            self._run(f"DELETE FROM docs_by_kind{clause} WHERE kind = %s AND id = %s", (kind, doc_id)),
        )
        return True

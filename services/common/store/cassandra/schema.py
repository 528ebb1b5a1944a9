"""Cassandra schema, as ordered, versioned migrations, and `migrate()` that applies them.

A step is a CQL statement or a coroutine of the store (a data copy). Each migration runs
once and is recorded in `schema_migrations`; `migrate()` is re-runnable. Never edit a
released migration: append a new one.

`docs_by_kind_b` spreads a kind's documents over KIND_BUCKETS partitions (`bucket`), so no
kind is one ever-growing partition; migration 2 copied the old single-partition
`docs_by_kind` into it.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from datetime import datetime, timezone
from typing import Awaitable, Callable

from services.common.store.cassandra.connection import NO_KEYS, CassandraConnection, time_out

__all__ = ["KIND_BUCKETS", "MIGRATIONS", "Step", "bucket", "CassandraSchema"]

log = logging.getLogger("csms.store.cassandra")

UTC = timezone.utc
KIND_BUCKETS = 16            # docs_by_kind_b partitions per kind; never change on a live keyspace


def bucket(doc_id: str) -> int:
    """Stable across processes (unlike hash()): the bucket of a document in docs_by_kind_b."""
    return zlib.crc32(doc_id.encode("utf-8")) % KIND_BUCKETS


async def _copy_docs_by_kind(store: CassandraSchema) -> None:
    """Migration 2: copy the single-partition-per-kind `docs_by_kind` into the bucketed
    `docs_by_kind_b`, page by page, keeping each row's write time (so a newer write that
    already reached the new table is not overwritten by the copy, and versioned rows keep
    their version-timestamps)."""
    await store._copy_docs_by_kind()


async def _add_station_security_columns(store: CassandraSchema) -> None:
    """Migration 4 (ADR 017): the station security columns. ALTER ... ADD of an existing
    column fails, so only the missing ones are added (a migration interrupted half-way
    re-runs). Rows written before read the new cells as null: profile None (= 1), nothing
    pending, the default ping period."""
    await store._add_columns("stations", STATION_SECURITY_COLUMNS)


STATION_SECURITY_COLUMNS = (
    ("security_profile", "int"),
    ("pending_security_profile", "int"),
    ("pending_password_hash", "text"),
    ("pending_password_fingerprint", "text"),
    ("ws_ping_interval_s", "double"),
)


async def _add_station_cost_messages_column(store: CassandraSchema) -> None:
    """Migration 5 (ADR 018 §6): the station's 1.6 pricing extension flag. Only added when
    missing (re-runnable); rows written before read the cell as null: not enabled."""
    await store._add_columns("stations", STATION_COST_COLUMNS)


STATION_COST_COLUMNS = (("cost_messages", "boolean"),)

Step = str | Callable[["CassandraSchema"], Awaitable[None]]

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
    (3, [
        # ADR 016 §3: station history. `month` = yyyymm (UTC) of `at`; rows carry a TTL.
        """CREATE TABLE IF NOT EXISTS station_events (station_id text, month int, at timestamp, event_id text,
           type text, body text, PRIMARY KEY ((station_id, month), at, event_id))
           WITH CLUSTERING ORDER BY (at DESC, event_id DESC)""",
        """CREATE TABLE IF NOT EXISTS station_events_by_type (station_id text, type text, month int, at timestamp,
           event_id text, body text, PRIMARY KEY ((station_id, type, month), at, event_id))
           WITH CLUSTERING ORDER BY (at DESC, event_id DESC)""",
        # (month, type) pairs holding rows; noted_at: when this index row was last written
        """CREATE TABLE IF NOT EXISTS station_event_months (station_id text, month int, type text, noted_at timestamp,
           PRIMARY KEY ((station_id), month, type)) WITH CLUSTERING ORDER BY (month DESC, type ASC)""",
        # ADR 016 §4: files in 256 KiB chunks, one partition per file; the info row last.
        """CREATE TABLE IF NOT EXISTS file_chunks (file_id text, gen text, seq int, data blob,
           PRIMARY KEY ((file_id), gen, seq))""",
        """CREATE TABLE IF NOT EXISTS files (file_id text PRIMARY KEY, gen text, size bigint, sha256 text,
           content_type text, name text, created_at timestamp)""",
    ]),
    (4, [_add_station_security_columns]),
    (5, [_add_station_cost_messages_column]),
]


class CassandraSchema(CassandraConnection):
    async def migrate(self) -> None:
        await self._run("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamp)", timeout=60)
        rows = await self._run("SELECT version FROM schema_migrations", keys=NO_KEYS)
        done = {r.version for r in rows}
        for version, steps in MIGRATIONS:
            if version in done:
                continue
            for step in steps:
                if isinstance(step, str):
                    await self._run(step, timeout=60)
                else:
                    self._forget_prepared()  # tables created by this migration: prepare afresh
                    await step(self)
            await self._run(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)",
                (version, time_out(datetime.now(UTC))), keys=NO_KEYS,
            )
            log.info("cassandra keyspace %s migrated to version %d", self.keyspace, version)
        self._forget_prepared()  # tables may have changed under prepared statements

    async def _add_columns(self, table: str, columns: tuple[tuple[str, str], ...]) -> None:
        rows = await self._run(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
            (self.keyspace, table), keys=NO_KEYS, timeout=60,
        )
        present = {r.column_name for r in rows}
        for name, cql_type in columns:
            if name not in present:
                await self._run(f"ALTER TABLE {self.keyspace}.{table} ADD {name} {cql_type}", keys=NO_KEYS, timeout=60)
                log.info("cassandra keyspace %s: added %s.%s", self.keyspace, table, name)

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
                self._run(insert, (r.kind, bucket(r.id), r.id, r.updated_at, r.body, r.written), timeout=60)
                for r in rows
            ))
            copied += len(rows)
            state = rs.paging_state
            if state is None:
                break
        log.info("cassandra keyspace %s: copied %d rows of docs_by_kind into docs_by_kind_b", self.keyspace, copied)

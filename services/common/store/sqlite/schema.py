"""SQLite schema, as ordered, versioned migrations, and `migrate()` that applies them.

Each migration is applied once, in order, inside its own transaction, and recorded
in `schema_migrations`; `SqliteStore.migrate()` is therefore re-runnable. Never edit
a released migration: append a new one.

Datetimes are TEXT in one fixed-width UTC format (`2026-11-28T04:21:16.004000Z`), so
lexicographic order is chronological order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.common.store.sqlite.connection import SqliteConnection, time_out

__all__ = ["Migration", "MIGRATIONS", "BOOKKEEPING", "TX_ID_COUNTER", "SqliteSchema"]

log = logging.getLogger("csms.store.sqlite")

TX_ID_COUNTER = "tx_id"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema: stations, tokens, transaction ids, ownership, documents",
        (
            """
            CREATE TABLE stations (
                id                   TEXT PRIMARY KEY,
                password_hash        TEXT NOT NULL DEFAULT '',
                password_fingerprint TEXT NOT NULL DEFAULT '',
                site_id              TEXT,
                tariff_id            TEXT,
                enabled              INTEGER NOT NULL DEFAULT 1,
                created_at           TEXT,
                max_current_a        REAL,
                phases               INTEGER,
                priority             INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX stations_by_site ON stations (site_id, id)",
            """
            CREATE TABLE tokens (
                id_token   TEXT PRIMARY KEY,
                status     TEXT NOT NULL,
                expires_at TEXT,
                group_id   TEXT,
                updated_at TEXT
            )
            """,
            """
            CREATE TABLE tx_ids (
                business_key TEXT PRIMARY KEY,
                tx_id        INTEGER NOT NULL UNIQUE,
                created_at   TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE counters (
                name  TEXT PRIMARY KEY,
                value INTEGER NOT NULL
            )
            """,
            f"INSERT INTO counters (name, value) VALUES ('{TX_ID_COUNTER}', 0)",
            """
            CREATE TABLE owners (
                station_id TEXT PRIMARY KEY,
                gateway_id TEXT NOT NULL,
                epoch      INTEGER NOT NULL,
                connected  INTEGER NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE docs (
                kind       TEXT NOT NULL,
                id         TEXT NOT NULL,
                parent     TEXT NOT NULL DEFAULT '',
                version    INTEGER,
                updated_at TEXT NOT NULL,
                body       TEXT NOT NULL,
                PRIMARY KEY (kind, id)
            )
            """,
            "CREATE INDEX docs_by_parent ON docs (kind, parent, updated_at)",
            "CREATE INDEX docs_by_update ON docs (kind, updated_at)",
        ),
    ),
    Migration(
        2,
        "ADR 015: append-only meter samples, documents paged by id",
        (
            # One row per (session, effective time, measurand, phase): re-appending the same
            # key overwrites it (idempotent). WITHOUT ROWID clusters the rows by that key, so a
            # session's samples are one contiguous range read in order.
            """
            CREATE TABLE meter_samples (
                session_id   TEXT NOT NULL,
                ts           TEXT NOT NULL,
                measurand    TEXT NOT NULL,
                phase        TEXT NOT NULL,
                value        REAL NOT NULL,
                unit         TEXT NOT NULL DEFAULT 'Wh',
                raw_value    TEXT NOT NULL DEFAULT '',
                station_time TEXT,
                PRIMARY KEY (session_id, ts, measurand, phase)
            ) WITHOUT ROWID
            """,
            # list_docs_page(parent=...) pages by id within one parent.
            "CREATE INDEX docs_by_parent_id ON docs (kind, parent, id)",
        ),
    ),
    Migration(
        3,
        "ADR 016: station history log, files",
        (
            # A station's history, newest first (the primary key walked backwards); one row
            # per (station, receive time, event id): re-appending overwrites (idempotent).
            """
            CREATE TABLE station_events (
                station_id TEXT NOT NULL,
                at         TEXT NOT NULL,
                event_id   TEXT NOT NULL,
                type       TEXT NOT NULL,
                body       TEXT NOT NULL,
                PRIMARY KEY (station_id, at, event_id)
            ) WITHOUT ROWID
            """,
            # `type=` filters read only that type's rows; pruning by age reads only old rows.
            "CREATE INDEX station_events_by_type ON station_events (station_id, type, at, event_id)",
            "CREATE INDEX station_events_by_at ON station_events (at)",
            # Files in chunks: a write adds the chunks of a new generation, then points the
            # `files` row at it (one transaction) and drops the earlier generation's chunks.
            """
            CREATE TABLE files (
                file_id      TEXT PRIMARY KEY,
                gen          TEXT NOT NULL,
                size         INTEGER NOT NULL,
                sha256       TEXT NOT NULL,
                content_type TEXT NOT NULL,
                name         TEXT NOT NULL,
                created_at   TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE file_chunks (
                file_id TEXT NOT NULL,
                gen     TEXT NOT NULL,
                seq     INTEGER NOT NULL,
                data    BLOB NOT NULL,
                PRIMARY KEY (file_id, gen, seq)
            )
            """,  # a rowid table: WITHOUT ROWID suits small rows, not 256 KiB ones
        ),
    ),
    Migration(
        4,
        "ADR 017: station security profile, password rotation, ping interval",
        (
            # Rows written before read as: profile None (= 1), no pending profile or password,
            # the default ping period.
            "ALTER TABLE stations ADD COLUMN security_profile INTEGER",
            "ALTER TABLE stations ADD COLUMN pending_security_profile INTEGER",
            "ALTER TABLE stations ADD COLUMN pending_password_hash TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE stations ADD COLUMN pending_password_fingerprint TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE stations ADD COLUMN ws_ping_interval_s REAL",
        ),
    ),
    Migration(
        5,
        "ADR 018: station cost messages (1.6 pricing extension)",
        (
            # Rows written before read as: the extension not enabled.
            "ALTER TABLE stations ADD COLUMN cost_messages INTEGER NOT NULL DEFAULT 0",
        ),
    ),
)


class SqliteSchema(SqliteConnection):
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
                    (m.version, m.name, time_out(self._clock())),
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

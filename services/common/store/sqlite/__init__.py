"""`sqlite:///path`: the store of embedded mode (`csms run`), on aiosqlite.

URLs: `sqlite:///./csms.db` (relative), `sqlite:////abs/path.db` (absolute),
`sqlite:///:memory:` (one private in-memory database per store),
`sqlite:///file:...` (an SQLite URI, query kept: `sqlite:///file:/name?vfs=memdb` is an
in-memory database several stores share while one holds it open).

One module per port, each a mixin over the one connection (connection.py: lifecycle,
locking, error mapping, operation counting); `SqliteStore` composes them:
stations.py, tokens.py, tx_ids.py, ownership.py, documents.py, samples.py,
station_events.py (ADR 016 history), files.py (ADR 016 files in chunks), and schema.py
(the migrations and `migrate()`). Row mappers shared with Cassandra: ../rows.py.

Batches (ADR 015): `put_docs` is one transaction running one upsert statement over the
documents; `get_docs` one query (the ids as one JSON array parameter); `append_samples` one
statement over a JSON array of rows. `ops` counts statements per (op, table)
(services/common/store/metrics.py): an `executemany` counts once.
"""

from __future__ import annotations

from services.common.store.sqlite.connection import parse_sqlite_url
from services.common.store.sqlite.documents import SqliteDocuments
from services.common.store.sqlite.files import SqliteFiles
from services.common.store.sqlite.ownership import SqliteOwnership
from services.common.store.sqlite.samples import SqliteSamples
from services.common.store.sqlite.schema import SqliteSchema
from services.common.store.sqlite.station_events import SqliteStationEvents
from services.common.store.sqlite.stations import SqliteStations
from services.common.store.sqlite.tokens import SqliteTokens
from services.common.store.sqlite.tx_ids import MAX_TRANSACTION_ID, SqliteTxIds

__all__ = ["SqliteStore", "parse_sqlite_url", "MAX_TRANSACTION_ID"]


class SqliteStore(
    SqliteSchema,
    SqliteStations,
    SqliteTokens,
    SqliteTxIds,
    SqliteOwnership,
    SqliteDocuments,
    SqliteSamples,
    SqliteStationEvents,
    SqliteFiles,
):
    """The `Store` port on one aiosqlite connection (see the module docstring)."""

    def __repr__(self) -> str:
        return f"SqliteStore({self.url!r})"

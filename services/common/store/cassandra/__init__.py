"""`cassandra://host[,host2]:9042/keyspace[?replication=3]`: the store on Apache Cassandra.

One module per port, each a mixin over the one driver session (connection.py: requests,
prepared statements, paging, compare-and-set, operation counting); `CassandraStore`
composes them: stations.py, tokens.py, tx_ids.py (id blocks claimed by LWT), ownership.py
(epochs by compare-and-set), documents.py (three tables per document, versions as write
timestamps), samples.py (ADR 015: partitioned by session and day), station_events.py
(ADR 016 history: by station and month, by type, with a TTL), files.py (ADR 016 files in
chunks, a partition per file), and schema.py (the
migrations, `migrate()`, the docs_by_kind_b buckets). Row mappers shared with SQLite:
../rows.py.

`ops` counts requests per (op, table) (services/common/store/metrics.py); a batch counts
one write per table it touches, a paged read one read per page.
"""

from __future__ import annotations

from services.common.engine_security import CassandraAuth
from services.common.store.cassandra.connection import parse_cassandra_url
from services.common.store.cassandra.documents import DOCS_PER_BATCH, CassandraDocuments
from services.common.store.cassandra.files import CassandraFiles
from services.common.store.cassandra.ownership import CassandraOwnership
from services.common.store.cassandra.samples import CassandraSamples
from services.common.store.cassandra.schema import KIND_BUCKETS, CassandraSchema
from services.common.store.cassandra.station_events import CassandraStationEvents
from services.common.store.cassandra.stations import CassandraStations
from services.common.store.cassandra.tokens import CassandraTokens
from services.common.store.cassandra.tx_ids import CassandraTxIds

__all__ = ["CassandraStore", "KIND_BUCKETS", "parse_cassandra_url"]


class CassandraStore(
    CassandraSchema,
    CassandraStations,
    CassandraTokens,
    CassandraTxIds,
    CassandraOwnership,
    CassandraDocuments,
    CassandraSamples,
    CassandraStationEvents,
    CassandraFiles,
):
    """The `Store` port on one Cassandra session (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        request_timeout_s: float = 10.0,
        batch_docs: bool = True,
        docs_per_batch: int = DOCS_PER_BATCH,
        get_docs_in: bool = True,
        station_events_retention_days: float = 90,
        auth: CassandraAuth | None = None,
        replication_factor: int = 0,
        local_dc: str = "",
    ) -> None:
        """`batch_docs`, `docs_per_batch`, `get_docs_in`: tuning switches for
        bench/store_ops.py (see documents.py). `station_events_retention_days`: the TTL of
        station history rows (CSMS_STATION_EVENTS_RETENTION_DAYS; 0 = kept forever). `auth`,
        `replication_factor`, `local_dc`: secured clusters (connection.py)."""
        super().__init__(url, request_timeout_s=request_timeout_s, auth=auth, replication_factor=replication_factor,
                         local_dc=local_dc)
        self._init_tx_ids()
        self._init_documents(batch_docs=batch_docs, docs_per_batch=docs_per_batch, get_docs_in=get_docs_in)
        self._init_samples()
        self._init_station_events(retention_days=station_events_retention_days)

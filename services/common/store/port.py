"""The store port: small Protocols, each handler asks for the narrowest one.

Adapters: `sqlite:///path` (services/common/store/sqlite/) and
`cassandra://host:9042/keyspace` (services/common/store/cassandra/), each one module
per port over one connection, row mappers shared in store/rows.py. Both pass
tests/contract/test_store_contract.py. All writes are idempotent upserts: applying
the same write twice leaves the same state.

Gateway-critical data is typed (stations, tokens, transaction ids, ownership).
State owned by processors (sessions, station status projection, tariffs, CDRs,
sites, command records) is stored as JSON documents keyed by (kind, id), with an
optional `parent` to list by (e.g. sessions by station, CDRs by session) and an
optional monotonic `version` (a write with a version not greater than the stored
one changes nothing, so redelivered or stale writes are harmless). A kind is either
always versioned or never (Cassandra orders versioned writes by `USING TIMESTAMP`).

Meter samples (ADR 015) are append-only rows keyed (session, timestamp, measurand,
phase), read back in key order: `SampleStore`.

Station history (ADR 016 §3) is an append-only log of rows keyed (station, receive time,
event id), read newest first and paged by a cursor: `StationEventLog`. Files (uploaded
logs and diagnostics, ADR 016 §4) are streamed in and out: `FileStore`, whose adapters are
the store itself (256 KiB chunks) or a directory (services/common/store/files.py).

Operation counting (ADR 015, "per-event store traffic is constant"): every adapter
keeps `ops: collections.Counter[tuple[str, str]]` keyed ("read" | "write", table) and
feeds `csms_store_ops_total{op,table}` (services/common/store/metrics.py). One
operation is one statement or request sent to the database:
- SQLite: one statement, and one `executemany` (a batch of rows in one transaction)
  counts once;
- Cassandra: one request per table it touches (a single-table batch counts one write,
  a batch over docs + its index tables one write per table), one per page of a read.
Tests compare these counts, never timings: e.g. appending N samples costs the same
number of operations whether the session already holds 10 or 2,000.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterable, AsyncIterator, Collection, Protocol, Sequence

__all__ = [
    "Station",
    "Token",
    "Owner",
    "StationStore",
    "TokenStore",
    "TransactionIdAllocator",
    "OwnershipStore",
    "DocumentStore",
    "DocWrite",
    "MeterRow",
    "SampleStore",
    "StationEventRow",
    "StationEventLog",
    "FileInfo",
    "FileTooLarge",
    "FileStore",
    "Store",
]


@dataclass(frozen=True, slots=True)
class Station:
    id: str
    password_hash: str            # services.common.passwords slow hash (scrypt); "" = none set
    password_fingerprint: str = ""  # HMAC(pepper, ...) for storm-rate verification; see ADR 002
    site_id: str | None = None
    tariff_id: str | None = None
    enabled: bool = True
    created_at: datetime | None = None
    # smart charging inputs (per station, optional)
    max_current_a: float | None = None
    phases: int | None = None
    priority: int = 0
    # security (ADR 017): the profile the station must connect with (None: created before
    # profiles were stored = 1), a raised profile not yet used by the station, the password
    # being rotated to (accepted alongside the current one until the station uses it), and
    # a per-station WebSocket ping period (None = CSMS_WS_PING_INTERVAL_S)
    security_profile: int | None = None
    pending_security_profile: int | None = None
    pending_password_hash: str = ""
    pending_password_fingerprint: str = ""
    ws_ping_interval_s: float | None = None
    # ADR 018 §6: a 1.6 station that has the Open Charge Alliance's pricing extension
    # (DataTransfer org.openchargealliance.costmsg) gets SetUserPrice / RunningCost / FinalCost
    cost_messages: bool = False


@dataclass(frozen=True, slots=True)
class Token:
    id_token: str
    status: str = "Accepted"     # Accepted | Blocked | Expired | Invalid
    expires_at: datetime | None = None
    group_id: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Owner:
    station_id: str
    gateway_id: str
    epoch: int
    connected: bool = True
    updated_at: datetime | None = None


class StationStore(Protocol):
    async def get_station(self, station_id: str) -> Station | None: ...
    async def get_stations(self, station_ids: Sequence[str]) -> dict[str, Station]:
        """The stations of `station_ids` that exist, by id (one read for a batch: the
        gateway's handshakes in a reconnect storm, services/gateway/coalesce.py)."""
        ...
    async def put_station(self, station: Station) -> None: ...
    async def delete_station(self, station_id: str) -> bool: ...
    async def list_stations(self, *, site_id: str | None = None, limit: int = 1000) -> list[Station]: ...


class TokenStore(Protocol):
    async def get_token(self, id_token: str) -> Token | None: ...
    async def put_token(self, token: Token) -> None: ...
    async def delete_token(self, id_token: str) -> bool: ...
    async def list_tokens(self, *, limit: int = 1000) -> list[Token]: ...


class TransactionIdAllocator(Protocol):
    async def allocate_transaction_id(self, business_key: str) -> int:
        """A positive int32 unique across all gateways and durable; the same business key
        (station, connector, idTag, meterStart, timestamp) always gets the same id back."""
        ...


class OwnershipStore(Protocol):
    async def claim_station(self, station_id: str, gateway_id: str) -> int:
        """Record that `gateway_id` now holds the station's socket; returns the new epoch,
        strictly greater than every earlier epoch of the station (compare-and-set)."""
        ...

    async def claim_stations(self, station_ids: Sequence[str], gateway_id: str) -> dict[str, tuple[int, Owner | None]]:
        """`claim_station` for each distinct id, as one batch: id -> (new epoch, the owner
        record the claim replaced, None for a first claim)."""
        ...

    async def get_owner(self, station_id: str) -> Owner | None: ...

    async def release_station(self, station_id: str, gateway_id: str, epoch: int) -> bool:
        """Mark disconnected, only if (gateway_id, epoch) still owns it; True if it did."""
        ...


@dataclass(frozen=True, slots=True)
class DocWrite:
    """One document of a `put_docs` batch (see DocumentStore.put_doc for the fields)."""

    doc_id: str
    doc: dict[str, Any]
    parent: str = ""
    version: int | None = None


@dataclass(frozen=True, slots=True)
class MeterRow:
    """One stored meter sample of a session (ADR 015). Key: (session, timestamp,
    measurand, phase): appending the same key again overwrites it (idempotent)."""

    timestamp: datetime          # effective time, aware UTC, millisecond precision
    measurand: str
    phase: str
    value: float                 # 0.0 when the value was not a usable number
    unit: str = "Wh"
    raw_value: str = ""          # the value as sent when it was not a usable number
    station_time: datetime | None = None  # as sent, only when it was replaced (clock suspect)


class SampleStore(Protocol):
    async def append_samples(self, session_id: str, rows: Sequence[MeterRow]) -> None:
        """Idempotent upsert of a session's samples, without reading anything: the cost
        depends on the rows appended, never on how many the session already holds (SQLite:
        one transaction; Cassandra: one unlogged batch per (session, day) partition touched,
        plus one small write the first time this process sees a (session, day))."""
        ...

    async def append_samples_many(self, items: Sequence[tuple[str, Sequence[MeterRow]]]) -> None:
        """`append_samples` for several sessions at once (a batch's appends), in as few
        requests as the store allows (SQLite: one statement; Cassandra: unlogged batches
        of a few sessions' partitions each, sent concurrently). Returns once every row is
        durable; on a failure some may have been written (the appends are idempotent)."""
        ...

    async def read_samples(
        self, session_id: str, *, after: tuple[datetime, str, str] | None = None, limit: int | None = None
    ) -> list[MeterRow]:
        """The session's samples in (timestamp, measurand, phase) order, strictly after
        `after` when given, at most `limit` (None: all)."""
        ...


class DocumentStore(Protocol):
    async def put_doc(
        self,
        kind: str,
        doc_id: str,
        doc: dict[str, Any],
        *,
        parent: str = "",
        version: int | None = None,
    ) -> bool:
        """Upsert; with `version`, only when it is greater than the stored one. True if written."""
        ...

    async def put_doc_if(
        self,
        kind: str,
        doc_id: str,
        doc: dict[str, Any],
        *,
        parent: str = "",
        expected_version: int | None,
        version: int,
    ) -> bool:
        """Compare-and-set: write `doc` at `version` only when the stored document's version is
        `expected_version` (None: there is no document). True if written. Atomic across
        processes (Cassandra: a lightweight transaction), unlike put_doc's versioned write,
        which keeps the highest version but may tell two racing writers both that they won.
        A kind written with put_doc_if is never written with put_doc/put_docs (on Cassandra
        their `USING TIMESTAMP <version>` cells and Paxos's clock-time cells do not mix)."""
        ...

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...

    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first by update time; `parent` filters (e.g. sessions of one station)."""
        ...

    async def delete_doc(self, kind: str, doc_id: str) -> bool: ...

    async def get_docs(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored documents of `ids` (missing ones are absent from the result)."""
        ...

    async def put_docs(self, kind: str, items: Sequence[DocWrite]) -> None:
        """Upsert many documents without reading first: a versioned document keeps the
        highest version whatever the arrival order (an older write changes nothing).
        Unlike put_doc it does not say which writes landed. SQLite: one transaction;
        Cassandra: one request per document, the documents concurrently."""
        ...

    async def list_docs_page(
        self, kind: str, *, parent: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the kind's documents (of one `parent` when given) and the opaque
        cursor of the next page (None: no more). Pages follow the adapter's key order, not
        update time (SQLite: id; Cassandra: hash bucket, then id), so a document updated
        during the listing is neither skipped nor repeated: every document present for the
        whole listing is returned exactly once; one written or deleted meanwhile may or may
        not be. A cursor the adapter did not issue raises ValueError."""
        ...


@dataclass(frozen=True, slots=True)
class StationEventRow:
    """One row of a station's history (ADR 016 §3). Identity: (station_id, at, event_id):
    appending the same identity again overwrites the row (idempotent)."""

    station_id: str
    at: datetime          # receive time, aware UTC, millisecond precision: the ordering key
    event_id: str         # unique per event; (station_id, at, event_id) is the row's identity
    type: str             # filter key: the event body's name ("FirmwareStatus", "CommandIssued", "Outage", ...)
    body: dict[str, Any]  # a JSON-able document (what the API shows for the event)


class StationEventLog(Protocol):
    async def append_station_events(self, rows: Sequence[StationEventRow]) -> None:
        """Idempotent upsert by (station_id, at, event_id), without reading (rows of several
        stations allowed). `at` is kept to the millisecond (finer digits are dropped)."""
        ...

    async def read_station_events(
        self,
        station_id: str,
        *,
        types: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[StationEventRow]:
        """Newest first by (at, event_id): rows with since <= at < until, strictly older than
        `before` (a cursor: the (at, event_id) of the last row of the previous page), of
        `types` only when given, at most `limit`."""
        ...

    async def prune_station_events(self, older_than: datetime) -> int:
        """Delete rows older than `older_than` (SQLite) and say how many; Cassandra rows
        expire by TTL (CSMS_STATION_EVENTS_RETENTION_DAYS) and this returns 0."""
        ...


@dataclass(frozen=True, slots=True)
class FileInfo:
    file_id: str
    size: int
    sha256: str          # hex
    content_type: str
    name: str            # file name as uploaded ("" if none)
    created_at: datetime


class FileTooLarge(Exception):
    """A file written past its `max_bytes`: nothing of it was kept."""


class FileStore(Protocol):
    async def write_file(
        self,
        file_id: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
        name: str = "",
    ) -> FileInfo:
        """Stream `chunks` into file `file_id` (replacing any earlier one only once complete);
        raises FileTooLarge (and keeps nothing) past max_bytes. A file id that is empty,
        longer than 512 characters or holds a control character raises ValueError."""
        ...

    async def file_info(self, file_id: str) -> FileInfo | None: ...

    def read_file(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes in chunks (raises FileNotFoundError, at the first iteration,
        when there is none)."""
        ...

    async def delete_file(self, file_id: str) -> bool: ...


class Store(
    StationStore,
    TokenStore,
    TransactionIdAllocator,
    OwnershipStore,
    DocumentStore,
    SampleStore,
    StationEventLog,
    FileStore,
    Protocol,
):
    async def migrate(self) -> None:
        """Create or upgrade the schema (re-runnable)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def healthy(self) -> bool: ...

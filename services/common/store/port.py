"""The store port: small Protocols, each handler asks for the narrowest one.

Adapters: `sqlite:///path` (services/common/store/sqlite.py) and
`cassandra://host:9042/keyspace` (services/common/store/cassandra.py). Both pass
tests/contract/test_store_contract.py. All writes are idempotent upserts: applying
the same write twice leaves the same state.

Gateway-critical data is typed (stations, tokens, transaction ids, ownership).
State owned by processors (sessions, station status projection, tariffs, CDRs,
sites, command records) is stored as JSON documents keyed by (kind, id), with an
optional `parent` to list by (e.g. sessions by station, CDRs by session) and an
optional monotonic `version` (a write with a version not greater than the stored
one changes nothing, so redelivered or stale writes are harmless).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "Station",
    "Token",
    "Owner",
    "StationStore",
    "TokenStore",
    "TransactionIdAllocator",
    "OwnershipStore",
    "DocumentStore",
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

    async def get_owner(self, station_id: str) -> Owner | None: ...

    async def release_station(self, station_id: str, gateway_id: str, epoch: int) -> bool:
        """Mark disconnected, only if (gateway_id, epoch) still owns it; True if it did."""
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

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...

    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Newest first by update time; `parent` filters (e.g. sessions of one station)."""
        ...

    async def delete_doc(self, kind: str, doc_id: str) -> bool: ...


class Store(StationStore, TokenStore, TransactionIdAllocator, OwnershipStore, DocumentStore, Protocol):
    async def migrate(self) -> None:
        """Create or upgrade the schema (re-runnable)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def healthy(self) -> bool: ...

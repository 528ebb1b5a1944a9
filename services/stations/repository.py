"""The stations-state stage's ports onto the store, and their one adapter.

The handler (services/stations/handlers.py) sees the documents it owns as domain values
through two narrow Protocols, never the `Store` itself:

- `OpsRepository`: STATION_OPS documents (id = station id), read many at once, written
  many at once, versioned, no read-before-write (the highest version wins).
- `CommandRepository`: COMMAND documents (id = command id, parent = station), the same way.

History rows go straight to the store's `StationEventLog` port (append-only rows, no
mapping beyond services/stations/codec.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.common.kinds import COMMAND, STATION_OPS
from services.common.store.port import DocumentStore, DocWrite
from services.stations.documents import command_from_doc, command_to_doc, station_ops_from_doc, station_ops_to_doc
from services.stations.domain.commands import CommandRecord
from services.stations.domain.ops import StationOps

__all__ = ["OpsRepository", "CommandRepository", "StoreRepository"]


class OpsRepository(Protocol):
    async def get_ops(self, station_ids: Sequence[str]) -> dict[str, StationOps]:
        """The stored states of `station_ids` (missing ones are absent)."""
        ...

    async def put_ops(self, states: Sequence[StationOps]) -> None:
        """Versioned, no read: the highest version wins."""
        ...


class CommandRepository(Protocol):
    async def get_commands(self, command_ids: Sequence[str]) -> dict[str, CommandRecord]: ...

    async def put_commands(self, records: Sequence[CommandRecord]) -> None:
        """Versioned, no read: the highest version wins."""
        ...


class StoreRepository:
    """`OpsRepository` and `CommandRepository` on a document store."""

    def __init__(self, store: DocumentStore) -> None:
        self._store = store

    async def get_ops(self, station_ids: Sequence[str]) -> dict[str, StationOps]:
        if not station_ids:
            return {}
        docs = await self._store.get_docs(STATION_OPS, station_ids)
        return {sid: station_ops_from_doc(doc) for sid, doc in docs.items()}

    async def put_ops(self, states: Sequence[StationOps]) -> None:
        if states:
            await self._store.put_docs(STATION_OPS, [
                DocWrite(s.station_id, station_ops_to_doc(s), version=s.version) for s in states
            ])

    async def get_commands(self, command_ids: Sequence[str]) -> dict[str, CommandRecord]:
        if not command_ids:
            return {}
        docs = await self._store.get_docs(COMMAND, command_ids)
        return {cid: command_from_doc(doc) for cid, doc in docs.items()}

    async def put_commands(self, records: Sequence[CommandRecord]) -> None:
        if records:
            await self._store.put_docs(COMMAND, [
                DocWrite(r.command_id, command_to_doc(r), parent=r.station_id, version=r.version) for r in records
            ])

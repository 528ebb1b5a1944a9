"""`TransactionIdAllocator` on Cassandra (1.6 transaction ids).

Blocks of ids are claimed with a lightweight transaction on one row (`UPDATE tx_blocks SET
next = ? IF next = ?`), then handed out locally, so ids are unique across all gateway pods
without counter columns (counters are not idempotent). The business key is bound to its id
with `INSERT ... IF NOT EXISTS`: a replayed StartTransaction (on any pod) reads the
winner's id back. On a CAS timeout (outcome unknown) we re-read at SERIAL.
"""

from __future__ import annotations

import asyncio

from cassandra import ConsistencyLevel

from services.common.errors import StoreUnavailable
from services.common.store.cassandra.connection import CassandraConnection

__all__ = ["CassandraTxIds"]

_BLOCK = 100
_MAX_TX_ID = 2**31 - 1


class CassandraTxIds(CassandraConnection):
    _block: list[int]  # [next, end) of the locally owned id block
    _block_lock: asyncio.Lock

    def _init_tx_ids(self) -> None:
        self._block = []
        self._block_lock = asyncio.Lock()

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

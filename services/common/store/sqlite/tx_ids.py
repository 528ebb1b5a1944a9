"""`TransactionIdAllocator` on SQLite: a counter row and a business key -> id table, in one
durable transaction (synchronous=FULL: an id handed to a charger must survive a power loss)."""

from __future__ import annotations

from services.common.errors import StoreError
from services.common.store.sqlite.connection import SqliteConnection, time_out
from services.common.store.sqlite.schema import TX_ID_COUNTER

__all__ = ["SqliteTxIds", "MAX_TRANSACTION_ID"]

MAX_TRANSACTION_ID = 2**31 - 1  # OCPP 1.6 transactionId is a (signed) int32


class SqliteTxIds(SqliteConnection):
    async def allocate_transaction_id(self, business_key: str) -> int:
        async with self._session("allocate_transaction_id", immediate=True, durable=True) as db:
            self._count("SELECT tx_id FROM tx_ids")
            rows = list(await db.execute_fetchall("SELECT tx_id FROM tx_ids WHERE business_key = ?", (business_key,)))
            if rows:
                return int(rows[0][0])
            # The counter never falls behind an id already handed out (self-healing after manual edits).
            self._count("UPDATE counters")
            rows = list(await db.execute_fetchall(
                """UPDATE counters
                   SET value = MAX(value, (SELECT COALESCE(MAX(tx_id), 0) FROM tx_ids)) + 1
                   WHERE name = ? RETURNING value""",
                (TX_ID_COUNTER,),
            ))
            if not rows:
                raise StoreError("sqlite: transaction id counter missing (run `csms migrate`)")
            tx_id = int(rows[0][0])
            if tx_id > MAX_TRANSACTION_ID:
                raise StoreError("sqlite: transaction id space (positive int32) exhausted")
            self._count("INSERT INTO tx_ids")
            await db.execute(
                "INSERT INTO tx_ids (business_key, tx_id, created_at) VALUES (?, ?, ?)",
                (business_key, tx_id, time_out(self._clock())),
            )
            return tx_id

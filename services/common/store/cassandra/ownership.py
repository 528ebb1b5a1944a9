"""`OwnershipStore` on Cassandra: ownership epochs by compare-and-set on the owner row
(`IF NOT EXISTS` for the first claim, `IF epoch = ?` after), read at SERIAL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import datetime, timezone

from cassandra import ConsistencyLevel
from cassandra.query import PreparedStatement

from services.common.errors import StoreUnavailable
from services.common.store.cassandra.connection import CassandraConnection, time_in, time_out
from services.common.store.port import Owner
from services.common.store.rows import OWNER_COLUMNS, owner_from_row

__all__ = ["CassandraOwnership"]

UTC = timezone.utc


class CassandraOwnership(CassandraConnection):
    def _read_owner(self) -> PreparedStatement:
        return self._prep("get_owner", f"SELECT {OWNER_COLUMNS} FROM owners WHERE station_id = ?", ConsistencyLevel.SERIAL)

    async def get_owner(self, station_id: str) -> Owner | None:
        row = (await self._run(self._read_owner(), (station_id,))).one()
        return None if row is None else owner_from_row(row, time_in)

    async def claim_station(self, station_id: str, gateway_id: str) -> int:
        epoch, _ = await self._claim(station_id, gateway_id)
        return epoch

    async def claim_stations(self, station_ids: Sequence[str], gateway_id: str) -> dict[str, tuple[int, Owner | None]]:
        """Each claim its own compare-and-set (one partition each), concurrently."""
        ids = list(dict.fromkeys(station_ids))
        claims = await asyncio.gather(*(self._claim(sid, gateway_id) for sid in ids))
        return dict(zip(ids, claims))

    async def _claim(self, station_id: str, gateway_id: str) -> tuple[int, Owner | None]:
        """(new epoch, the owner row the successful compare-and-set replaced)."""
        now = time_out(datetime.now(UTC))
        read = self._read_owner()
        ins = self._prep("ins_owner", "INSERT INTO owners (station_id, gateway_id, epoch, connected, updated_at) VALUES (?, ?, 1, true, ?) IF NOT EXISTS", serial=ConsistencyLevel.SERIAL)
        upd = self._prep("claim_owner", "UPDATE owners SET gateway_id = ?, epoch = ?, connected = true, updated_at = ? WHERE station_id = ? IF epoch = ?", serial=ConsistencyLevel.SERIAL)
        current = await self.get_owner(station_id)
        for attempt in range(200):
            # A timed-out CAS counts as lost: retrying with the next epoch may skip one,
            # never hand the same epoch out twice.
            if current is None:
                applied, _ = await self._cas(ins, (station_id, gateway_id, now), read, (station_id,))
                if applied:
                    return 1, None
            else:
                applied, _ = await self._cas(upd, (gateway_id, current.epoch + 1, now, station_id, current.epoch), read, (station_id,))
                if applied:
                    return current.epoch + 1, current
            await asyncio.sleep(random.uniform(0, 0.005 * min(attempt + 1, 20)))
            current = await self.get_owner(station_id)
        raise StoreUnavailable(f"could not claim station {station_id}: contention")

    async def release_station(self, station_id: str, gateway_id: str, epoch: int) -> bool:
        upd = self._prep("release_owner", "UPDATE owners SET connected = false, updated_at = ? WHERE station_id = ? IF gateway_id = ? AND epoch = ?", serial=ConsistencyLevel.SERIAL)
        applied, _ = await self._cas(upd, (time_out(datetime.now(UTC)), station_id, gateway_id, epoch), self._read_owner(), (station_id,))
        return applied

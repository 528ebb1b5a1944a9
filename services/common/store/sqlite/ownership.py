"""`OwnershipStore` on SQLite: one owner row per station; claiming is one upsert that
inserts epoch 1 or bumps the stored epoch (one statement, so atomic on its own)."""

from __future__ import annotations

from services.common.store.port import Owner
from services.common.store.rows import OWNER_COLUMNS, owner_from_row
from services.common.store.sqlite.connection import SqliteConnection, time_in, time_out

__all__ = ["SqliteOwnership"]

_CLAIM = """INSERT INTO owners (station_id, gateway_id, epoch, connected, updated_at)
                   VALUES (?, ?, 1, 1, ?)
                   ON CONFLICT (station_id) DO UPDATE SET
                       gateway_id = excluded.gateway_id,
                       epoch = owners.epoch + 1,
                       connected = 1,
                       updated_at = excluded.updated_at
                   RETURNING epoch"""
_GET = f"SELECT {OWNER_COLUMNS} FROM owners WHERE station_id = ?"
_RELEASE = "UPDATE owners SET connected = 0, updated_at = ? WHERE station_id = ? AND gateway_id = ? AND epoch = ?"


class SqliteOwnership(SqliteConnection):
    async def claim_station(self, station_id: str, gateway_id: str) -> int:
        async with self._session("claim_station") as db:
            self._count(_CLAIM)
            rows = list(await db.execute_fetchall(_CLAIM, (station_id, gateway_id, time_out(self._clock()))))
        return int(rows[0][0])

    async def get_owner(self, station_id: str) -> Owner | None:
        rows = await self._fetch("get_owner", _GET, (station_id,))
        return owner_from_row(rows[0], time_in) if rows else None

    async def release_station(self, station_id: str, gateway_id: str, epoch: int) -> bool:
        changed = await self._write("release_station", _RELEASE, (time_out(self._clock()), station_id, gateway_id, epoch))
        return changed > 0

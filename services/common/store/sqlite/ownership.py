"""`OwnershipStore` on SQLite: one owner row per station; claiming is one upsert that
inserts epoch 1 or bumps the stored epoch (one statement, so atomic on its own).
`claim_stations` claims a batch (the gateway's handshakes of a storm) in one transaction:
the owner rows it replaces, read under the same write lock, then one upsert over all ids."""

from __future__ import annotations

import json
from collections.abc import Sequence

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
_GET_MANY = f"SELECT {OWNER_COLUMNS} FROM owners WHERE station_id IN (SELECT value FROM json_each(?))"
_CLAIM_MANY = """INSERT INTO owners (station_id, gateway_id, epoch, connected, updated_at)
                        SELECT value, ?, 1, 1, ? FROM json_each(?) WHERE true
                        ON CONFLICT (station_id) DO UPDATE SET
                            gateway_id = excluded.gateway_id,
                            epoch = owners.epoch + 1,
                            connected = 1,
                            updated_at = excluded.updated_at
                        RETURNING station_id, epoch"""
_RELEASE = "UPDATE owners SET connected = 0, updated_at = ? WHERE station_id = ? AND gateway_id = ? AND epoch = ?"


class SqliteOwnership(SqliteConnection):
    async def claim_station(self, station_id: str, gateway_id: str) -> int:
        async with self._session("claim_station") as db:
            self._count(_CLAIM)
            rows = list(await db.execute_fetchall(_CLAIM, (station_id, gateway_id, time_out(self._clock()))))
        return int(rows[0][0])

    async def claim_stations(self, station_ids: Sequence[str], gateway_id: str) -> dict[str, tuple[int, Owner | None]]:
        """One transaction: the owner rows being replaced, then one upsert over all the ids."""
        ids = list(dict.fromkeys(station_ids))
        if not ids:
            return {}
        arg = json.dumps(ids)
        async with self._session("claim_stations", immediate=True) as db:
            self._count(_GET_MANY)
            prev = {o.station_id: o for o in (owner_from_row(r, time_in) for r in await db.execute_fetchall(_GET_MANY, (arg,)))}
            self._count(_CLAIM_MANY)
            rows = await db.execute_fetchall(_CLAIM_MANY, (gateway_id, time_out(self._clock()), arg))
        return {str(sid): (int(epoch), prev.get(sid)) for sid, epoch in rows}

    async def get_owner(self, station_id: str) -> Owner | None:
        rows = await self._fetch("get_owner", _GET, (station_id,))
        return owner_from_row(rows[0], time_in) if rows else None

    async def release_station(self, station_id: str, gateway_id: str, epoch: int) -> bool:
        changed = await self._write("release_station", _RELEASE, (time_out(self._clock()), station_id, gateway_id, epoch))
        return changed > 0

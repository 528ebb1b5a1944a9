"""`StationStore` on SQLite: one row per station (stations_by_site serves the site filter)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.common.store.port import Station
from services.common.store.rows import STATION_COLUMN_COUNT, STATION_COLUMNS, station_from_row, station_values
from services.common.store.sqlite.connection import SqliteConnection, time_in, time_out

__all__ = ["SqliteStations"]

_GET = f"SELECT {STATION_COLUMNS} FROM stations WHERE id = ?"
_GET_MANY = f"SELECT {STATION_COLUMNS} FROM stations WHERE id IN (SELECT value FROM json_each(?))"
_PUT = f"""INSERT INTO stations ({STATION_COLUMNS}) VALUES ({", ".join("?" * STATION_COLUMN_COUNT)})
            ON CONFLICT (id) DO UPDATE SET
                password_hash = excluded.password_hash,
                password_fingerprint = excluded.password_fingerprint,
                site_id = excluded.site_id,
                tariff_id = excluded.tariff_id,
                enabled = excluded.enabled,
                created_at = excluded.created_at,
                max_current_a = excluded.max_current_a,
                phases = excluded.phases,
                priority = excluded.priority,
                security_profile = excluded.security_profile,
                pending_security_profile = excluded.pending_security_profile,
                pending_password_hash = excluded.pending_password_hash,
                pending_password_fingerprint = excluded.pending_password_fingerprint,
                ws_ping_interval_s = excluded.ws_ping_interval_s,
                cost_messages = excluded.cost_messages"""
_LIST = f"SELECT {STATION_COLUMNS} FROM stations ORDER BY id LIMIT ?"
_LIST_SITE = f"SELECT {STATION_COLUMNS} FROM stations WHERE site_id = ? ORDER BY id LIMIT ?"


class SqliteStations(SqliteConnection):
    async def get_station(self, station_id: str) -> Station | None:
        rows = await self._fetch("get_station", _GET, (station_id,))
        return station_from_row(rows[0], time_in) if rows else None

    async def get_stations(self, station_ids: Sequence[str]) -> dict[str, Station]:
        if not station_ids:
            return {}
        rows = await self._fetch("get_stations", _GET_MANY, (json.dumps(list(station_ids)),))
        found = (station_from_row(r, time_in) for r in rows)
        return {st.id: st for st in found}

    async def put_station(self, station: Station) -> None:
        await self._write("put_station", _PUT, station_values(station, time_out))

    async def delete_station(self, station_id: str) -> bool:
        return await self._write("delete_station", "DELETE FROM stations WHERE id = ?", (station_id,)) > 0

    async def list_stations(self, *, site_id: str | None = None, limit: int = 1000) -> list[Station]:
        params: tuple[Any, ...]
        if site_id is None:
            sql, params = _LIST, (max(0, limit),)
        else:
            sql, params = _LIST_SITE, (site_id, max(0, limit))
        return [station_from_row(r, time_in) for r in await self._fetch("list_stations", sql, params)]

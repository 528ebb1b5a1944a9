"""`StationStore` on Cassandra: one row per station; a secondary index serves the site filter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement

from services.common.store.cassandra.connection import CassandraConnection, time_in, time_out
from services.common.store.port import Station
from services.common.store.rows import STATION_COLUMN_COUNT, STATION_COLUMNS, station_from_row, station_values

__all__ = ["CassandraStations"]


class CassandraStations(CassandraConnection):
    async def get_station(self, station_id: str) -> Station | None:
        ps = self._prep("get_station", f"SELECT {STATION_COLUMNS} FROM stations WHERE id = ?")
        row = (await self._run(ps, (station_id,))).one()
        return station_from_row(row, time_in) if row else None

    async def get_stations(self, station_ids: Sequence[str]) -> dict[str, Station]:
        """One read per station (one partition each), concurrently."""
        found = await asyncio.gather(*(self.get_station(sid) for sid in dict.fromkeys(station_ids)))
        return {st.id: st for st in found if st is not None}

    async def put_station(self, station: Station) -> None:
        marks = ",".join("?" * STATION_COLUMN_COUNT)
        ps = self._prep("put_station", f"INSERT INTO stations ({STATION_COLUMNS}) VALUES ({marks})")
        await self._run(ps, station_values(station, time_out))

    async def delete_station(self, station_id: str) -> bool:
        existed = await self.get_station(station_id) is not None
        await self._run(self._prep("del_station", "DELETE FROM stations WHERE id = ?"), (station_id,))
        return existed

    async def list_stations(self, *, site_id: str | None = None, limit: int = 1000) -> list[Station]:
        if site_id is None:
            cql = f"SELECT {STATION_COLUMNS} FROM stations LIMIT {int(limit)}"
            rows = await self._run(SimpleStatement(cql, consistency_level=ConsistencyLevel.LOCAL_QUORUM))
        else:
            ps = self._prep("stations_by_site", f"SELECT {STATION_COLUMNS} FROM stations WHERE site_id = ? LIMIT ?")
            rows = await self._run(ps, (site_id, int(limit)))
        return sorted((station_from_row(r, time_in) for r in rows), key=lambda s: s.id)

"""`StationEventLog` on SQLite (ADR 016 §3): one `station_events` table.

Rows are clustered by their identity (station_id, at, event_id) (WITHOUT ROWID), so a
station's history read newest first is one contiguous range walked backwards; a `types`
filter goes through `station_events_by_type` (station_id, type, at, event_id), so it never
reads other types' rows; `prune_station_events` goes through `station_events_by_at`.

`at` is stored as fixed-width UTC text truncated to the millisecond (as Cassandra keeps
it), so text order is time order and a cursor taken from a row read back matches it
exactly. A read is one statement: absent bounds are bound as text below or above every
stored time, so there is one statement text per shape (without `types`, or with n types:
n arms, each stopping at the limit, merged).
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import Any, Collection, Sequence

import orjson

from services.common.store.port import StationEventRow
from services.common.store.sqlite.connection import SqliteConnection, time_in, time_out

__all__ = ["SqliteStationEvents"]

_LOWEST = ""    # sorts before every stored time
_HIGHEST = "~"  # sorts after every stored time ("9999-..." < "~")
_COLUMNS = "station_id, at, event_id, type, body"
_APPEND = """INSERT INTO station_events (station_id, at, event_id, type, body)
    SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),
        json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]')
    FROM json_each(?) AS j WHERE true
    ON CONFLICT (station_id, at, event_id) DO UPDATE SET type = excluded.type, body = excluded.body"""
_READ = (
    f"SELECT {_COLUMNS} FROM station_events WHERE station_id = ? AND at >= ? AND at < ? "
    "AND (at, event_id) < (?, ?) ORDER BY at DESC, event_id DESC LIMIT ?"
)
# One arm per type, each a backwards walk of station_events_by_type that stops at the
# limit; the arms' few rows are then merged. (`type IN (...)` would sort every row of the
# types in the range before applying the limit.)
_READ_TYPE_ARM = (
    f"SELECT * FROM (SELECT {_COLUMNS} FROM station_events INDEXED BY station_events_by_type "
    "WHERE station_id = ? AND type = ? AND at >= ? "
    "AND at < ? AND (at, event_id) < (?, ?) ORDER BY at DESC, event_id DESC LIMIT ?)"
)
_PRUNE = "DELETE FROM station_events WHERE at < ?"


def ms(dt: datetime) -> datetime:
    """`dt` down to the millisecond (the precision both engines keep)."""
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def ms_up(dt: datetime) -> datetime:
    """`dt` up to the millisecond: for a stored (millisecond) time t, t >= dt iff
    t >= ms_up(dt), and t < dt iff t < ms_up(dt)."""
    down = ms(dt)
    return down if down == dt else down + timedelta(milliseconds=1)


def cursor_bound(before: tuple[datetime, str]) -> tuple[datetime, str]:
    """The stored-precision bound equivalent to "(at, event_id) < before"."""
    at, event_id = before
    return (at, event_id) if ms(at) == at else (ms_up(at), "")


def _at_out(dt: datetime) -> str:
    text = time_out(dt)
    assert text is not None
    return text


@functools.lru_cache(maxsize=32)
def _read_types_sql(arms: int) -> str:
    union = " UNION ALL ".join([_READ_TYPE_ARM] * arms)
    return f"SELECT * FROM ({union}) ORDER BY at DESC, event_id DESC LIMIT ?"


def _row(r: Any) -> StationEventRow:
    at = time_in(r[1])
    assert at is not None
    return StationEventRow(station_id=r[0], at=at, event_id=r[2], type=r[3], body=orjson.loads(r[4]))


class SqliteStationEvents(SqliteConnection):
    async def append_station_events(self, rows: Sequence[StationEventRow]) -> None:
        """One statement over a JSON array of the rows (an identity given twice keeps its
        last row); nothing is read."""
        if not rows:
            return
        params = [
            (r.station_id, _at_out(ms(r.at)), r.event_id, r.type, orjson.dumps(r.body).decode("utf-8")) for r in rows
        ]
        await self._write("append_station_events", _APPEND, (orjson.dumps(params).decode("utf-8"),))

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
        n = max(0, int(limit))
        if isinstance(types, str):  # one type given bare, not its characters
            types = (types,)
        if n == 0 or (types is not None and not types):
            return []
        lo = _LOWEST if since is None else _at_out(ms_up(since))
        hi = _HIGHEST if until is None else _at_out(ms_up(until))
        if before is None:
            b_at, b_id = _HIGHEST, ""
        else:
            bound = cursor_bound(before)
            b_at, b_id = _at_out(bound[0]), bound[1]
        if types is None:
            rows = await self._fetch("read_station_events", _READ, (station_id, lo, hi, b_at, b_id, n))
        else:
            wanted = sorted(set(types))
            params: list[Any] = []
            for t in wanted:
                params.extend((station_id, t, lo, hi, b_at, b_id, n))
            rows = await self._fetch("read_station_events", _read_types_sql(len(wanted)), (*params, n))
        return [_row(r) for r in rows]

    async def prune_station_events(self, older_than: datetime) -> int:
        return await self._write("prune_station_events", _PRUNE, (_at_out(older_than),))

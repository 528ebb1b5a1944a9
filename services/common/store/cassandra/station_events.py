"""`StationEventLog` on Cassandra (ADR 016 §3).

- `station_events`: partition (station_id, month), clustered (at DESC, event_id DESC): a
  station's history newest first, one partition per calendar month (UTC) so none grows
  without bound;
- `station_events_by_type`: the same rows under (station_id, type, month): a `types`
  filter reads only those types' partitions, never another type's rows;
- `station_event_months`: per station, the (month, type) pairs that hold rows, newest
  month first, so a read knows which partitions exist (one small read per page) instead
  of probing every month back to the retention limit.

`month` is yyyymm of `at` (UTC). Every row is written `USING TTL` the retention
(`CSMS_STATION_EVENTS_RETENTION_DAYS`, 0 = kept forever), counted from the write: the
history ages out on its own and `prune_station_events` does nothing. An index row lives
`_INDEX_MARGIN_S` longer than the rows and is rewritten at most every `_INDEX_REFRESH_S`
by a process that keeps writing that (station, month, type), so it always outlives the
rows it points to (remembered in a bounded in-process map: the write is idempotent, so
forgetting only costs a repeat).

An append is one unlogged single-partition batch per partition touched in each of the two
tables (chunked), plus the index rows due; nothing is read. A read goes month by month,
newest first; with `types`, each month's type partitions are read concurrently and merged,
each stopping at the rows still wanted. Bounds are multi-column slices on (at, event_id)
(Cassandra does not mix single- and multi-column restrictions), with the cursor folded
into the upper bound.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Collection, Sequence

import orjson
from cassandra.query import BatchStatement, BatchType

from services.common.store.cassandra.connection import CassandraConnection, time_in, utc_naive
from services.common.store.metrics import OpKey
from services.common.store.port import StationEventRow

__all__ = ["CassandraStationEvents", "month_of"]

_BATCH_ROWS = 50                # rows per single-partition batch (bodies of a few hundred bytes)
_INDEX_MARGIN_S = 2 * 86_400    # index rows outlive the rows they point to by this much
_INDEX_REFRESH_S = 3_600.0      # ... and are rewritten at most this often while written to
_INDEX_SEEN_MAX = 200_000
_LOWEST = (datetime(1970, 1, 1), "")       # naive UTC, as the driver stores timestamps
_HIGHEST = (datetime(9999, 12, 31), "")
_COLUMNS = "station_id, at, event_id, type, body"
_W_EVENTS: tuple[OpKey, ...] = (("write", "station_events"),)
_W_BY_TYPE: tuple[OpKey, ...] = (("write", "station_events_by_type"),)


def month_of(at: datetime) -> int:
    """yyyymm of a naive-UTC time."""
    return at.year * 100 + at.month


def _ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def _ms_up(dt: datetime) -> datetime:
    down = _ms(dt)
    return down if down == dt else down + timedelta(milliseconds=1)


def _row(r: Any) -> StationEventRow:
    at = time_in(r.at)
    assert at is not None
    return StationEventRow(station_id=r.station_id, at=at, event_id=r.event_id, type=r.type, body=orjson.loads(r.body))


class CassandraStationEvents(CassandraConnection):
    _events_ttl_s: int
    _index_seen: dict[tuple[str, int, str], float]

    def _init_station_events(self, *, retention_days: float) -> None:
        self._events_ttl_s = max(0, int(retention_days * 86_400))
        self._index_seen = {}

    async def append_station_events(self, rows: Sequence[StationEventRow]) -> None:
        if not rows:
            return
        ttl = self._events_ttl_s
        index_ttl = ttl + _INDEX_MARGIN_S if ttl else 0
        ins = self._prep(
            "ins_station_event",
            "INSERT INTO station_events (station_id, month, at, event_id, type, body) VALUES (?,?,?,?,?,?) USING TTL ?",
        )
        ins_type = self._prep(
            "ins_station_event_by_type",
            "INSERT INTO station_events_by_type (station_id, type, month, at, event_id, body) VALUES (?,?,?,?,?,?) "
            "USING TTL ?",
        )
        ins_month = self._prep(
            "ins_station_event_month",
            "INSERT INTO station_event_months (station_id, month, type, noted_at) VALUES (?,?,?,?) USING TTL ?",
        )
        # identity -> values; an identity given twice keeps its last row
        by_key: dict[tuple[str, datetime, str], tuple[str, int, datetime, str, str, str]] = {}
        for r in rows:
            at = _ms(utc_naive(r.at))
            by_key[(r.station_id, at, r.event_id)] = (
                r.station_id, month_of(at), at, r.event_id, r.type, orjson.dumps(r.body).decode("utf-8"),
            )
        parts: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        typed: dict[tuple[str, str, int], list[tuple[Any, ...]]] = {}
        for station, month, at, event_id, type_, body in by_key.values():
            parts.setdefault((station, month), []).append((station, month, at, event_id, type_, body, ttl))
            typed.setdefault((station, type_, month), []).append((station, type_, month, at, event_id, body, ttl))
        now = time.monotonic()
        noted = utc_naive(datetime.now(timezone.utc))
        due = [(station, month, type_) for station, type_, month in typed if self._index_due((station, month, type_), now)]
        requests = [
            *(self._batched(ins, p, _W_EVENTS) for p in parts.values()),
            *(self._batched(ins_type, p, _W_BY_TYPE) for p in typed.values()),
        ]
        await asyncio.gather(
            *(self._run(stmt, keys=keys) for group in requests for stmt, keys in group),
            *(self._run(ins_month, (station, month, type_, noted, index_ttl)) for station, month, type_ in due),
        )
        if len(self._index_seen) + len(due) > _INDEX_SEEN_MAX:
            self._index_seen.clear()  # forgetting costs one idempotent write per (station, month, type)
        for key in due:
            self._index_seen[key] = now

    def _index_due(self, key: tuple[str, int, str], now: float) -> bool:
        seen = self._index_seen.get(key)
        return seen is None or now - seen >= _INDEX_REFRESH_S

    @staticmethod
    def _batched(ps: Any, params: list[tuple[Any, ...]], keys: tuple[OpKey, ...]) -> list[tuple[Any, tuple[OpKey, ...]]]:
        out: list[tuple[Any, tuple[OpKey, ...]]] = []
        for i in range(0, len(params), _BATCH_ROWS):
            chunk = params[i:i + _BATCH_ROWS]
            if len(chunk) == 1:
                out.append((ps.bind(chunk[0]), keys))
                continue
            batch = BatchStatement(BatchType.UNLOGGED)
            for p in chunk:
                batch.add(ps, p)
            out.append((batch, keys))
        return out

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
        low = _LOWEST if since is None else (_ms_up(utc_naive(since)), "")
        high = _HIGHEST if until is None else (_ms_up(utc_naive(until)), "")
        if before is not None:
            b_at = utc_naive(before[0])
            cursor = (b_at, before[1]) if _ms(b_at) == b_at else (_ms_up(b_at), "")
            high = min(high, cursor)
        if high <= low:
            return []
        index = self._prep(
            "station_event_months",
            "SELECT month, type FROM station_event_months WHERE station_id = ? AND month >= ? AND month <= ?",
        )
        months: dict[int, set[str]] = {}
        for r in await self._read_all(index, (station_id, month_of(low[0]), month_of(high[0]))):
            months.setdefault(r.month, set()).add(r.type)
        wanted = None if types is None else set(types)
        bounds = (low[0], low[1], high[0], high[1])
        found: list[StationEventRow] = []
        for month in sorted(months, reverse=True):
            left = n - len(found)
            if wanted is None:
                ps = self._prep(
                    "read_station_events",
                    f"SELECT {_COLUMNS} FROM station_events WHERE station_id = ? AND month = ? "
                    "AND (at, event_id) >= (?, ?) AND (at, event_id) < (?, ?)",
                )
                found.extend(_row(r) for r in await self._read_all(ps, (station_id, month, *bounds), limit=left))
            else:
                present = sorted(months[month] & wanted)
                if not present:
                    continue
                ps = self._prep(
                    "read_station_events_by_type",
                    f"SELECT station_id, at, event_id, type, body FROM station_events_by_type "
                    "WHERE station_id = ? AND type = ? AND month = ? AND (at, event_id) >= (?, ?) AND (at, event_id) < (?, ?)",
                )
                parts = await asyncio.gather(*(
                    self._read_all(ps, (station_id, t, month, *bounds), limit=left) for t in present
                ))
                merged = heapq.merge(*([_row(r) for r in part] for part in parts), key=lambda e: (e.at, e.event_id), reverse=True)
                for row in merged:
                    found.append(row)
                    if len(found) >= n:
                        break
            if len(found) >= n:
                break
        return found[:n]

    async def prune_station_events(self, older_than: datetime) -> int:
        """Nothing to do: rows expire by TTL."""
        return 0

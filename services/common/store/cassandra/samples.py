"""`SampleStore` on Cassandra (ADR 015).

`meter_samples` is partitioned by (session_id, day), clustered by (ts, measurand, phase);
`meter_sample_days` lists a session's days. An append is one unlogged single-partition
batch per day touched, plus one `meter_sample_days` write the first time this process sees
that (session, day) (remembered in a bounded in-process set: the write is idempotent, so
forgetting only costs a repeat). Reads go day by day in order, page by page (never a
blocking page fetch on the event loop).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Sequence

from cassandra.query import UNSET_VALUE, BatchStatement, BatchType, PreparedStatement

from services.common.store.cassandra.connection import CassandraConnection, time_in, utc_naive
from services.common.store.metrics import OpKey
from services.common.store.port import MeterRow
from services.common.store.rows import SAMPLE_COLUMNS, sample_from_row

__all__ = ["CassandraSamples"]

_EPOCH = datetime(1970, 1, 1)  # naive UTC, as the driver returns timestamps
_SAMPLE_BATCH_ROWS = 100     # rows per single-partition batch (well under batch_size_fail_threshold)
_DAYS_SEEN_MAX = 200_000     # (session, day) pairs remembered as written
_W_SAMPLES: tuple[OpKey, ...] = (("write", "meter_samples"),)


class CassandraSamples(CassandraConnection):
    _days_seen: set[tuple[str, int]]

    def _init_samples(self) -> None:
        self._days_seen = set()

    async def append_samples(self, session_id: str, rows: Sequence[MeterRow]) -> None:
        """One unlogged single-partition batch per (session, day) touched (chunked at
        `_SAMPLE_BATCH_ROWS` rows), plus the `meter_sample_days` row of a day this process has
        not written yet; all concurrently. Nothing is read. A key given twice keeps its last row."""
        if not rows:
            return
        ins = self._prep(
            "ins_sample",
            "INSERT INTO meter_samples (session_id, day, ts, measurand, phase, value, unit, raw_value, station_time) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
        )
        by_day: dict[int, dict[tuple[datetime, str, str], tuple[Any, ...]]] = {}
        for r in rows:
            ts = utc_naive(r.timestamp)
            day = (ts - _EPOCH).days
            st = r.station_time
            keyed = by_day.get(day)
            if keyed is None:
                keyed = by_day[day] = {}
            keyed[(ts, r.measurand, r.phase)] = (
                session_id, day, ts, r.measurand, r.phase, float(r.value), r.unit, r.raw_value,
                UNSET_VALUE if st is None else utc_naive(st),  # unset, not null: no tombstones
            )
        requests: list[tuple[Any, Any]] = []  # (statement, params): all bound before anything is sent
        new_days = []
        for day, keyed in by_day.items():
            params = list(keyed.values())
            for i in range(0, len(params), _SAMPLE_BATCH_ROWS):
                chunk = params[i:i + _SAMPLE_BATCH_ROWS]
                if len(chunk) == 1:
                    requests.append((ins.bind(chunk[0]), None))
                    continue
                batch = BatchStatement(BatchType.UNLOGGED)
                for p in chunk:
                    batch.add(ins, p)
                requests.append((batch, None))
            if (session_id, day) not in self._days_seen:
                new_days.append(day)
        await asyncio.gather(
            *(self._run(stmt, params, keys=_W_SAMPLES) for stmt, params in requests),
            *(self._note_day(session_id, day) for day in new_days),
        )

    async def _note_day(self, session_id: str, day: int) -> None:
        ps = self._prep("ins_sample_day", "INSERT INTO meter_sample_days (session_id, day) VALUES (?, ?)")
        await self._run(ps, (session_id, day))
        if len(self._days_seen) >= _DAYS_SEEN_MAX:
            self._days_seen.clear()  # forgetting costs one idempotent write per (session, day)
        self._days_seen.add((session_id, day))

    async def read_samples(
        self, session_id: str, *, after: tuple[datetime, str, str] | None = None, limit: int | None = None
    ) -> list[MeterRow]:
        """The session's days (one read), then each day's partition in order, page by page;
        without a limit the days are read concurrently."""
        if limit is not None and limit <= 0:
            return []
        days_ps = self._prep("sample_days", "SELECT day FROM meter_sample_days WHERE session_id = ?")
        days = [r.day for r in await self._read_all(days_ps, (session_id,))]
        cols = f"SELECT {SAMPLE_COLUMNS} FROM meter_samples"
        whole = self._prep("read_samples", f"{cols} WHERE session_id = ? AND day = ?")
        tail = self._prep("read_samples_after", f"{cols} WHERE session_id = ? AND day = ? AND (ts, measurand, phase) > (?, ?, ?)")
        queries: list[tuple[PreparedStatement, tuple[Any, ...]]] = []
        if after is None:
            queries = [(whole, (session_id, day)) for day in days]
        else:
            a_ts = utc_naive(after[0])
            a_day = (a_ts - _EPOCH).days
            for day in days:
                if day == a_day:
                    queries.append((tail, (session_id, day, a_ts, after[1], after[2])))
                elif day > a_day:
                    queries.append((whole, (session_id, day)))
        if limit is None:
            parts = await asyncio.gather(*(self._read_all(ps, params) for ps, params in queries))
            found = [r for part in parts for r in part]
        else:
            found = []
            for ps, params in queries:
                found.extend(await self._read_all(ps, params, limit=limit - len(found)))
                if len(found) >= limit:
                    break
        return [sample_from_row(r, time_in) for r in found]

"""`SampleStore` on Cassandra (ADR 015).

`meter_samples` is partitioned by (session_id, day), clustered by (ts, measurand, phase);
`meter_sample_days` lists a session's days. An append is one unlogged single-partition
batch per day touched, plus one `meter_sample_days` write the first time this process sees
that (session, day) (remembered in a bounded in-process set: the write is idempotent, so
forgetting only costs a repeat). Reads go day by day in order, page by page (never a
blocking page fetch on the event loop).

`append_samples_many` (a batch's appends, one MeterValues' few rows per session in the
fleet case) packs several sessions' partitions into one unlogged batch: the driver's cost
is per request (~0.1-0.4 ms of client CPU each, bench/sessions_processor.py), so one
request per session was most of the sessions processor's store CPU. A batch holds at most
`_MANY_PARTITIONS` partitions (under Cassandra's unlogged_batch_across_partitions_warn_threshold,
10) and `_MANY_ROWS` rows (under batch_size_warn_threshold, 5 KiB); a partition with more
rows than that goes alone, chunked as `append_samples` does. Unlogged: no atomicity across
the partitions, which the callers do not need (rows are idempotent, and the session
documents are written only after every append returned).
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
_MANY_PARTITIONS = 9         # partitions per multi-session batch (warn threshold: 10)
_MANY_ROWS = 32              # rows per multi-session batch (~130 B each: under the 5 KiB warning)
_DAYS_SEEN_MAX = 200_000     # (session, day) pairs remembered as written
_CONCURRENCY = 128           # requests in flight per append_samples_many
_W_SAMPLES: tuple[OpKey, ...] = (("write", "meter_samples"),)


class CassandraSamples(CassandraConnection):
    _days_seen: set[tuple[str, int]]

    def _init_samples(self) -> None:
        self._days_seen = set()

    def _ins_sample(self) -> PreparedStatement:
        return self._prep(
            "ins_sample",
            "INSERT INTO meter_samples (session_id, day, ts, measurand, phase, value, unit, raw_value, station_time) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
        )

    @staticmethod
    def _by_day(session_id: str, rows: Sequence[MeterRow]) -> dict[int, list[tuple[Any, ...]]]:
        """The rows' bound parameters per day partition (a key given twice keeps its last row)."""
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
        return {day: list(keyed.values()) for day, keyed in by_day.items()}

    def _chunks(self, ins: PreparedStatement, params: list[tuple[Any, ...]], out: list[Any]) -> None:
        """One partition's rows as requests of up to `_SAMPLE_BATCH_ROWS` rows."""
        for i in range(0, len(params), _SAMPLE_BATCH_ROWS):
            chunk = params[i:i + _SAMPLE_BATCH_ROWS]
            if len(chunk) == 1:
                out.append(ins.bind(chunk[0]))
                continue
            batch = BatchStatement(BatchType.UNLOGGED)
            for p in chunk:
                batch.add(ins, p)
            out.append(batch)

    async def append_samples(self, session_id: str, rows: Sequence[MeterRow]) -> None:
        """`append_samples_many` of one session: its day partitions (chunked at
        `_SAMPLE_BATCH_ROWS` rows), plus the `meter_sample_days` row of a day this process has
        not written yet; all concurrently. Nothing is read. A key given twice keeps its last row."""
        await self.append_samples_many([(session_id, rows)])

    async def append_samples_many(self, items: Sequence[tuple[str, Sequence[MeterRow]]]) -> None:
        """Several sessions' appends: their partitions packed into unlogged batches of at
        most `_MANY_PARTITIONS` partitions and `_MANY_ROWS` rows (module docstring), plus
        the new days' `meter_sample_days` rows; all concurrently. Nothing is read."""
        ins = self._ins_sample()
        requests: list[Any] = []
        new_days: list[tuple[str, int]] = []
        group: list[tuple[Any, ...]] = []
        group_partitions = 0

        def close() -> None:
            nonlocal group, group_partitions
            self._chunks(ins, group, requests)  # one request: a group is under _SAMPLE_BATCH_ROWS
            group, group_partitions = [], 0

        for session_id, rows in items:
            if not rows:
                continue
            for day, params in self._by_day(session_id, rows).items():
                if (session_id, day) not in self._days_seen:
                    new_days.append((session_id, day))
                if len(params) > _MANY_ROWS:
                    self._chunks(ins, params, requests)
                    continue
                if group_partitions >= _MANY_PARTITIONS or len(group) + len(params) > _MANY_ROWS:
                    close()
                group.extend(params)
                group_partitions += 1
        close()
        if not requests:
            return
        for i in range(0, len(requests), _CONCURRENCY):
            await asyncio.gather(
                *(self._run(stmt, keys=_W_SAMPLES) for stmt in requests[i:i + _CONCURRENCY]),
                *(self._note_day(sid, day) for sid, day in (new_days if i == 0 else ())),
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

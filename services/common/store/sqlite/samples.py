"""`SampleStore` on SQLite (ADR 015): `meter_samples` clustered by (session, ts, measurand,
phase) (WITHOUT ROWID), so a session's samples are one contiguous range read in order.

An append, of one session's rows or of several sessions' (`append_samples_many`), is one
statement over a JSON array of rows, each naming its session (one statement is atomic on its own:
no BEGIN/COMMIT round trips to aiosqlite's thread; measured about half the CPU of
executemany in a transaction for a meter event's few rows). Floats round-trip exactly
through orjson and SQLite's JSON parser; a non-finite value (not JSON) takes the
executemany of `_APPEND_SAMPLES` in one transaction instead.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Sequence

import orjson

from services.common.store.port import MeterRow
from services.common.store.rows import SAMPLE_COLUMNS, sample_from_row
from services.common.store.sqlite.connection import SqliteConnection, time_in, time_out

__all__ = ["SqliteSamples"]

_APPEND_SAMPLES = """INSERT INTO meter_samples
    (session_id, ts, measurand, phase, value, unit, raw_value, station_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (session_id, ts, measurand, phase) DO UPDATE SET
        value = excluded.value, unit = excluded.unit, raw_value = excluded.raw_value,
        station_time = excluded.station_time"""
_APPEND_MANY_JSON = """INSERT INTO meter_samples
    (session_id, ts, measurand, phase, value, unit, raw_value, station_time)
    SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),
        json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'),
        json_extract(j.value, '$[6]'), json_extract(j.value, '$[7]')
    FROM json_each(?) AS j WHERE true
    ON CONFLICT (session_id, ts, measurand, phase) DO UPDATE SET
        value = excluded.value, unit = excluded.unit, raw_value = excluded.raw_value,
        station_time = excluded.station_time"""
# LIMIT -1 is "no limit" in SQLite.
_READ_SAMPLES = (
    f"SELECT {SAMPLE_COLUMNS} FROM meter_samples WHERE session_id = ? ORDER BY ts, measurand, phase LIMIT ?"
)
_READ_SAMPLES_AFTER = (
    f"SELECT {SAMPLE_COLUMNS} FROM meter_samples WHERE session_id = ? AND (ts, measurand, phase) > (?, ?, ?) "
    "ORDER BY ts, measurand, phase LIMIT ?"
)


def _sample_values(r: MeterRow) -> tuple[Any, ...]:
    """A row's values after the session id, in `_APPEND_SAMPLES` order."""
    return (
        time_out(r.timestamp), r.measurand, r.phase, float(r.value), r.unit, r.raw_value, time_out(r.station_time),
    )


class SqliteSamples(SqliteConnection):
    async def append_samples(self, session_id: str, rows: Sequence[MeterRow]) -> None:
        """One statement (an upsert per key, in order: a key given twice keeps its last row)."""
        await self.append_samples_many([(session_id, rows)])

    async def append_samples_many(self, items: Sequence[tuple[str, Sequence[MeterRow]]]) -> None:
        """Every session's rows in one statement (in order: a key given twice keeps its last row)."""
        params = [(session_id,) + _sample_values(r) for session_id, rows in items for r in rows]
        if not params:
            return
        if all(math.isfinite(p[4]) for p in params):
            await self._write("append_samples", _APPEND_MANY_JSON, (orjson.dumps(params).decode("utf-8"),))
            return
        async with self._session("append_samples", immediate=True) as db:
            self._count(_APPEND_SAMPLES)
            await db.executemany(_APPEND_SAMPLES, params)

    async def read_samples(
        self, session_id: str, *, after: tuple[datetime, str, str] | None = None, limit: int | None = None
    ) -> list[MeterRow]:
        n = -1 if limit is None else max(0, int(limit))
        if after is None:
            rows = await self._fetch("read_samples", _READ_SAMPLES, (session_id, n))
        else:
            rows = await self._fetch(
                "read_samples", _READ_SAMPLES_AFTER, (session_id, time_out(after[0]), after[1], after[2], n)
            )
        return [sample_from_row(r, time_in) for r in rows]

"""The Store port's ADR 016 history contract (`StationEventLog`): newest first by (at,
event_id), paged by a cursor across month partitions, filtered by type and time, idempotent
appends, pruning (SQLite) or a TTL (Cassandra). Every test runs on SQLite (file and memory)
and, with CSMS_INFRA=1, Cassandra (fixtures in conftest.py); station ids are unique per
test, the database is shared.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from typing import Any, Collection

import pytest

from services.common.store.port import StationEventRow, Store
from tests.contract.builders import UTC, unique
from tests.contract.conftest import CASSANDRA_URL, INFRA, START_TIMEOUT_S

# Rows around two month ends and a year end (partitions by month on Cassandra).
NOV_30 = datetime(2026, 11, 30, 23, 59, 59, 998000, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)
JAN_1 = datetime(2027, 1, 1, tzinfo=UTC)


def ev(station: str, at: datetime, event_id: str, type_: str = "FirmwareStatus", **body: Any) -> StationEventRow:
    return StationEventRow(station, at, event_id, type_, {"event_id": event_id, **body})


def order(rows: list[StationEventRow]) -> list[StationEventRow]:
    return sorted(rows, key=lambda r: (r.at, r.event_id), reverse=True)


def spread(station: str) -> list[StationEventRow]:
    """30 rows over Nov, Dec and Jan, three types, with ties on `at` (broken by event id)."""
    times = [
        NOV_30 - timedelta(days=3), NOV_30, NOV_30, NOV_30 + timedelta(milliseconds=1),  # Nov 30 23:59:59.999
        DEC_1, DEC_1, DEC_1 + timedelta(milliseconds=1), DEC_1 + timedelta(days=10),
        JAN_1 - timedelta(milliseconds=1), JAN_1, JAN_1 + timedelta(hours=5),
    ]
    rows = []
    for i in range(30):
        at = times[i % len(times)]
        rows.append(ev(station, at, f"e{i:02d}", ("FirmwareStatus", "CommandIssued", "Outage")[i % 3], i=i))
    return rows


async def every_page(
    store: Store, station: str, limit: int, *, types: Collection[str] | None = None, **bounds: Any
) -> list[list[StationEventRow]]:
    pages: list[list[StationEventRow]] = []
    before: tuple[datetime, str] | None = None
    while True:
        page = await store.read_station_events(station, types=types, before=before, limit=limit, **bounds)
        if not page:
            return pages
        assert len(page) <= limit
        pages.append(page)
        before = (page[-1].at, page[-1].event_id)
        assert len(pages) < 100, "paging does not end"


async def test_a_station_without_history_reads_empty(store: Store) -> None:
    assert await store.read_station_events(unique("CP")) == []
    assert await store.read_station_events(unique("CP"), types=["FirmwareStatus"]) == []
    await store.append_station_events([])


async def test_every_field_round_trips_with_aware_utc_millisecond_times(store: Store) -> None:
    station = unique("CP")
    body = {"status": "Installed", "request_id": 7, "nested": {"list": [1, 2.5, None, True], "text": "é€"}}
    row = StationEventRow(station, datetime(2026, 11, 28, 4, 21, 16, 4000, tzinfo=UTC), "ev-1", "FirmwareStatus", body)
    await store.append_station_events([row])
    [got] = await store.read_station_events(station)
    assert got == row
    assert got.at.utcoffset() == timedelta(0)


async def test_finer_than_millisecond_times_are_kept_to_the_millisecond(store: Store) -> None:
    station = unique("CP")
    await store.append_station_events([ev(station, datetime(2026, 11, 28, 4, 21, 16, 4999, tzinfo=UTC), "e")])
    [got] = await store.read_station_events(station)
    assert got.at == datetime(2026, 11, 28, 4, 21, 16, 4000, tzinfo=UTC)


async def test_history_is_newest_first_by_time_then_event_id_whatever_the_append_order(store: Store) -> None:
    station, other = unique("CP"), unique("CP")
    rows = spread(station)
    shuffled = rows[:]
    random.Random(9).shuffle(shuffled)
    for i in range(0, len(shuffled), 7):  # several appends, rows of another station mixed in
        await store.append_station_events(shuffled[i:i + 7] + [ev(other, DEC_1, f"o{i:02d}")])
    assert await store.read_station_events(station, limit=1000) == order(rows)
    assert await store.read_station_events(station, limit=4) == order(rows)[:4]
    assert [r.event_id for r in await store.read_station_events(other)] == [f"o{i:02d}" for i in (28, 21, 14, 7, 0)]


async def test_paging_with_the_cursor_walks_every_row_once_across_months(store: Store) -> None:
    station = unique("CP")
    rows = spread(station)
    await store.append_station_events(rows)
    for limit in (1, 2, 3, 7, 30, 31):
        pages = await every_page(store, station, limit)
        assert [r for page in pages for r in page] == order(rows), limit
        assert all(len(p) == limit for p in pages[:-1])


async def test_a_type_filter_returns_only_those_types_newest_first_and_pages(store: Store) -> None:
    station = unique("CP")
    rows = spread(station)
    await store.append_station_events(rows)
    firmware = [r for r in order(rows) if r.type == "FirmwareStatus"]
    assert await store.read_station_events(station, types=["FirmwareStatus"], limit=1000) == firmware
    two = [r for r in order(rows) if r.type in ("FirmwareStatus", "Outage")]
    assert await store.read_station_events(station, types={"Outage", "FirmwareStatus"}, limit=1000) == two
    for limit in (1, 4, 9):
        pages = await every_page(store, station, limit, types=("Outage", "FirmwareStatus"))
        assert [r for page in pages for r in page] == two, limit
    assert await store.read_station_events(station, types="FirmwareStatus", limit=1000) == firmware
    assert await store.read_station_events(station, types=["LogStatus"]) == []
    assert await store.read_station_events(station, types=[]) == []


async def test_since_is_inclusive_and_until_exclusive(store: Store) -> None:
    station = unique("CP")
    rows = spread(station)
    await store.append_station_events(rows)
    since, until = DEC_1, JAN_1
    inside = [r for r in order(rows) if since <= r.at < until]
    assert inside and any(r.at == since for r in inside)
    assert await store.read_station_events(station, since=since, until=until, limit=1000) == inside
    assert await store.read_station_events(station, since=since, limit=1000) == [r for r in order(rows) if r.at >= since]
    assert await store.read_station_events(station, until=until, limit=1000) == [r for r in order(rows) if r.at < until]
    pages = await every_page(store, station, 2, since=since, until=until, types=["Outage", "CommandIssued"])
    assert [r for p in pages for r in p] == [r for r in inside if r.type in ("Outage", "CommandIssued")]
    # bounds finer than a millisecond: since rounds up, until excludes the millisecond it falls in
    just_after = DEC_1 + timedelta(microseconds=1)
    assert all(r.at > DEC_1 for r in await store.read_station_events(station, since=just_after, limit=1000))
    assert any(r.at == DEC_1 for r in await store.read_station_events(station, until=just_after, limit=1000))
    assert await store.read_station_events(station, since=until, until=since) == []


async def test_the_cursor_is_strictly_older_including_rows_at_the_same_time(store: Store) -> None:
    station = unique("CP")
    rows = [ev(station, DEC_1, f"e{i}") for i in range(5)]
    await store.append_station_events(rows)
    got = await store.read_station_events(station, before=(DEC_1, "e3"))
    assert [r.event_id for r in got] == ["e2", "e1", "e0"]
    assert await store.read_station_events(station, before=(DEC_1, "e0")) == []
    got = await store.read_station_events(station, before=(DEC_1 + timedelta(microseconds=500), ""))
    assert [r.event_id for r in got] == ["e4", "e3", "e2", "e1", "e0"]


async def test_reappending_is_idempotent_and_the_last_body_of_an_identity_wins(store: Store) -> None:
    station = unique("CP")
    rows = spread(station)
    await store.append_station_events(rows)
    await store.append_station_events(rows)
    await store.append_station_events(list(reversed(rows[3:12])))
    assert await store.read_station_events(station, limit=1000) == order(rows)
    corrected = ev(station, rows[4].at, rows[4].event_id, rows[4].type, i=4, corrected=True)
    await store.append_station_events([rows[4], corrected])  # the same identity twice in one append
    got = await store.read_station_events(station, limit=1000)
    assert len(got) == len(rows) and corrected in got and rows[4] not in got
    typed = await store.read_station_events(station, types=[rows[4].type], limit=1000)
    assert corrected in typed and rows[4] not in typed


async def test_one_append_may_hold_rows_of_several_stations(store: Store) -> None:
    a, b = unique("CP"), unique("CP")
    await store.append_station_events([ev(a, DEC_1, "a1"), ev(b, DEC_1, "b1"), ev(a, JAN_1, "a2", "Outage")])
    assert [r.event_id for r in await store.read_station_events(a)] == ["a2", "a1"]
    assert [r.event_id for r in await store.read_station_events(b)] == ["b1"]
    assert await store.read_station_events(b, limit=0) == []


async def test_pruning_deletes_old_rows_on_sqlite_and_is_a_ttl_on_cassandra(store: Store, store_backend: str) -> None:
    station = unique("CP")
    rows = spread(station)
    await store.append_station_events(rows)
    deleted = await store.prune_station_events(DEC_1)
    if store_backend == "cassandra":
        assert deleted == 0
        assert await store.read_station_events(station, limit=1000) == order(rows)
    else:
        older = [r for r in rows if r.at < DEC_1]
        assert deleted >= len(older)  # the database is shared with other tests' rows
        assert await store.read_station_events(station, limit=1000) == [r for r in order(rows) if r.at >= DEC_1]
        assert await store.read_station_events(station, types=["FirmwareStatus"], limit=1000) == [
            r for r in order(rows) if r.at >= DEC_1 and r.type == "FirmwareStatus"
        ]


if INFRA:
    from services.common.store.cassandra import CassandraStore

    async def _cassandra(retention_days: float) -> CassandraStore:
        s = CassandraStore(CASSANDRA_URL, station_events_retention_days=retention_days)
        await asyncio.wait_for(s.start(), START_TIMEOUT_S["cassandra"])
        await asyncio.wait_for(s.migrate(), START_TIMEOUT_S["cassandra"])
        return s

    async def _ttls(s: Any, station: str, month: int, type_: str) -> tuple[Any, Any, Any]:
        events = (await s._run(
            "SELECT TTL(body) AS ttl FROM station_events WHERE station_id = %s AND month = %s", (station, month)
        )).one()
        by_type = (await s._run(
            "SELECT TTL(body) AS ttl FROM station_events_by_type WHERE station_id = %s AND type = %s AND month = %s",
            (station, type_, month),
        )).one()
        index = (await s._run(
            "SELECT TTL(noted_at) AS ttl FROM station_event_months WHERE station_id = %s AND month = %s AND type = %s",
            (station, month, type_),
        )).one()
        return events.ttl, by_type.ttl, index.ttl

    @pytest.mark.infra
    async def test_cassandra_rows_are_written_with_the_retention_as_ttl() -> None:
        s = await _cassandra(3)
        try:
            station = unique("CP")
            await s.append_station_events([ev(station, DEC_1, "e1", "Outage")])
            events, by_type, index = await _ttls(s, station, 202612, "Outage")
            three_days = 3 * 86_400
            assert three_days - 120 < events <= three_days
            assert three_days - 120 < by_type <= three_days
            assert index > events + 86_400  # the month index outlives the rows it points to
        finally:
            await s.close()
        forever = await _cassandra(0)
        try:
            station = unique("CP")
            await forever.append_station_events([ev(station, DEC_1, "e1", "Outage")])
            assert await _ttls(forever, station, 202612, "Outage") == (None, None, None)
        finally:
            await forever.close()

    @pytest.mark.infra
    async def test_cassandra_a_type_filter_reads_no_other_types_rows() -> None:
        store = await _cassandra(90)
        try:
            station = unique("CP")
            rows = spread(station)
            await store.append_station_events(rows)
            ops = store.ops
            before = dict(ops)
            got = await store.read_station_events(station, types=["Outage"], limit=1000)
            assert got == [r for r in order(rows) if r.type == "Outage"]
            read = {k: ops[k] - before.get(k, 0) for k in ops if ops[k] != before.get(k, 0)}
            assert set(read) == {("read", "station_event_months"), ("read", "station_events_by_type")}
            # one read of the index, one per month holding Outage rows (Nov, Dec, Jan)
            assert read[("read", "station_event_months")] == 1
            assert read[("read", "station_events_by_type")] == 3
        finally:
            await store.close()

    @pytest.mark.infra
    async def test_cassandra_appends_write_each_month_index_row_once() -> None:
        store = await _cassandra(90)
        try:
            station = unique("CP")
            ops = store.ops
            first = dict(ops)

            def added(key: tuple[str, str], since: dict[Any, int]) -> int:
                return int(ops[key]) - since.get(key, 0)

            await store.append_station_events([ev(station, DEC_1 + timedelta(seconds=i), f"e{i}") for i in range(10)])
            assert added(("write", "station_event_months"), first) == 1
            assert added(("write", "station_events"), first) == 1  # one single-partition batch
            assert added(("write", "station_events_by_type"), first) == 1
            second = dict(ops)
            await store.append_station_events([ev(station, DEC_1 + timedelta(seconds=20 + i), f"f{i}") for i in range(10)])
            assert added(("write", "station_event_months"), second) == 0
            assert added(("write", "station_events"), second) == 1
            assert [r.event_id for r in await store.read_station_events(station, limit=2)] == ["f9", "f8"]
        finally:
            await store.close()

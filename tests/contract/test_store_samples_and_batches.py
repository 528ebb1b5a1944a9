"""The Store port's ADR 015 contract: append-only meter samples, batched documents, paged
listings and operation counts. Every test runs on SQLite and, with CSMS_INFRA=1, Cassandra
(fixtures in conftest.py); ids are unique per test, the database is shared.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from services.common.store.port import DocWrite, MeterRow, Store
from tests.contract.builders import UTC, at, unique

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
MIDNIGHT = datetime(2026, 11, 28, tzinfo=UTC)


def a_row(seconds: float, measurand: str = ENERGY, phase: str = "", value: float | None = None, **kw: Any) -> MeterRow:
    return MeterRow(timestamp=at(seconds), measurand=measurand, phase=phase, value=seconds if value is None else value, **kw)


def key(row: MeterRow) -> tuple[datetime, str, str]:
    return row.timestamp, row.measurand, row.phase


# -- samples ---------------------------------------------------------------------
async def test_a_session_without_samples_reads_empty(store: Store) -> None:
    assert await store.read_samples(unique("sess")) == []
    await store.append_samples(unique("sess"), [])


async def test_every_field_of_a_sample_round_trips(store: Store) -> None:
    session = unique("sess")
    rows = [
        MeterRow(at(1.5), ENERGY, "", 12345.5, "Wh"),
        MeterRow(at(2), POWER, "L1", 0.0, "W", raw_value="n/a", station_time=datetime(2020, 1, 1, 0, 0, 0, 7000, tzinfo=UTC)),
        MeterRow(at(3), "SoC", "", -1.25, "Percent", raw_value=""),
    ]
    await store.append_samples(session, rows)
    got = await store.read_samples(session)
    assert got == rows
    assert all(r.timestamp.utcoffset() == timedelta(0) for r in got)
    assert got[1].station_time is not None and got[1].station_time.utcoffset() == timedelta(0)


async def test_reappending_the_same_samples_is_idempotent_and_the_last_value_of_a_key_wins(store: Store) -> None:
    session = unique("sess")
    rows = [a_row(i) for i in range(20)]
    await store.append_samples(session, rows)
    await store.append_samples(session, rows)
    await store.append_samples(session, list(reversed(rows[5:15])))
    assert await store.read_samples(session) == rows
    corrected = a_row(7, value=700.0)
    await store.append_samples(session, [corrected])
    got = await store.read_samples(session)
    assert len(got) == 20 and got[7] == corrected


async def test_samples_come_back_ordered_by_time_measurand_and_phase_whatever_the_append_order(store: Store) -> None:
    session, other = unique("sess"), unique("sess")
    rows = [
        a_row(t, m, p, value=float(n))
        for n, (t, m, p) in enumerate(
            (t, m, p) for t in (0, 0.001, 1, 60, 3600) for m in (ENERGY, POWER) for p in ("", "L1", "L2")
        )
    ]
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    for i in range(0, len(shuffled), 4):
        await store.append_samples(session, shuffled[i:i + 4])
    await store.append_samples(other, [a_row(0.5)])
    got = await store.read_samples(session)
    assert got == sorted(rows, key=key)
    assert [key(r) for r in got] == sorted(key(r) for r in rows)


async def test_after_is_exclusive_and_limit_pages_through_every_sample_once(store: Store) -> None:
    session = unique("sess")
    rows = sorted((a_row(t, m) for t in range(0, 30, 2) for m in (ENERGY, POWER)), key=key)
    await store.append_samples(session, rows)
    assert await store.read_samples(session, limit=3) == rows[:3]
    assert await store.read_samples(session, after=key(rows[4])) == rows[5:]
    assert await store.read_samples(session, after=key(rows[4]), limit=2) == rows[5:7]
    assert await store.read_samples(session, after=key(rows[-1])) == []
    assert await store.read_samples(session, limit=0) == []
    # `after` need not be a stored key: it is a position in (time, measurand, phase) order
    between = (at(3), "", "")
    assert await store.read_samples(session, after=between) == [r for r in rows if key(r) > between]
    pages, position = [], None
    while True:
        page = await store.read_samples(session, after=position, limit=7)
        if not page:
            break
        assert len(page) <= 7
        pages.append(page)
        position = key(page[-1])
    assert [r for p in pages for r in p] == rows and len(pages) == 5


async def test_a_10000_sample_session_over_several_days_reads_back_complete_and_in_order(store: Store) -> None:
    session = unique("sess")
    start = MIDNIGHT - timedelta(hours=3)  # crosses several UTC midnights
    rows = [
        MeterRow(start + timedelta(seconds=45 * (i // 2)), ENERGY if i % 2 == 0 else POWER, "", float(i))
        for i in range(10_000)
    ]  # 5,000 instants 45 s apart: about 2.6 days
    assert (rows[-1].timestamp - rows[0].timestamp) > timedelta(days=2)
    shuffled = rows[:]
    random.Random(11).shuffle(shuffled)
    for i in range(0, len(shuffled), 500):
        await store.append_samples(session, shuffled[i:i + 500])
    got = await store.read_samples(session)
    assert len(got) == 10_000
    assert got == rows
    # paged across day boundaries
    paged, position = [], None
    while True:
        page = await store.read_samples(session, after=position, limit=1500)
        if not page:
            break
        paged.extend(page)
        position = key(page[-1])
    assert paged == rows
    middle = rows[6_000]
    assert await store.read_samples(session, after=key(middle), limit=3) == rows[6_001:6_004]


async def test_append_samples_many_stores_every_session_s_rows_as_separate_appends_would(store: Store) -> None:
    sessions = [unique("sess") for _ in range(25)]
    # a batch's shape: a few rows per session, one session over midnight (two partitions),
    # one with many rows, one with none, one named twice, a key repeated (the last row wins)
    items: list[tuple[str, list[MeterRow]]] = [
        (sid, [a_row(n * 10 + j, m, value=float(n * 100 + j)) for j in range(2) for m in (ENERGY, POWER)])
        for n, sid in enumerate(sessions[:20])
    ]
    over_midnight = [MeterRow(MIDNIGHT + timedelta(seconds=s), ENERGY, "", float(s)) for s in (-2, -1, 0, 1)]
    many = [a_row(i, value=float(i)) for i in range(150)]
    items += [(sessions[20], over_midnight), (sessions[21], many), (sessions[22], [])]
    items += [(sessions[23], [a_row(1, value=1.0), a_row(2, value=2.0)]), (sessions[23], [a_row(3, value=3.0)])]
    items += [(sessions[24], [a_row(5, value=1.0), a_row(5, value=9.0)])]
    await store.append_samples_many(items)
    for n, sid in enumerate(sessions[:20]):
        assert await store.read_samples(sid) == sorted(items[n][1], key=key)
    assert await store.read_samples(sessions[20]) == over_midnight
    assert await store.read_samples(sessions[21]) == many
    assert await store.read_samples(sessions[22]) == []
    assert [r.value for r in await store.read_samples(sessions[23])] == [1.0, 2.0, 3.0]
    assert [r.value for r in await store.read_samples(sessions[24])] == [9.0]
    await store.append_samples_many(items)  # again: idempotent
    assert len(await store.read_samples(sessions[21])) == 150
    await store.append_samples_many([])
    odd = unique("sess")
    await store.append_samples_many([(odd, [a_row(1, value=float("inf")), a_row(2, value=-0.0)])])  # not JSON
    assert [r.value for r in await store.read_samples(odd)] == [float("inf"), -0.0]


async def test_append_samples_many_sends_fewer_requests_than_sessions(store: Store) -> None:
    items = [(unique("sess"), [a_row(1, m) for m in (ENERGY, POWER, "Current.Import", "Voltage")]) for _ in range(50)]
    for sid, rows in items:  # the days are known: what is left is the rows' requests
        await store.append_samples(sid, rows[:1])
    before = dict(store.ops)  # type: ignore[attr-defined]
    await store.append_samples_many(items)
    after = store.ops  # type: ignore[attr-defined]
    writes = after[("write", "meter_samples")] - before.get(("write", "meter_samples"), 0)
    assert 1 <= writes <= 50 // 4, writes  # SQLite: one statement; Cassandra: several sessions per batch
    assert all(after[k] == before.get(k, 0) for k in after if k[0] == "read")


# -- documents in batches ---------------------------------------------------------
async def test_put_docs_writes_every_document_readable_one_by_one_and_listed_by_parent(store: Store) -> None:
    station = unique("CP")
    items = [DocWrite(unique("sess"), {"n": i}, parent=station, version=1) for i in range(12)]
    await store.put_docs("session", items)
    for item in items:
        assert await store.get_doc("session", item.doc_id) == item.doc
    listed = await store.list_docs("session", parent=station)
    assert sorted(d["n"] for d in listed) == list(range(12))
    assert len(await store.list_docs("session", parent=station, limit=5)) == 5
    await store.put_docs("session", [])


async def test_an_older_version_arriving_after_a_newer_one_leaves_the_newer(store: Store) -> None:
    a, b, c = unique("sess"), unique("sess"), unique("sess")
    await store.put_docs("session", [DocWrite(a, {"v": 5}, version=5), DocWrite(b, {"v": 2}, version=2)])
    await store.put_docs("session", [DocWrite(a, {"v": 4}, version=4), DocWrite(b, {"v": 3}, version=3)])
    assert await store.get_docs("session", [a, b]) == {a: {"v": 5}, b: {"v": 3}}
    # both orders inside one batch, and a replay of the same version
    await store.put_docs("session", [DocWrite(c, {"v": 9}, version=9), DocWrite(c, {"v": 8}, version=8)])
    await store.put_docs("session", [DocWrite(c, {"v": 10}, version=10), DocWrite(a, {"v": 5, "replay": True}, version=5)])
    assert await store.get_docs("session", [a, c]) == {a: {"v": 5}, c: {"v": 10}}
    # put_doc agrees with what put_docs stored
    assert await store.put_doc("session", c, {"v": 10}, version=10) is False
    assert await store.put_doc("session", c, {"v": 11}, version=11) is True
    assert await store.get_doc("session", c) == {"v": 11}


async def test_unversioned_documents_in_put_docs_are_overwritten(store: Store) -> None:
    doc_id = unique("status")
    await store.put_docs("station_status", [DocWrite(doc_id, {"s": "Available"})])
    await store.put_docs("station_status", [DocWrite(doc_id, {"s": "Charging"})])
    assert await store.get_doc("station_status", doc_id) == {"s": "Charging"}


async def test_get_docs_returns_the_stored_ones_and_leaves_missing_ids_out(store: Store) -> None:
    ids = [unique("sess") for _ in range(5)]
    await store.put_docs("session", [DocWrite(i, {"id": i}, version=1) for i in ids[:3]])
    await store.put_doc("cdr", ids[3], {"id": ids[3]})  # another kind
    got = await store.get_docs("session", ids + [ids[0], unique("nope")])
    assert got == {i: {"id": i} for i in ids[:3]}
    assert await store.get_docs("session", []) == {}
    assert await store.get_docs("session", [unique("nope")]) == {}


async def test_a_document_deleted_after_put_docs_is_gone_everywhere(store: Store) -> None:
    kind, parent = unique("kind"), unique("CP")
    ids = [unique("d") for _ in range(3)]
    await store.put_docs(kind, [DocWrite(i, {"id": i}, parent=parent, version=3) for i in ids])
    assert await store.delete_doc(kind, ids[1]) is True
    assert await store.get_docs(kind, ids) == {ids[0]: {"id": ids[0]}, ids[2]: {"id": ids[2]}}
    assert sorted(d["id"] for d in await store.list_docs(kind)) == sorted([ids[0], ids[2]])
    assert sorted(d["id"] for d in await store.list_docs(kind, parent=parent)) == sorted([ids[0], ids[2]])
    page, cursor = await store.list_docs_page(kind, limit=10)
    assert sorted(d["id"] for d in page) == sorted([ids[0], ids[2]]) and cursor is None


# -- paged listings -----------------------------------------------------------------
async def all_pages(store: Store, kind: str, *, parent: str | None = None, limit: int) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_docs_page(kind, parent=parent, limit=limit, cursor=cursor)
        assert len(page) <= limit
        pages.append(page)
        if cursor is None:
            return pages
        assert len(pages) < 1000, "the cursor never ends"


@pytest.mark.parametrize("limit", [1, 4, 7, 100])
async def test_list_docs_page_visits_every_document_exactly_once(store: Store, limit: int) -> None:
    kind, p1, p2 = unique("kind"), unique("p"), unique("p")
    ids = [f"doc-{i:03d}-{unique('x')}" for i in range(37)]
    await store.put_docs(kind, [DocWrite(d, {"id": d}, parent=p1 if n % 3 else p2) for n, d in enumerate(ids)])
    pages = await all_pages(store, kind, limit=limit)
    seen = [d["id"] for page in pages for d in page]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert all(len(page) == limit for page in pages[:-1])  # only the last page may be short
    assert pages[-1]  # and it is never empty when there is anything to list
    by_parent = [d["id"] for page in await all_pages(store, kind, parent=p2, limit=limit) for d in page]
    assert sorted(by_parent) == sorted(d for n, d in enumerate(ids) if n % 3 == 0)


async def test_documents_updated_while_paging_are_neither_skipped_nor_repeated(store: Store) -> None:
    kind = unique("kind")
    ids = [unique("d") for _ in range(20)]
    await store.put_docs(kind, [DocWrite(d, {"id": d, "v": 1}, version=1) for d in ids])
    seen: list[str] = []
    cursor: str | None = None
    version = 1
    while True:
        page, cursor = await store.list_docs_page(kind, limit=3, cursor=cursor)
        seen.extend(d["id"] for d in page)
        version += 1  # everything changes between pages (moves every doc in update-time order)
        await store.put_docs(kind, [DocWrite(d, {"id": d, "v": version}, version=version) for d in reversed(ids)])
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 20


async def test_an_empty_kind_is_one_empty_page_and_a_foreign_cursor_is_refused(store: Store) -> None:
    assert await store.list_docs_page(unique("kind")) == ([], None)
    assert await store.list_docs_page(unique("kind"), parent="x") == ([], None)
    for bad in ("not-a-cursor", "", "W10=", "WyJ4Il0="):
        with pytest.raises(ValueError):
            await store.list_docs_page("session", cursor=bad)
    # well-formed, but a position no adapter issues: a bucket out of range, an id not a string
    for position in (["b", 99, "x"], ["id", 7], ["p", 7]):
        bad = base64.urlsafe_b64encode(json.dumps(position).encode()).decode()
        with pytest.raises(ValueError):
            await store.list_docs_page("session", cursor=bad)
        with pytest.raises(ValueError):
            await store.list_docs_page("session", parent="x", cursor=bad)


async def test_list_docs_of_a_kind_is_still_newest_first_with_the_limit(store: Store) -> None:
    import asyncio

    kind = unique("kind")
    for i in range(6):
        await store.put_docs(kind, [DocWrite(f"d{i}", {"i": i}, parent=f"p{i % 2}")])
        await asyncio.sleep(0.005)
    assert await store.list_docs(kind) == [{"i": i} for i in reversed(range(6))]
    assert await store.list_docs(kind, limit=2) == [{"i": 5}, {"i": 4}]
    assert await store.list_docs(kind, parent="p0") == [{"i": 4}, {"i": 2}, {"i": 0}]


# -- operation counts (ADR 015: store traffic per event is constant) -------------------
async def ops_to_append(store: Store, session: str, rows: list[MeterRow]) -> dict[tuple[str, str], int]:
    before = dict(store.ops)  # type: ignore[attr-defined]
    await store.append_samples(session, rows)
    after = store.ops  # type: ignore[attr-defined]
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


async def test_appending_costs_the_same_operations_whether_the_session_holds_10_or_2000_samples(store: Store, open_store: Any) -> None:
    def samples(first: int, n: int) -> list[MeterRow]:
        return [MeterRow(MIDNIGHT + timedelta(seconds=first + i), ENERGY, "", float(first + i)) for i in range(n)]

    costs, cold_costs = {}, {}
    cold = await open_store()  # another process: has not seen these sessions' days yet
    for existing in (10, 2000):
        session = unique("sess")
        await store.append_samples(session, samples(0, existing))
        costs[existing] = await ops_to_append(store, session, samples(existing, 5))
        cold_costs[existing] = await ops_to_append(cold, session, samples(existing + 5, 5))
        assert len(await store.read_samples(session)) == existing + 10
    assert costs[10] == costs[2000]
    assert cold_costs[10] == cold_costs[2000]
    exported = REGISTRY.get_sample_value("csms_store_ops_total", {"op": "write", "table": "meter_samples"})
    assert exported is not None and exported >= costs[10][("write", "meter_samples")]
    assert costs[10] and all(op == "write" for op, _ in costs[10])  # an append never reads
    assert sum(costs[10].values()) <= 2 and sum(cold_costs[10].values()) <= 2


async def test_put_docs_and_get_docs_never_read_more_than_one_operation_per_document(store: Store) -> None:
    items = [DocWrite(unique("sess"), {"i": i, "pad": "x" * 1500}, parent="CP", version=i + 1) for i in range(10)]
    before = dict(store.ops)  # type: ignore[attr-defined]
    await store.put_docs("session", items)
    mid = dict(store.ops)  # type: ignore[attr-defined]
    got = await store.get_docs("session", [i.doc_id for i in items])
    end = dict(store.ops)  # type: ignore[attr-defined]
    assert len(got) == 10
    writes = {k: mid[k] - before.get(k, 0) for k in mid if mid[k] != before.get(k, 0)}
    reads = {k: end[k] - mid.get(k, 0) for k in end if end[k] != mid.get(k, 0)}
    assert all(op == "write" for op, _ in writes) and writes  # no read-before-write
    assert all(op == "read" for op, _ in reads) and 1 <= sum(reads.values()) <= 10
    assert all(n <= 10 for n in writes.values())  # at most one request per document and table


async def test_sample_values_round_trip_exactly_including_awkward_floats(store: Store) -> None:
    session = unique("sess")
    values = [0.1 + 0.2, 1e-300, 5e-324, 1.7976931348623157e308, -0.0, 123456789.123456789, 2.0**53 + 2, float("inf")]
    rows = [a_row(i, value=v) for i, v in enumerate(values)]
    await store.append_samples(session, rows[:-1])
    await store.append_samples(session, rows[-1:])  # not JSON-representable: the adapter must still store it
    got = await store.read_samples(session)
    assert [r.value for r in got] == values

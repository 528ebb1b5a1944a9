"""Reservation documents (services/stations/reservation_documents.py) on every store adapter
(SQLite always, Cassandra with CSMS_INFRA=1): the compare-and-set both writers (the API and
the stations-drivers stage) rely on loses no update and never lets a final status be
undone, and the indexes (a station's, a token's, the open ones) list what they should."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from services.common import kinds
from services.common.store.port import Store
from services.stations.domain.reservations import Reservation, new_reservation, status_reported, used
from services.stations.reservation_documents import (
    OPEN,
    create_reservation,
    reservation_from_doc,
    update_reservation,
)

from .conftest import OpenStore

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def fresh(station: str, token: str) -> Reservation:
    rid = secrets.randbelow(2**31 - 2) + 1
    return new_reservation(rid, station, token, T0 + timedelta(hours=1), T0, evse_id=1)


def tag() -> str:
    return "R" + secrets.token_hex(5)


async def test_concurrent_writers_lose_no_update(store: Store, open_store: OpenStore) -> None:
    other = await open_store()  # a second process on the same database
    r = await create_reservation(store, fresh(tag(), tag()))
    writers = [store, other] * 3

    async def add(i: int) -> None:
        await update_reservation(writers[i], r.id, lambda x: replace(x, note=x.note + str(i)), tries=len(writers) + 2)

    await asyncio.gather(*(add(i) for i in range(len(writers))))
    doc = await store.get_doc(kinds.RESERVATION, str(r.id))
    assert doc is not None
    after = reservation_from_doc(doc)
    assert sorted(after.note) == [str(i) for i in range(len(writers))], after.note
    assert after.revision == 1 + len(writers)


async def test_a_final_status_set_by_one_writer_is_never_undone_by_the_other(store: Store, open_store: OpenStore) -> None:
    other = await open_store()
    r = await create_reservation(store, fresh(tag(), tag()))
    await asyncio.gather(
        update_reservation(store, r.id, lambda x: used(x, "tx-1", "s-1", T0 + timedelta(minutes=1))),
        update_reservation(other, r.id, lambda x: status_reported(x, "Removed", T0 + timedelta(minutes=1))),
    )
    doc = await store.get_doc(kinds.RESERVATION, str(r.id))
    assert doc is not None
    after = reservation_from_doc(doc)
    assert after.status in ("Used", "Removed")
    assert [c.status for c in after.history] == ["Requested", after.status], after.history
    assert after.revision == 2
    assert str(r.id) not in {str(d["id"]) for d in await store.list_docs(kinds.RESERVATION_OPEN, parent=OPEN, limit=10_000)}


async def test_the_indexes_list_a_station_and_a_token(store: Store) -> None:
    station, token = tag(), tag()
    a = await create_reservation(store, fresh(station, token))
    b = await create_reservation(store, fresh(station, tag()))
    c = await create_reservation(store, fresh(tag(), token))
    assert {d["id"] for d in await store.list_docs(kinds.RESERVATION, parent=station)} == {a.id, b.id}
    assert {d["id"] for d in await store.list_docs(kinds.RESERVATION_TOKEN, parent=token)} == {a.id, c.id}
    open_ids = {d["id"] for d in await store.list_docs(kinds.RESERVATION_OPEN, parent=OPEN, limit=10_000)}
    assert {a.id, b.id, c.id} <= open_ids
    assert await update_reservation(store, secrets.randbelow(2**30) + 2**30, lambda x: x) is None

"""The reservations fold of the stations-drivers stage and its expiry job, on a real SQLite
store: late command results, ReservationStatusUpdate, a transaction started with the
reservation id (Used, linked to the session), expiry, idempotent redelivery, events of
other stations or unknown reservations skipped, compare-and-set races retried."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from services.common import events as ev
from services.common import kinds
from services.common.store.sqlite import SqliteStore
from services.sessions.domain import session_id
from services.stations.domain.reservations import CANCEL, Reservation, command_id, new_reservation
from services.stations.drivers.reservations import ORPHAN_AFTER, ReservationsFold
from services.stations.reservation_documents import (
    OPEN,
    ReservationConflict,
    create_reservation,
    reservation_from_doc,
    update_reservation,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(f"sqlite:///{tmp_path}/r.db")
    await s.start()
    await s.migrate()
    yield s
    await s.close()


def env(station_id: str, body: ev.Body, at: datetime = T0) -> ev.Envelope:
    return ev.Envelope(event_id=str(uuid.uuid4()), station_id=station_id, received_at=at, body=body)


async def stored(store: SqliteStore, rid: int) -> Reservation:
    doc = await store.get_doc(kinds.RESERVATION, str(rid))
    assert doc is not None
    return reservation_from_doc(doc)


async def a_reservation(store: SqliteStore, rid: int = 7, station: str = "CP-1", minutes: int = 30) -> Reservation:
    r = new_reservation(rid, station, "TOKEN1", T0 + timedelta(minutes=minutes), T0, connector_id=1)
    return await create_reservation(store, r)


def reserve_result(r: Reservation, status: str, **kw: Any) -> ev.CommandResult:
    return ev.CommandResult(command_id=r.reserve_command_id, command_type="ReserveNow", status=status, **kw)


async def test_a_late_reserve_now_answer_is_recorded_once(store: SqliteStore) -> None:
    r = await a_reservation(store)
    fold = ReservationsFold(store, Clock())
    e = env("CP-1", reserve_result(r, "Accepted"))
    await fold.apply([e])
    after = await stored(store, 7)
    assert after.status == "Accepted" and after.revision == 2
    await fold.apply([e, e])  # redelivered batch
    again = await stored(store, 7)
    assert again == after  # nothing written: same revision, same history


async def test_results_of_other_commands_are_left_alone(store: SqliteStore) -> None:
    r = await a_reservation(store)
    fold = ReservationsFold(store, Clock())
    raw = ev.CommandResult(command_id=str(uuid.uuid4()), command_type="ReserveNow", status="Accepted")
    not_ours = ev.CommandResult(command_id=command_id(7, "reserve"), command_type="ReserveNow", status="Accepted")
    other_type = ev.CommandResult(command_id=r.reserve_command_id, command_type="Reset", status="Accepted")
    await fold.apply([env("CP-1", raw), env("CP-1", not_ours), env("CP-1", other_type)])
    assert (await stored(store, 7)).status == "Requested"


async def test_reservation_status_update_removed_and_expired(store: SqliteStore) -> None:
    r7, r8 = await a_reservation(store, 7), await a_reservation(store, 8)
    fold = ReservationsFold(store, Clock())
    await fold.apply([env("CP-1", reserve_result(r7, "Accepted")), env("CP-1", reserve_result(r8, "Accepted"))])
    await fold.apply([env("CP-1", ev.ReservationStatus(7, "Removed")), env("CP-1", ev.ReservationStatus(8, "Expired"))])
    assert (await stored(store, 7)).status == "Removed"
    assert (await stored(store, 8)).status == "Expired"
    # final: they leave the open index
    assert await store.list_docs(kinds.RESERVATION_OPEN, parent=OPEN) == []


async def test_a_transaction_started_with_the_id_uses_it_and_links_the_session(store: SqliteStore) -> None:
    r = await a_reservation(store)
    fold = ReservationsFold(store, Clock())
    await fold.apply([env("CP-1", reserve_result(r, "Accepted"))])
    start = ev.TransactionStarted(transaction_id="1234", connector_id=1, id_token="TOKEN1", reservation_id=7)
    plain = ev.TransactionStarted(transaction_id="1235", connector_id=2, id_token="OTHER")
    await fold.apply([env("CP-1", plain), env("CP-1", start, T0 + timedelta(minutes=2))])
    u = await stored(store, 7)
    assert (u.status, u.transaction_id, u.session_id) == ("Used", "1234", session_id("CP-1", "1234"))
    assert u.history[-1].cause == "TransactionStarted" and u.history[-1].at == T0 + timedelta(minutes=2)
    # final: a later Removed, expiry or a second start do not move it
    await fold.apply([env("CP-1", ev.ReservationStatus(7, "Removed")),
                      env("CP-1", ev.TransactionStarted(transaction_id="99", reservation_id=7))])
    assert await stored(store, 7) == u


async def test_events_of_another_station_or_unknown_reservations_change_nothing(store: SqliteStore) -> None:
    r = await a_reservation(store)
    fold = ReservationsFold(store, Clock())
    await fold.apply([
        env("CP-2", reserve_result(r, "Accepted")),
        env("CP-2", ev.ReservationStatus(7, "Removed")),
        env("CP-2", ev.TransactionStarted(transaction_id="1", reservation_id=7)),
        env("CP-1", ev.ReservationStatus(999, "Removed")),
        env("CP-1", ev.ReservationStatus(-4, "Removed")),
        env("CP-1", ev.TransactionStarted(transaction_id="2", reservation_id=2**40)),
    ])
    assert (await stored(store, 7)).status == "Requested"


async def test_a_late_cancel_answer_cancels(store: SqliteStore) -> None:
    r = await a_reservation(store)
    fold = ReservationsFold(store, Clock())
    await fold.apply([env("CP-1", reserve_result(r, "Accepted"))])
    cid = command_id(7, CANCEL)
    from services.stations.domain.reservations import cancel_requested
    await update_reservation(store, 7, lambda x: cancel_requested(x, cid, T0))
    await fold.apply([env("CP-1", ev.CommandResult(command_id=cid, command_type="CancelReservation", status="Accepted"))])
    assert (await stored(store, 7)).status == "Cancelled"


async def test_the_expiry_job_expires_open_reservations_past_their_time(store: SqliteStore) -> None:
    clock = Clock()
    fold = ReservationsFold(store, clock)
    soon, later = await a_reservation(store, 7, minutes=1), await a_reservation(store, 8, minutes=60)
    used_one = await a_reservation(store, 9, minutes=1)
    await fold.apply([env("CP-1", reserve_result(soon, "Accepted")), env("CP-1", reserve_result(used_one, "Accepted")),
                      env("CP-1", ev.TransactionStarted(transaction_id="5", reservation_id=9))])
    assert await fold.expire_due() == 0
    clock.now = T0 + timedelta(minutes=1)
    assert await fold.expire_due() == 1
    assert (await stored(store, 7)).status == "Expired"
    assert (await stored(store, 8)).status == "Requested"
    assert (await stored(store, 9)).status == "Used"
    assert await fold.expire_due() == 0  # idempotent
    assert [d["id"] for d in await store.list_docs(kinds.RESERVATION_OPEN, parent=OPEN)] == [8]
    assert later.id == 8


async def test_the_expiry_job_cleans_index_entries_without_a_reservation(store: SqliteStore) -> None:
    clock = Clock()
    fold = ReservationsFold(store, clock)
    await store.put_doc(kinds.RESERVATION_OPEN, "55", {"id": 55, "station_id": "CP-1", "created_at": "2026-12-01T10:00:00.000Z"},
                        parent=OPEN)
    await fold.expire_due()
    assert len(await store.list_docs(kinds.RESERVATION_OPEN, parent=OPEN)) == 1  # maybe a create in progress
    clock.now = T0 + ORPHAN_AFTER + timedelta(seconds=1)
    await fold.expire_due()
    assert await store.list_docs(kinds.RESERVATION_OPEN, parent=OPEN) == []


class Racing:
    """A store whose first `losses` compare-and-set writes of a reservation lose to another
    writer that cancels it in between (what a second replica or the API would do)."""

    def __init__(self, store: SqliteStore, losses: int, other: Any) -> None:
        self._store, self.losses, self._other = store, losses, other

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def put_doc_if(self, kind: str, doc_id: str, doc: dict[str, Any], **kw: Any) -> bool:
        if kind == kinds.RESERVATION and self.losses > 0:
            self.losses -= 1
            await update_reservation(self._store, int(doc_id), self._other)
        return await self._store.put_doc_if(kind, doc_id, doc, **kw)


async def test_a_lost_race_reads_again_and_a_final_status_wins(store: SqliteStore) -> None:
    r = await a_reservation(store)
    from services.stations.domain.reservations import status_reported
    racing = Racing(store, 1, lambda x: status_reported(x, "Removed", T0))
    fold = ReservationsFold(racing, Clock())  # type: ignore[arg-type]
    await fold.apply([env("CP-1", reserve_result(r, "Accepted"))])
    after = await stored(store, 7)
    # the other writer's Removed landed first; the Accepted answer, applied again on it, changes nothing
    assert after.status == "Removed" and [c.status for c in after.history] == ["Requested", "Removed"]


async def test_a_write_that_keeps_losing_raises_so_the_batch_is_retried(store: SqliteStore) -> None:
    r = await a_reservation(store)
    note = iter(range(100))
    from dataclasses import replace

    racing = Racing(store, 100, lambda x: replace(x, note=f"n{next(note)}"))
    fold = ReservationsFold(racing, Clock())  # type: ignore[arg-type]
    with pytest.raises(ReservationConflict):
        await fold.apply([env("CP-1", reserve_result(r, "Accepted"))])

"""The reservation rules (services/stations/domain/reservations.py): every way a reservation
moves, each idempotent, and final statuses never moving again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.stations.domain.reservations import (
    CANCEL,
    FINAL,
    MAX_HISTORY,
    RESERVE,
    STATUSES,
    Reservation,
    cancel_answered,
    cancel_requested,
    command_id,
    expire,
    new_reservation,
    reservation_of_command,
    reserve_answered,
    status_reported,
    used,
)

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)


def a_reservation(**kw: object) -> Reservation:
    return new_reservation(17, "CP-1", "TOKEN1", T0 + timedelta(minutes=30), T0, connector_id=1, **kw)  # type: ignore[arg-type]


def accepted() -> Reservation:
    r = a_reservation()
    return reserve_answered(r, r.reserve_command_id, "Accepted", T0 + timedelta(seconds=1))


def test_command_ids_name_their_reservation_and_nothing_else_does() -> None:
    cid = command_id(17, RESERVE)
    assert reservation_of_command(cid) == (17, RESERVE)
    assert reservation_of_command(command_id(2**31 - 1, CANCEL)) == (2**31 - 1, CANCEL)
    assert command_id(17, RESERVE) != cid  # a new one each time
    for other in ("", "3f2c9e0e-5b4c-4d7e-9a55-0f1d6c0b9e21", "reservation-x-reserve-abc", "reservation-17-delete-abc",
                  "reservation-0-reserve-abc", f"reservation-{2**31}-reserve-abc", "reservation-17-reserve"):
        assert reservation_of_command(other) is None, other


def test_a_new_reservation_is_requested_with_its_reserve_command() -> None:
    r = a_reservation()
    assert r.status == "Requested" and reservation_of_command(r.reserve_command_id) == (17, RESERVE)
    assert [c.cause for c in r.history] == ["created"]


@pytest.mark.parametrize("answer", ["Accepted", "Faulted", "Occupied", "Rejected", "Unavailable"])
def test_the_station_answer_to_reserve_now_is_the_status(answer: str) -> None:
    r = a_reservation()
    moved = reserve_answered(r, r.reserve_command_id, answer, T0 + timedelta(seconds=1))
    assert moved.status == answer
    assert moved.history[-1].cause == f"ReserveNow {answer}"
    # the same answer again (the processor after the API) changes nothing: the same object
    assert reserve_answered(moved, r.reserve_command_id, answer, T0 + timedelta(seconds=5)) is moved


def test_a_timeout_keeps_it_requested_with_a_note_and_a_late_answer_still_counts() -> None:
    r = a_reservation()
    timed_out = reserve_answered(r, r.reserve_command_id, "Timeout", T0 + timedelta(seconds=5))
    assert timed_out.status == "Requested" and "did not answer" in timed_out.note
    assert reserve_answered(timed_out, r.reserve_command_id, "Timeout", T0 + timedelta(seconds=9)) is timed_out
    late = reserve_answered(timed_out, r.reserve_command_id, "Accepted", T0 + timedelta(seconds=12))
    assert late.status == "Accepted" and late.note == ""


def test_a_result_that_never_reached_the_station_is_rejected_with_the_reason() -> None:
    r = a_reservation()
    moved = reserve_answered(r, r.reserve_command_id, "StationOffline", T0, description="station is not connected")
    assert moved.status == "Rejected" and "StationOffline" in moved.note
    callerror = reserve_answered(r, r.reserve_command_id, "Rejected", T0, error_code="NotImplemented")
    assert callerror.status == "Rejected" and "NotImplemented" in callerror.note


def test_only_the_recorded_command_moves_it() -> None:
    r = a_reservation()
    assert reserve_answered(r, command_id(17, RESERVE), "Accepted", T0) is r
    a = accepted()
    assert cancel_answered(a, command_id(17, CANCEL), "Accepted", T0) is a  # no cancel recorded


def test_cancel_is_recorded_then_accepted_cancels_and_a_refusal_leaves_a_note() -> None:
    a = accepted()
    cid = command_id(17, CANCEL)
    pending = cancel_requested(a, cid, T0 + timedelta(seconds=2))
    assert pending.cancel_command_id == cid and pending.status == "Accepted"
    assert cancel_requested(pending, cid, T0 + timedelta(seconds=3)) is pending
    refused = cancel_answered(pending, cid, "Rejected", T0 + timedelta(seconds=3))
    assert refused.status == "Accepted" and "did not cancel" in refused.note
    done = cancel_answered(pending, cid, "Accepted", T0 + timedelta(seconds=3))
    assert done.status == "Cancelled"
    assert cancel_answered(done, cid, "Accepted", T0 + timedelta(seconds=4)) is done


def test_reservation_status_update_expired_and_removed() -> None:
    a = accepted()
    assert status_reported(a, "Expired", T0).status == "Expired"
    removed = status_reported(a, "Removed", T0)
    assert removed.status == "Removed" and removed.history[-1].cause == "ReservationStatusUpdate Removed"
    assert status_reported(a, "Whatever", T0) is a


def test_used_links_the_transaction_and_session() -> None:
    a = accepted()
    u = used(a, "tx-9", "sess-9", T0 + timedelta(minutes=1))
    assert (u.status, u.transaction_id, u.session_id) == ("Used", "tx-9", "sess-9")
    assert used(u, "tx-10", "sess-10", T0 + timedelta(minutes=2)) is u  # final: the first use stands


def test_expiry_is_at_expires_at_for_open_reservations_only() -> None:
    a = accepted()
    assert expire(a, a.expires_at - timedelta(milliseconds=1)) is a
    e = expire(a, a.expires_at)
    assert e.status == "Expired" and e.history[-1].cause == "expiry"
    assert expire(a_reservation(), a.expires_at).status == "Expired"  # Requested, never answered


def test_final_statuses_never_move_again() -> None:
    a = accepted()
    finals = {
        "Used": used(a, "tx", "s", T0),
        "Expired": expire(a, a.expires_at),
        "Removed": status_reported(a, "Removed", T0),
    }
    r0 = a_reservation()
    finals["Occupied"] = reserve_answered(r0, r0.reserve_command_id, "Occupied", T0)
    cid = command_id(17, CANCEL)
    finals["Cancelled"] = cancel_answered(cancel_requested(a, cid, T0), cid, "Accepted", T0)
    later = T0 + timedelta(days=1)
    for name, f in finals.items():
        assert f.status == name and f.status in FINAL
        for step in (
            lambda x: used(x, "tx2", "s2", later),
            lambda x: expire(x, later),
            lambda x: status_reported(x, "Removed", later),
            lambda x: status_reported(x, "Expired", later),
            lambda x: reserve_answered(x, x.reserve_command_id, "Accepted", later),
            lambda x: cancel_requested(x, command_id(17, CANCEL), later),
            lambda x: cancel_answered(x, x.cancel_command_id, "Accepted", later),
        ):
            assert step(f) is f, (name, step(f))


def test_history_is_bounded() -> None:
    r = accepted()
    cid = command_id(17, CANCEL)
    r = cancel_requested(r, cid, T0)
    for i in range(MAX_HISTORY * 2):  # alternating refusals change the note each time
        r = cancel_answered(r, cid, "Rejected" if i % 2 else "Unknown", T0 + timedelta(seconds=i))
    assert len(r.history) == MAX_HISTORY
    assert set(STATUSES) >= {c.status for c in r.history}

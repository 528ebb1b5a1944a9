"""Reservations as objects (ADR 018 §3): what a reservation is and every rule that moves it.

A `Reservation` is created `Requested` by the API (before ReserveNow is sent) and moved
on, by the API and the `stations-drivers` stage, only through the functions here, each
pure and idempotent (applying the same thing twice gives the same reservation, the very
same object when nothing changes, so the caller writes nothing):

- `reserve_answered`: the station's answer to ReserveNow (Accepted; Faulted, Occupied,
  Rejected, Unavailable are final). A gateway outcome that means the station never got it
  (StationOffline, NotSupported, an invalid command) is `Rejected` with a note; a Timeout
  leaves it `Requested` with a note (the station may hold it; it expires at its time).
- `cancel_requested` / `cancel_answered`: DELETE records the CancelReservation command
  first; an Accepted answer makes it `Cancelled`, a refusal only leaves a note.
- `status_reported`: 2.0.1 ReservationStatusUpdate (Expired, Removed).
- `used`: a transaction started with its id (1.6 StartTransaction.reservationId, 2.0.1
  TransactionEvent Started `reservationId`): `Used`, linked to the transaction and session.
- `expire`: past `expires_at` while `Requested` or `Accepted`: `Expired` (1.6 stations send
  no ReservationStatusUpdate: the CSMS decides).

Only the command a reservation recorded moves it (`reserve_command_id`,
`cancel_command_id`): a result of another command (a raw ReserveNow through the commands
API) never does. A final status never changes again. Every status change (and a note's
change) is kept in `history`, the last `MAX_HISTORY` of them.

Command ids carry the reservation id (`command_id(rid, op)`), so a result the gateway
produced without sending anything (no OCPP request to read the id from) still finds its
reservation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

__all__ = [
    "ACCEPTED",
    "CANCELLED",
    "EXPIRED",
    "FINAL",
    "MAX_HISTORY",
    "OPEN",
    "REMOVED",
    "REQUESTED",
    "STATUSES",
    "USED",
    "Change",
    "Reservation",
    "cancel_answered",
    "cancel_requested",
    "command_id",
    "expire",
    "is_final",
    "new_reservation",
    "reservation_of_command",
    "reserve_answered",
    "status_reported",
    "used",
]

REQUESTED = "Requested"
ACCEPTED = "Accepted"
USED = "Used"
EXPIRED = "Expired"
CANCELLED = "Cancelled"
REMOVED = "Removed"
# the station's refusals of ReserveNow (final)
_REFUSALS = ("Faulted", "Occupied", "Rejected", "Unavailable")
STATUSES = (REQUESTED, ACCEPTED, *_REFUSALS, USED, EXPIRED, CANCELLED, REMOVED)
OPEN = frozenset({REQUESTED, ACCEPTED})
FINAL = frozenset(STATUSES) - OPEN
MAX_HISTORY = 20
_COMMAND_PREFIX = "reservation-"
RESERVE, CANCEL = "reserve", "cancel"
# ReservationStatusUpdate statuses (2.0.1 ReservationUpdateStatusEnumType)
_REPORTED = {"Expired": EXPIRED, "Removed": REMOVED}


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a reservation's history: the status from `at`, and why."""

    at: datetime
    status: str
    cause: str


@dataclass(frozen=True, slots=True)
class Reservation:
    id: int                       # the ReserveNow reservationId / id: a positive int32
    station_id: str
    id_token: str
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    connector_id: int | None = None
    evse_id: int | None = None
    id_token_type: str = ""       # 2.0.1 IdToken type ("" = the command's default, Central)
    group_id: str = ""
    status: str = REQUESTED
    note: str = ""                # the last thing worth telling an operator (a timeout, a refused cancel)
    reserve_command_id: str = ""
    cancel_command_id: str = ""
    transaction_id: str = ""
    session_id: str = ""
    history: tuple[Change, ...] = ()
    revision: int = 0             # the stored document's version (compare-and-set)


def is_final(r: Reservation) -> bool:
    return r.status in FINAL


def command_id(reservation_id: int, op: str) -> str:
    """A new command id for ReserveNow (`reserve`) or CancelReservation (`cancel`) of a
    reservation: `reservation-<id>-<op>-<random>`."""
    return f"{_COMMAND_PREFIX}{reservation_id}-{op}-{uuid.uuid4().hex[:12]}"


def reservation_of_command(cid: str) -> tuple[int, str] | None:
    """(reservation id, op) of a command id made by `command_id`; None for any other."""
    if not cid.startswith(_COMMAND_PREFIX):
        return None
    parts = cid[len(_COMMAND_PREFIX):].split("-")
    if len(parts) != 3 or parts[1] not in (RESERVE, CANCEL) or not parts[0].isdigit():
        return None
    rid = int(parts[0])
    return (rid, parts[1]) if 0 < rid < 2**31 else None


def new_reservation(
    rid: int, station_id: str, id_token: str, expires_at: datetime, at: datetime, *,
    connector_id: int | None = None, evse_id: int | None = None, id_token_type: str = "", group_id: str = "",
) -> Reservation:
    """A `Requested` reservation whose ReserveNow command id is already chosen."""
    return Reservation(
        id=rid, station_id=station_id, id_token=id_token, expires_at=expires_at, created_at=at, updated_at=at,
        connector_id=connector_id, evse_id=evse_id, id_token_type=id_token_type, group_id=group_id,
        reserve_command_id=command_id(rid, RESERVE), history=(Change(at, REQUESTED, "created"),),
    )


def _move(
    r: Reservation, status: str, cause: str, at: datetime, *, note: str | None = None,
    transaction_id: str | None = None, session_id: str | None = None,
) -> Reservation:
    """`r` with a new status (or only a new note, or its transaction); the same object
    when nothing changes."""
    new_note = r.note if note is None else note
    tx = r.transaction_id if transaction_id is None else transaction_id
    sid = r.session_id if session_id is None else session_id
    if status == r.status and new_note == r.note and tx == r.transaction_id and sid == r.session_id:
        return r
    history = r.history
    if status != r.status or new_note != r.note:
        history = (*r.history, Change(at, status, cause))[-MAX_HISTORY:]
    return replace(r, status=status, note=new_note, transaction_id=tx, session_id=sid,
                   updated_at=max(at, r.updated_at), history=history)


def reserve_answered(
    r: Reservation, cid: str, status: str, at: datetime, *, error_code: str = "", description: str = "",
) -> Reservation:
    """The result of ReserveNow command `cid` (the station's answer or a gateway outcome)."""
    if cid != r.reserve_command_id or r.status != REQUESTED:
        return r
    if status == "Timeout":
        return _move(r, REQUESTED, "ReserveNow Timeout", at,
                     note="the station did not answer ReserveNow in time; it may still hold the reservation")
    if status == ACCEPTED:
        return _move(r, ACCEPTED, "ReserveNow Accepted", at, note="")
    if status in _REFUSALS:
        note = f"the station answered with CALLERROR {error_code}" if error_code else ""
        if error_code and description:
            note += f": {description}"
        return _move(r, status, f"ReserveNow {status}", at, note=note[:255])
    why = status + (f" ({error_code})" if error_code else "") + (f": {description}" if description else "")
    return _move(r, "Rejected", f"ReserveNow {status}", at, note=f"ReserveNow did not reach the station: {why}"[:255])


def cancel_requested(r: Reservation, cid: str, at: datetime) -> Reservation:
    """DELETE: the CancelReservation command `cid` is recorded before it is sent."""
    if is_final(r) or r.cancel_command_id == cid:
        return r
    return replace(r, cancel_command_id=cid, updated_at=max(at, r.updated_at))


def cancel_answered(r: Reservation, cid: str, status: str, at: datetime, *, error_code: str = "") -> Reservation:
    """The result of CancelReservation command `cid`: Accepted cancels; anything else only
    leaves a note (the reservation stands)."""
    if cid != r.cancel_command_id or is_final(r):
        return r
    if status == ACCEPTED:
        return _move(r, CANCELLED, "CancelReservation Accepted", at, note="")
    why = status + (f" ({error_code})" if error_code else "")
    return _move(r, r.status, f"CancelReservation {status}", at, note=f"the station did not cancel: {why}"[:255])


def status_reported(r: Reservation, reported: str, at: datetime) -> Reservation:
    """2.0.1 ReservationStatusUpdate: Expired or Removed (anything else changes nothing)."""
    status = _REPORTED.get(reported)
    if status is None or is_final(r):
        return r
    return _move(r, status, f"ReservationStatusUpdate {reported}", at)


def used(r: Reservation, transaction_id: str, session_id: str, at: datetime) -> Reservation:
    """A transaction started with this reservation's id."""
    if is_final(r):
        return r
    return _move(r, USED, "TransactionStarted", at, transaction_id=transaction_id, session_id=session_id)


def expire(r: Reservation, now: datetime) -> Reservation:
    """`Expired` once `expires_at` has passed while it is open."""
    if is_final(r) or now < r.expires_at:
        return r
    return _move(r, EXPIRED, "expiry", now)

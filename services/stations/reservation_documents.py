"""RESERVATION documents and their two indexes (ADR 018 §3), shared by the API (creates,
cancels) and the `stations-drivers` stage (moves on, expires).

- RESERVATION: a `Reservation`, id = str(reservation id), parent = the station id. Both
  writers write it only with compare-and-set on `revision` (`put_doc_if`), through
  `update_reservation`, which re-reads and retries on conflict; instants are `to_ocpp`
  text. A document without a field added later loads with that field's default.
- RESERVATION_TOKEN: the token's index, id = str(reservation id), parent = the id token;
  written once by the API before the reservation (`{id, station_id, created_at}`), never
  changed: `GET /tokens/{id}/reservations` lists the ids there and reads the reservations.
- RESERVATION_OPEN: the reservations not final yet, id = str(reservation id), parent
  `OPEN` (`{id, station_id, created_at}`); written by the API before the reservation,
  deleted by whichever writer makes it final (and by the expiry job when it finds one
  already final, or one whose reservation was never stored after a while): the expiry
  job lists only these, so its cost follows the open reservations, not every one ever
  made.

A reservation is never deleted (Cassandra: a delete does not shadow a compare-and-set
write); one that never reached its station is final (`Rejected`, with a note).

Listings are read for ids only and the documents read again by id (`get_docs`): a listing
row may lag the document (Cassandra writes it after the compare-and-set).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from services.common import kinds
from services.common.store.port import DocumentStore
from services.common.timeutil import parse_ocpp, to_ocpp
from services.stations.domain.reservations import Change, Reservation, is_final

__all__ = [
    "OPEN",
    "ReservationConflict",
    "create_reservation",
    "reservation_from_doc",
    "reservation_to_doc",
    "update_reservation",
]

OPEN = "open"
UPDATE_TRIES = 8


class ReservationConflict(Exception):
    """The reservation kept changing under a writer (every compare-and-set lost)."""


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else to_ocpp(dt)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def reservation_to_doc(r: Reservation) -> dict[str, Any]:
    return {
        "id": r.id,
        "station_id": r.station_id,
        "id_token": r.id_token,
        "id_token_type": r.id_token_type or None,
        "group_id": r.group_id or None,
        "connector_id": r.connector_id,
        "evse_id": r.evse_id,
        "expires_at": to_ocpp(r.expires_at),
        "status": r.status,
        "note": r.note or None,
        "reserve_command_id": r.reserve_command_id or None,
        "cancel_command_id": r.cancel_command_id or None,
        "transaction_id": r.transaction_id or None,
        "session_id": r.session_id or None,
        "created_at": to_ocpp(r.created_at),
        "updated_at": to_ocpp(r.updated_at),
        "history": [{"at": to_ocpp(c.at), "status": c.status, "cause": c.cause} for c in r.history],
        "revision": r.revision,
    }


def reservation_from_doc(d: Mapping[str, Any]) -> Reservation:
    created = parse_ocpp(str(d["created_at"]))
    return Reservation(
        id=int(d["id"]),
        station_id=str(d["station_id"]),
        id_token=str(d.get("id_token") or ""),
        expires_at=parse_ocpp(str(d["expires_at"])),
        created_at=created,
        updated_at=parse_ocpp(str(d["updated_at"])) if d.get("updated_at") else created,
        connector_id=_opt_int(d.get("connector_id")),
        evse_id=_opt_int(d.get("evse_id")),
        id_token_type=str(d.get("id_token_type") or ""),
        group_id=str(d.get("group_id") or ""),
        status=str(d.get("status") or "Requested"),
        note=str(d.get("note") or ""),
        reserve_command_id=str(d.get("reserve_command_id") or ""),
        cancel_command_id=str(d.get("cancel_command_id") or ""),
        transaction_id=str(d.get("transaction_id") or ""),
        session_id=str(d.get("session_id") or ""),
        history=tuple(
            Change(parse_ocpp(str(c["at"])), str(c.get("status") or ""), str(c.get("cause") or ""))
            for c in d.get("history") or () if isinstance(c, Mapping) and c.get("at")
        ),
        revision=int(d.get("revision") or 0),
    )


async def create_reservation(docs: DocumentStore, r: Reservation) -> Reservation:
    """Store a new reservation (revision 1) with its index entries; ReservationConflict if
    the id is taken (the allocator never gives an id twice: a bug, not a race)."""
    rid = str(r.id)
    await docs.put_doc(kinds.RESERVATION_TOKEN, rid, {"id": r.id, "station_id": r.station_id,
                                                       "created_at": to_ocpp(r.created_at)}, parent=r.id_token)
    await docs.put_doc(kinds.RESERVATION_OPEN, rid, {"id": r.id, "station_id": r.station_id,
                                                      "created_at": to_ocpp(r.created_at)}, parent=OPEN)
    stored = replace(r, revision=1)
    if not await docs.put_doc_if(kinds.RESERVATION, rid, reservation_to_doc(stored), parent=r.station_id,
                                 expected_version=None, version=1):
        raise ReservationConflict(f"reservation {rid} already exists")
    return stored


async def update_reservation(
    docs: DocumentStore, rid: int, change: Callable[[Reservation], Reservation], *, tries: int = UPDATE_TRIES,
) -> tuple[Reservation, Reservation] | None:
    """Read reservation `rid`, apply `change`, write it with compare-and-set; on a lost
    race read again and re-apply. (before, after) of the write that landed (the same
    object twice when `change` changed nothing); None when there is no such reservation.
    Raises ReservationConflict after `tries` lost races. A reservation made final leaves
    the open index."""
    for _ in range(max(1, tries)):
        doc = await docs.get_doc(kinds.RESERVATION, str(rid))
        if doc is None:
            return None
        before = reservation_from_doc(doc)
        after = change(before)
        if after is before or after == before:
            return before, before
        after = replace(after, revision=before.revision + 1)
        if await docs.put_doc_if(kinds.RESERVATION, str(rid), reservation_to_doc(after), parent=before.station_id,
                                 expected_version=before.revision, version=after.revision):
            if is_final(after) and not is_final(before):
                await docs.delete_doc(kinds.RESERVATION_OPEN, str(rid))
            return before, after
    raise ReservationConflict(f"reservation {rid} kept changing; {tries} writes lost")


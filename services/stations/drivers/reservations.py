"""Reservations in the `stations-drivers` stage (ADR 018 §3): what the station answers and
reports moves a reservation on; its expiry is decided here too.

The fold reads three event types:
- CommandResult of ReserveNow / CancelReservation whose command id names a reservation
  (`domain.reservations.command_id`: the API's commands; a raw ReserveNow sent through
  `POST /stations/{id}/commands` is not one and is left alone). The API records the
  answer it waited for itself; this records a late one (after the API's timeout) and is
  a no-op for an answer already recorded.
- ReservationStatus (2.0.1 ReservationStatusUpdate): Expired, Removed.
- TransactionStarted with a `reservation_id` (not 0): `Used`, linked to the transaction
  and its session (the sessions processor's `session_id(station, transaction)`). The
  bulk of starts carry none and cost nothing.

An event from another station than the reservation's, or for a reservation the CSMS does
not know (the station's own, an id from a raw command), changes nothing: logged and
counted. Every change is a compare-and-set through `update_reservation` (the API writes
the same documents); a write that keeps losing raises, so the bus retries the batch.

The expiry job (`CSMS_RESERVATION_TICK_S`) lists the open reservations (the
RESERVATION_OPEN index), reads them by id, and marks those past `expires_at` `Expired`
(1.6 has no ReservationStatusUpdate: the CSMS decides; a 2.0.1 station's own Expired
may come first, and changes nothing more). It also drops index entries of reservations
already final, and of reservations that were never stored (an API request that failed
between its writes) once older than `ORPHAN_AFTER`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from prometheus_client import Counter

from services.common import events as ev
from services.common import kinds
from services.common.runtime import Runtime
from services.common.store.port import DocumentStore
from services.common.timeutil import Clock, parse_ocpp
from services.common.processor import Periodic
from services.sessions.domain import session_id
from services.stations.domain.reservations import (
    CANCEL,
    RESERVE,
    Reservation,
    cancel_answered,
    expire,
    is_final,
    reservation_of_command,
    reserve_answered,
    status_reported,
    used,
)
from services.stations.drivers.fold import Fold, ce_type
from services.stations.reservation_documents import OPEN, ReservationConflict, reservation_from_doc, update_reservation

__all__ = ["ORPHAN_AFTER", "ReservationsFold", "build"]

log = logging.getLogger("csms.stations.reservations")

RESERVE_NOW, CANCEL_RESERVATION = "ReserveNow", "CancelReservation"
MAX_OPEN = 10_000              # open reservations looked at per expiry tick
ORPHAN_AFTER = timedelta(minutes=10)
_INT32_MAX = 2**31 - 1

CHANGES = Counter(
    "csms_reservation_changes_total",
    "Reservation status changes made by the stations-drivers stage, by new status",
    ["status"],
)
SKIPPED = Counter(
    "csms_reservation_events_skipped_total",
    "Reservation events the stations-drivers stage could not apply, by reason "
    "(unknown: no such reservation; other_station: the reservation is another station's; bad_document)",
    ["reason"],
)

Change = Callable[[Reservation], Reservation]


class ReservationsFold:
    def __init__(self, docs: DocumentStore, clock: Clock) -> None:
        self._docs = docs
        self._clock = clock

    # -- events ------------------------------------------------------------------------
    async def apply(self, envs: Sequence[ev.Envelope]) -> None:
        for env in envs:
            found = self._change_of(env)
            if found is None:
                continue
            rid, what, change = found
            await self._move(env.station_id, rid, what, change)

    def _change_of(self, env: ev.Envelope) -> tuple[int, str, Change] | None:
        body, at = env.body, env.received_at
        if isinstance(body, ev.CommandResult):
            if body.command_type not in (RESERVE_NOW, CANCEL_RESERVATION):
                return None
            ref = reservation_of_command(body.command_id)
            if ref is None:
                return None
            rid, op = ref
            cid, status, code, text = body.command_id, body.status, body.error_code, body.error_description
            if op == RESERVE:
                return rid, f"ReserveNow {status}", lambda r: reserve_answered(r, cid, status, at, error_code=code,
                                                                                description=text)
            if op == CANCEL:
                return rid, f"CancelReservation {status}", lambda r: cancel_answered(r, cid, status, at, error_code=code)
            return None
        if isinstance(body, ev.ReservationStatus):
            if not 0 < body.reservation_id <= _INT32_MAX:
                SKIPPED.labels("unknown").inc()
                log.info("ReservationStatusUpdate with reservation id %d from station %s skipped: not a CSMS reservation id",
                         body.reservation_id, env.station_id)
                return None
            reported = body.status
            return body.reservation_id, f"ReservationStatusUpdate {reported}", lambda r: status_reported(r, reported, at)
        if isinstance(body, ev.TransactionStarted):
            if body.reservation_id == 0:
                return None
            if not 0 < body.reservation_id <= _INT32_MAX:
                SKIPPED.labels("unknown").inc()
                log.info("transaction %s of station %s started with reservation id %d: not a CSMS reservation id; skipped",
                         body.transaction_id, env.station_id, body.reservation_id)
                return None
            tx, sid = body.transaction_id, session_id(env.station_id, body.transaction_id)
            return body.reservation_id, "TransactionStarted", lambda r: used(r, tx, sid, at)
        return None

    async def _move(self, station_id: str, rid: int, what: str, change: Change) -> None:
        other: list[str] = []

        def guarded(r: Reservation) -> Reservation:
            if r.station_id != station_id:
                other.append(r.station_id)
                return r
            return change(r)

        try:
            moved = await update_reservation(self._docs, rid, guarded)
        except ReservationConflict:
            raise
        except (KeyError, TypeError, ValueError) as exc:  # a document this version cannot read
            SKIPPED.labels("bad_document").inc()
            log.warning("reservation %d: stored document unreadable (%s: %s); %s from %s skipped",
                        rid, type(exc).__name__, exc, what, station_id)
            return
        if moved is None:
            SKIPPED.labels("unknown").inc()
            log.info("%s for unknown reservation %d from station %s skipped", what, rid, station_id)
            return
        if other:
            SKIPPED.labels("other_station").inc()
            log.warning("%s for reservation %d from station %s skipped: the reservation is station %s's",
                        what, rid, station_id, other[0])
            return
        before, after = moved
        if after.status != before.status:
            CHANGES.labels(after.status).inc()
            log.info("reservation %d station=%s: %s -> %s (%s)", rid, station_id, before.status, after.status, what)

    # -- expiry ------------------------------------------------------------------------
    async def expire_due(self) -> int:
        """One expiry tick; the number of reservations marked Expired."""
        now = self._clock()
        listed = await self._docs.list_docs(kinds.RESERVATION_OPEN, parent=OPEN, limit=MAX_OPEN)
        entries = {str(d["id"]): d for d in listed if d.get("id") is not None}
        if not entries:
            return 0
        current = await self._docs.get_docs(kinds.RESERVATION, list(entries))
        expired = 0
        for rid, entry in entries.items():
            try:
                expired += await self._expire_one(rid, entry, current.get(rid), now)
            except Exception:
                log.exception("reservation %s: expiry failed; trying again next tick", rid)
        return expired

    async def _expire_one(self, rid: str, entry: dict[str, object], doc: dict[str, object] | None, now: datetime) -> int:
        if doc is None:
            created = _instant(entry.get("created_at"))
            if created is None or now - created > ORPHAN_AFTER:
                await self._docs.delete_doc(kinds.RESERVATION_OPEN, rid)
            return 0
        try:
            r = reservation_from_doc(doc)
        except (KeyError, TypeError, ValueError) as exc:
            SKIPPED.labels("bad_document").inc()
            log.warning("reservation %s: stored document unreadable (%s); left out of the expiry", rid, exc)
            return 0
        if is_final(r):
            await self._docs.delete_doc(kinds.RESERVATION_OPEN, rid)
            return 0
        if now < r.expires_at:
            return 0
        moved = await update_reservation(self._docs, r.id, lambda x: expire(x, now))
        if moved is None or moved[1].status == moved[0].status:
            return 0
        CHANGES.labels(moved[1].status).inc()
        log.info("reservation %d station=%s: %s -> %s (expiry %s passed)", r.id, r.station_id, moved[0].status,
                 moved[1].status, doc.get("expires_at"))
        return 1


def _instant(value: object) -> datetime | None:
    try:
        return parse_ocpp(str(value)) if value else None
    except ValueError:
        return None


def build(rt: Runtime) -> Fold:
    fold = ReservationsFold(rt.store, rt.clock)
    return Fold(
        "reservations",
        frozenset({ce_type(ev.CommandResult), ce_type(ev.ReservationStatus), ce_type(ev.TransactionStarted)}),
        fold.apply,
        periodic=(Periodic("reservation-expiry", rt.settings.reservation_tick_s, fold.expire_due),),
    )

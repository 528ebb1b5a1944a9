"""Reservations end to end (issue 10, ADR 018 §3) against `csms run` (memory bus + SQLite),
with raw OCPP-J stations (hand-built JSON frames, tests/support/ocpp_raw.py) in 1.6 and
2.0.1, the expiry job ticking every 0.5 s (`CSMS_RESERVATION_TICK_S`).

Per version: a reservation the station accepts is used by a transaction started with its
id (1.6 StartTransaction.reservationId, 2.0.1 TransactionEvent Started `reservationId`)
and shows `Used`, linked to that transaction and its session; another one nobody uses
expires a few seconds later; DELETE sends CancelReservation and the reservation is
`Cancelled`; a station answering Occupied leaves it `Occupied`; in 2.0.1 a
ReservationStatusUpdate Removed makes it `Removed`. What the station received is checked
field by field, and every answer of the API against the OpenAPI document it serves.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterator

import pytest

from services.common.timeutil import parse_ocpp, to_ocpp, utcnow
from tests.e2e.conftest import Server, start_server, stop_server
from tests.support.ocpp_raw import RawStation
from tests.support.station_ops import V16, V201, boot, openapi_checked, until

pytestmark = pytest.mark.e2e

Json = dict[str, Any]


@pytest.fixture(scope="module")
def resv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("reservations"), {
        "CSMS_RESERVATION_TICK_S": "0.5",
        "CSMS_COMMAND_TIMEOUT": "10",
    })
    yield server
    stop_server(server)
    log = server.log()
    assert "Traceback" not in log, log[-6000:]


def ahead(seconds: float) -> str:
    return to_ocpp(utcnow() + timedelta(seconds=seconds))


async def checked(server: Server, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    status, answer = await server.api(method, path, body, expect=expect)
    await openapi_checked(server, method, path, status, answer)
    return answer


async def reservation_where(server: Server, rid: int, status: str, timeout: float = 15.0) -> Json:
    async def probe() -> Json | None:
        _, body = await server.api("GET", f"/api/v1/reservations/{rid}", expect=200)
        return body if body["status"] == status else None  # type: ignore[no-any-return]
    body = await until(probe, f"reservation {rid} {status}", timeout=timeout)
    await openapi_checked(server, "GET", f"/api/v1/reservations/{rid}", 200, body)
    return body


class Station:
    """A raw station answering ReserveNow / CancelReservation with what the test says."""

    def __init__(self, st: RawStation) -> None:
        self.st = st
        self.answers = {"ReserveNow": "Accepted", "CancelReservation": "Accepted"}
        for action in self.answers:
            st.handlers[action] = self._answer(action)

    def _answer(self, action: str) -> Any:
        async def handler(payload: Json) -> Json:
            return {"status": self.answers[action]}
        return handler

    def sent(self, action: str) -> list[Json]:
        return [p for a, p in self.st.received if a == action]


async def connected(server: Server, sid: str, protocol: str, token: str) -> Station:
    password = await server.register_station(sid)
    await server.register_token(token)
    st = RawStation(server.ocpp_url, sid, password, protocol)
    await st.connect()
    await boot(st)
    return Station(st)


async def reserve(server: Server, sid: str, protocol: str, token: str, seconds: float) -> Json:
    where = {"connector_id": 1} if protocol == V16 else {"evse_id": 1}
    return await checked(server, "POST", "/api/v1/reservations",
                         {"station_id": sid, "id_token": token, "expires_at": ahead(seconds), **where}, expect=201)


async def start_with(station: Station, protocol: str, token: str, rid: int, sid: str) -> str:
    """Start a transaction with reservation `rid`; its transaction id."""
    st = station.st
    if protocol == V16:
        answer = await st.call("StartTransaction", {"connectorId": 1, "idTag": token, "meterStart": 1000,
                                                    "timestamp": ahead(0), "reservationId": rid})
        return str(answer["transactionId"])
    tx = f"TX-{sid}"
    await st.call("TransactionEvent", {
        "eventType": "Started", "timestamp": ahead(0), "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": tx, "chargingState": "Charging"}, "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": token, "type": "Central"}, "reservationId": rid,
        "meterValue": [{"timestamp": ahead(0), "sampledValue": [{"value": 1000, "measurand": "Energy.Active.Import.Register",
                                                                 "unitOfMeasure": {"unit": "Wh"}}]}],
    })
    return tx


@pytest.mark.parametrize("protocol", [V16, V201])
async def test_a_reservation_is_used_by_a_session_expires_when_not_and_can_be_cancelled(
    resv: Server, unique_id: str, protocol: str,
) -> None:
    sid, token = unique_id, f"RT{unique_id[-10:]}"
    station = await connected(resv, sid, protocol, token)
    try:
        # -- accepted, then used by a transaction started with its id -----------------------
        used = await reserve(resv, sid, protocol, token, 300)
        rid = used["id"]
        assert used["status"] == "Accepted" and used["station_id"] == sid and used["id_token"] == token, used
        assert [h["status"] for h in used["history"]] == ["Requested", "Accepted"], used
        [sent] = station.sent("ReserveNow")
        if protocol == V16:
            assert sent == {"connectorId": 1, "idTag": token, "reservationId": rid, "expiryDate": used["expires_at"]}, sent
        else:
            assert sent == {"id": rid, "evseId": 1, "idToken": {"idToken": token, "type": "Central"},
                            "expiryDateTime": used["expires_at"]}, sent
        tx = await start_with(station, protocol, token, rid, sid)
        body = await reservation_where(resv, rid, "Used")
        assert body["transaction_id"] == tx and body["session_id"], body
        assert body["history"][-1]["cause"] == "TransactionStarted", body
        session = await until(lambda: _session(resv, body["session_id"]), "the reservation's session")
        assert session["transaction_id"] == tx and session["station_id"] == sid, session

        # -- not used: expires at its time (1.6 has no ReservationStatusUpdate) ---------------
        lapsing = await reserve(resv, sid, protocol, token, 3)
        assert lapsing["status"] == "Accepted", lapsing
        expired = await reservation_where(resv, lapsing["id"], "Expired")
        assert expired["history"][-1]["cause"] == "expiry", expired
        assert parse_ocpp(expired["updated_at"]) >= parse_ocpp(lapsing["expires_at"]), expired

        # -- cancelled: CancelReservation sent, Cancelled on Accepted --------------------------
        doomed = await reserve(resv, sid, protocol, token, 300)
        cancelled = await checked(resv, "DELETE", f"/api/v1/reservations/{doomed['id']}")
        assert cancelled["status"] == "Cancelled" and cancelled["command_ids"]["cancel"], cancelled
        assert station.sent("CancelReservation") == [{"reservationId": doomed["id"]}]
        status, again = await resv.api("DELETE", f"/api/v1/reservations/{doomed['id']}")
        assert status == 409 and again["status"] == "Cancelled", again
        assert len(station.sent("CancelReservation")) == 1  # nothing sent for a final reservation

        # -- the station refuses: Occupied ------------------------------------------------------
        station.answers["ReserveNow"] = "Occupied"
        occupied = await reserve(resv, sid, protocol, token, 300)
        assert occupied["status"] == "Occupied" and occupied["history"][-1]["cause"] == "ReserveNow Occupied", occupied
        station.answers["ReserveNow"] = "Accepted"

        # -- the token's reservations and the filtered list --------------------------------------
        mine = await checked(resv, "GET", f"/api/v1/tokens/{token}/reservations")
        assert [(r["id"], r["status"]) for r in mine["items"]] == [
            (occupied["id"], "Occupied"), (doomed["id"], "Cancelled"), (lapsing["id"], "Expired"), (rid, "Used"),
        ], mine
        listed = await checked(resv, "GET", f"/api/v1/reservations?station_id={sid}&status=Expired")
        assert [r["id"] for r in listed["items"]] == [lapsing["id"]], listed
    finally:
        await station.st.close()


async def test_a_201_reservation_removed_by_the_station(resv: Server, unique_id: str) -> None:
    sid, token = unique_id, f"RR{unique_id[-10:]}"
    station = await connected(resv, sid, V201, token)
    try:
        r = await reserve(resv, sid, V201, token, 300)
        assert r["status"] == "Accepted", r
        answer = await station.st.call("ReservationStatusUpdate", {"reservationId": r["id"], "reservationUpdateStatus": "Removed"})
        assert answer == {}, answer
        removed = await reservation_where(resv, r["id"], "Removed")
        assert removed["history"][-1]["cause"] == "ReservationStatusUpdate Removed", removed
        # final: a later transaction with its id does not make it Used. A second reservation
        # removed after it (the same station: the same partition, folded in order) says when
        # the transaction has been folded.
        marker = await reserve(resv, sid, V201, token, 300)
        await start_with(station, V201, token, r["id"], sid)
        await station.st.call("ReservationStatusUpdate", {"reservationId": marker["id"], "reservationUpdateStatus": "Removed"})
        await reservation_where(resv, marker["id"], "Removed")
        _, still = await resv.api("GET", f"/api/v1/reservations/{r['id']}", expect=200)
        assert still["status"] == "Removed" and still["transaction_id"] is None, still
    finally:
        await station.st.close()


async def test_an_offline_station_cannot_be_reserved(resv: Server, unique_id: str) -> None:
    await resv.register_station(unique_id)
    status, body = await resv.api("POST", "/api/v1/reservations",
                                  {"station_id": unique_id, "id_token": "T1", "expires_at": ahead(60)})
    assert status == 409 and body["status"] == "StationOffline", body
    await openapi_checked(resv, "POST", "/api/v1/reservations", status, body)
    status, listed = await resv.api("GET", f"/api/v1/reservations?station_id={unique_id}", expect=200)
    assert listed == {"items": []}, listed


async def _session(server: Server, session_id: str) -> Json | None:
    status, body = await server.api("GET", f"/api/v1/sessions/{session_id}")
    return body if status == 200 else None  # type: ignore[no-any-return]

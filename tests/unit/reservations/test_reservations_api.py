"""The reservations REST API (services/api/routes_reservations.py) on a real ApiService, a
MemoryBus and SQLite, with a fake gateway answering the commands: validation, the
ReserveNow / CancelReservation round trips, what is stored, the lists and the token's
view; every answer checked against its OpenAPI schema."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jsonschema

from services.api.openapi import openapi_document
from services.common import kinds, topics
from services.common.codec import Command
from services.common.events import CommandResult
from services.common.timeutil import parse_ocpp, to_ocpp, utcnow
from services.stations.documents import RESERVATIONS_OPEN
from services.stations.domain.reservations import reservation_of_command

from tests.unit.api.builders import Api, FakeGateway, answering
from tests.unit.api.conftest import api  # noqa: F401  (the fixture)

_DOC = openapi_document()


def valid(value: Any, schema: str) -> Any:
    root = {"$ref": f"#/components/schemas/{schema}", "components": _DOC["components"]}
    jsonschema.Draft202012Validator(root).validate(value)
    return value


def ahead(minutes: float = 30) -> str:
    return to_ocpp(utcnow() + timedelta(minutes=minutes))


def by_type(answers: dict[str, str]) -> Any:
    def answer(cmd: Command) -> CommandResult | None:
        status = answers.get(cmd.command_type)
        return None if status is None else answering(status)(cmd)
    return answer


async def online(api: Api, sid: str = "CP-1") -> None:
    await api.a_station(sid)
    await api.connected(sid, "gateway-3")


async def test_bad_requests_name_every_bad_field_and_send_nothing(api: Api) -> None:  # noqa: F811
    await online(api)
    status, body = await api.post("/api/v1/reservations", {
        "station_id": "bad id", "connector_id": -1, "evse_id": "x", "id_token": "", "expires_at": "yesterday",
        "id_token_type": "Magic", "extra": 1,
    })
    assert status == 400, body
    assert set(body["details"]) >= {"station_id", "connector_id", "evse_id", "id_token", "expires_at", "id_token_type", "extra"}
    for when, why in ((to_ocpp(utcnow() - timedelta(seconds=1)), "future"), (ahead(8 * 24 * 60), "days")):
        status, body = await api.post("/api/v1/reservations", {"station_id": "CP-1", "id_token": "T", "expires_at": when})
        assert status == 400 and why in body["details"]["expires_at"], body
    status, body = await api.post("/api/v1/reservations", {"station_id": "CP-1", "id_token": "T", "expires_at": ahead(),
                                                           "connector_id": 1, "evse_id": 1})
    assert status == 400 and "evse_id" in body["details"], body
    status, body = await api.post("/api/v1/reservations", {"station_id": "NOPE", "id_token": "T", "expires_at": ahead()})
    assert status == 404, body
    await api.a_station("CP-OFF")
    status, body = await api.post("/api/v1/reservations", {"station_id": "CP-OFF", "id_token": "T", "expires_at": ahead()})
    assert status == 409 and body["status"] == "StationOffline", body
    assert await api.rt.store.list_docs(kinds.RESERVATION) == []
    assert sum(api.rt.bus.end_offsets(topics.COMMANDS)) == 0  # type: ignore[attr-defined]  # nothing sent


async def test_an_accepted_reservation_is_stored_listed_and_cancelled(api: Api) -> None:  # noqa: F811
    await online(api)
    gw = await FakeGateway(api.rt, "gateway-3", by_type({"ReserveNow": "Accepted", "CancelReservation": "Accepted"})).start()
    try:
        expires = ahead(45)
        status, body = await api.post("/api/v1/reservations", {
            "station_id": "CP-1", "connector_id": 2, "id_token": "TOKEN1", "expires_at": expires, "group_id": "G1",
        })
        assert status == 201, body
        valid(body, "Reservation")
        rid = body["id"]
        assert isinstance(rid, int) and 0 < rid < 2**31
        assert body["status"] == "Accepted" and body["connector_id"] == 2 and body["evse_id"] is None
        assert parse_ocpp(body["expires_at"]) == parse_ocpp(expires)
        assert [h["status"] for h in body["history"]] == ["Requested", "Accepted"]
        [(_, sent)] = [(p, c) for p, c in gw.received if c.command_type == "ReserveNow"]
        assert sent.command_id == body["command_ids"]["reserve"] and reservation_of_command(sent.command_id) == (rid, "reserve")
        import json
        params = json.loads(sent.params_json)
        assert params == {"reservation_id": rid, "expiry_date": body["expires_at"], "id_token": "TOKEN1",
                          "parent_id_token": "G1", "connector_id": 2}
        # stored, listed by id, station, status and token
        status, one = await api.get(f"/api/v1/reservations/{rid}")
        assert status == 200 and one == body
        for q in ("", "?station_id=CP-1", "?status=Accepted", "?id_token=TOKEN1", "?station_id=CP-1&status=Accepted&limit=1"):
            status, listed = await api.get(f"/api/v1/reservations{q}")
            assert status == 200 and [r["id"] for r in valid(listed, "ReservationList")["items"]] == [rid], (q, listed)
        for q in ("?station_id=CP-2", "?status=Used", "?id_token=OTHER", "?status=Requested"):
            status, listed = await api.get(f"/api/v1/reservations{q}")
            assert status == 200 and listed == {"items": []}, (q, listed)
        status, mine = await api.get("/api/v1/tokens/TOKEN1/reservations")
        assert status == 200 and [r["id"] for r in valid(mine, "ReservationList")["items"]] == [rid]
        # cancel
        status, cancelled = await api.call("DELETE", f"/api/v1/reservations/{rid}")
        assert status == 200 and valid(cancelled, "Reservation")["status"] == "Cancelled", cancelled
        assert reservation_of_command(cancelled["command_ids"]["cancel"]) == (rid, "cancel")
        assert [c.command_type for _, c in gw.received] == ["ReserveNow", "CancelReservation"]
        status, again = await api.call("DELETE", f"/api/v1/reservations/{rid}")
        assert status == 409 and again["status"] == "Cancelled", again
        assert await api.rt.store.list_docs(kinds.RESERVATION_OPEN, parent=RESERVATIONS_OPEN) == []
    finally:
        await gw.stop()


async def test_the_station_refusals_are_the_status(api: Api) -> None:  # noqa: F811
    await online(api)
    for answer in ("Occupied", "Faulted", "Rejected", "Unavailable"):
        gw = await FakeGateway(api.rt, "gateway-3", by_type({"ReserveNow": answer})).start()
        try:
            status, body = await api.post("/api/v1/reservations", {"station_id": "CP-1", "evse_id": 1, "id_token": "T",
                                                                   "expires_at": ahead()})
        finally:
            await gw.stop()
        assert status == 201 and valid(body, "Reservation")["status"] == answer, body
        status, again = await api.call("DELETE", f"/api/v1/reservations/{body['id']}")
        assert status == 409 and again["status"] == answer


async def test_a_station_that_refuses_to_cancel_is_a_409_and_the_reservation_stands(api: Api) -> None:  # noqa: F811
    await online(api)
    gw = await FakeGateway(api.rt, "gateway-3", by_type({"ReserveNow": "Accepted", "CancelReservation": "Rejected"})).start()
    try:
        _, body = await api.post("/api/v1/reservations", {"station_id": "CP-1", "id_token": "T", "expires_at": ahead()})
        status, refused = await api.call("DELETE", f"/api/v1/reservations/{body['id']}")
    finally:
        await gw.stop()
    assert status == 409 and refused["status"] == "Rejected", refused
    _, now = await api.get(f"/api/v1/reservations/{body['id']}")
    assert now["status"] == "Accepted" and "did not cancel" in now["note"], now


async def test_no_answer_in_time_keeps_it_requested_with_a_note(api: Api) -> None:  # noqa: F811
    await online(api)
    gw = await FakeGateway(api.rt, "gateway-3", None).start()  # never answers (command timeout 2 s)
    try:
        status, body = await api.post("/api/v1/reservations", {"station_id": "CP-1", "id_token": "T", "expires_at": ahead()})
    finally:
        await gw.stop()
    assert status == 201 and valid(body, "Reservation")["status"] == "Requested", body
    assert "did not answer" in body["note"]
    status, listed = await api.get("/api/v1/reservations?status=Requested")
    assert [r["id"] for r in listed["items"]] == [body["id"]]


async def test_reads_of_unknown_things_and_bad_queries(api: Api) -> None:  # noqa: F811
    for path in ("/api/v1/reservations/5", "/api/v1/reservations/abc", "/api/v1/reservations/99999999999",
                 "/api/v1/reservations/%C2%B2", "/api/v1/reservations/0",
                 "/api/v1/tokens/NOBODY/reservations"):
        status, body = await api.get(path)
        assert status == 404 and "error" in body, (path, body)
    status, body = await api.call("DELETE", "/api/v1/reservations/5")
    assert status == 404, body
    status, body = await api.get("/api/v1/reservations?status=Nice&limit=0&station_id=a%20b")
    assert status == 400 and set(body["details"]) == {"status", "limit", "station_id"}, body
    # a known token without reservations: an empty list
    await api.post("/api/v1/tokens", {"id_token": "KNOWN"})
    status, body = await api.get("/api/v1/tokens/KNOWN/reservations")
    assert status == 200 and body == {"items": []}


async def test_a_reservation_that_could_not_be_sent_is_final_and_named_in_the_error(api: Api) -> None:  # noqa: F811
    await api.a_station("CP-1")
    await api.connected("CP-1", "gateway-99")  # no command partition for it: unroutable
    status, body = await api.post("/api/v1/reservations", {"station_id": "CP-1", "id_token": "T", "expires_at": ahead()})
    assert status == 503 and isinstance(body["reservation_id"], int), body
    _, kept = await api.get(f"/api/v1/reservations/{body['reservation_id']}")
    assert valid(kept, "Reservation")["status"] == "Rejected" and "did not reach" in kept["note"], kept
    assert await api.rt.store.list_docs(kinds.RESERVATION_OPEN, parent=RESERVATIONS_OPEN) == []

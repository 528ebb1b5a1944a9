"""Display messages and customer information end to end (issue 10, ADR 018) against
`csms run` (memory bus + SQLite), driven by raw OCPP-J stations (tests/support/ocpp_raw.py:
hand-built JSON frames over aiohttp, no simulator), so what the CSMS sends is read as it
went over the wire and what the station sends is written here.

- 2.0.1: a message set (the station answers Accepted) is in the CSMS's record; the
  station's own view (GetDisplayMessages answered Accepted, then NotifyDisplayMessages in
  two parts) shows both parts; a cleared message leaves the record; a message in a format
  the station refuses (NotSupportedMessageFormat) is answered, not recorded.
- 2.0.1: customer information with report=true: the station answers Accepted and sends
  NotifyCustomerInformation in three parts out of order, one of them twice; the request
  reads complete with the data in seqNo order.
- 1.6 has neither: 400 NotSupported, and nothing reaches the station.

Every answer is checked against the OpenAPI document the server serves.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.support.ocpp_raw import RawStation
from tests.support.station_ops import V16, V201, now_z, openapi_checked, until

pytestmark = pytest.mark.e2e

Json = dict[str, Any]


async def _call(server: Server, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
    _, answer = await server.api(method, path, body, expect=expect)
    await openapi_checked(server, method, path, expect, answer)
    return answer


async def _connected(server: Server, sid: str, protocol: str) -> RawStation:
    password = await server.register_station(sid)
    st = RawStation(server.ocpp_url, sid, password, protocol)
    await st.connect()
    if protocol == V16:
        boot = await st.call("BootNotification", {"chargePointVendor": "E2E", "chargePointModel": "Display"})
    else:
        boot = await st.call("BootNotification", {"reason": "PowerUp",
                                                  "chargingStation": {"model": "Display", "vendorName": "E2E"}})
    assert boot["status"] == "Accepted", boot
    return st


def _sent(st: RawStation, action: str) -> list[Json]:
    return [payload for a, payload in st.received if a == action]


async def test_display_messages_are_set_read_from_the_station_and_cleared(csms: Server, unique_id: str) -> None:
    sid = unique_id
    st = await _connected(csms, sid, V201)

    async def set_message(payload: Json) -> Json:
        fmt = payload["message"]["message"]["format"]
        return {"status": "NotSupportedMessageFormat" if fmt == "HTML" else "Accepted"}

    async def get_messages(payload: Json) -> Json:
        rid = payload["requestId"]

        async def notify() -> None:
            own = {"id": 900, "priority": "NormalCycle", "state": "Faulted",
                   "message": {"format": "ASCII", "content": "Out of order"}}
            for part in ({"requestId": rid, "tbc": True, "messageInfo": [stored[0]]},
                         {"requestId": rid, "tbc": False, "messageInfo": [own]}):
                assert await st.call("NotifyDisplayMessages", part) == {}

        st.after_reply(notify)
        return {"status": "Accepted"}

    stored: list[Json] = []
    st.handlers["SetDisplayMessage"] = set_message
    st.handlers["GetDisplayMessages"] = get_messages
    base = f"/api/v1/stations/{sid}/display-messages"
    try:
        end = now_z(3600)
        answer = await _call(csms, "POST", base, {
            "priority": "InFront", "message": {"format": "UTF8", "content": "Willkommen", "language": "de"},
            "end_at": end})
        assert answer["status"] == "Accepted" and answer["message"]["id"] == 1, answer
        [sent] = _sent(st, "SetDisplayMessage")
        assert sent["message"]["id"] == 1 and sent["message"]["priority"] == "InFront"
        assert sent["message"]["message"] == {"format": "UTF8", "content": "Willkommen", "language": "de"}
        assert sent["message"]["endDateTime"] == end
        stored.append(sent["message"])

        async def recorded() -> Json | None:
            body = await _call(csms, "GET", base)
            return body if [m["id"] for m in body["items"]] == [1] else None

        listed = await until(recorded, "the message in the CSMS's record")
        assert listed["items"][0]["message"]["content"] == "Willkommen" and listed["items"][0]["end_at"] == end

        # the station's own view: GetDisplayMessages, then two NotifyDisplayMessages parts
        own = await _call(csms, "GET", f"{base}?source=station")
        [asked] = _sent(st, "GetDisplayMessages")
        assert own["request_id"] == asked["requestId"] and own["status"] == "Accepted" and own["complete"], own
        assert [(m["id"], m["message"]["content"]) for m in own["items"]] == [(1, "Willkommen"), (900, "Out of order")]
        assert own["items"][1]["state"] == "Faulted"

        # a format the station refuses: answered, not recorded
        refused = await _call(csms, "POST", base, {"priority": "NormalCycle",
                                                   "message": {"format": "HTML", "content": "<b>Hi</b>"}})
        assert refused["status"] == "NotSupportedMessageFormat" and refused["message"]["id"] == 2, refused
        assert [m["id"] for m in (await _call(csms, "GET", base))["items"]] == [1]

        cleared = await _call(csms, "DELETE", f"{base}/1")
        assert cleared["status"] == "Accepted", cleared
        assert _sent(st, "ClearDisplayMessage") == [{"id": 1}]

        async def gone() -> bool:
            return bool((await _call(csms, "GET", base))["items"] == [])

        await until(gone, "the cleared message out of the record")
        # the station no longer has it either
        st.handlers["ClearDisplayMessage"] = _answer({"status": "Unknown"})
        missing = await _call(csms, "DELETE", f"{base}/1", expect=404)
        assert missing["status"] == "Unknown", missing
    finally:
        await st.close()
    assert not st.job_errors, st.job_errors


def _answer(payload: Json) -> Any:
    async def handler(_: Json) -> Json:
        return payload
    return handler


async def test_customer_information_parts_out_of_order_assemble_in_seq_order(csms: Server, unique_id: str) -> None:
    sid = unique_id
    st = await _connected(csms, sid, V201)
    chunks = ["name=Erika Mustermann;", "tokens=ABC123;", "sessions=42"]

    async def customer_information(payload: Json) -> Json:
        rid = payload["requestId"]

        async def notify() -> None:
            for seq in (2, 0, 2, 1):  # out of order, seqNo 2 twice
                part = {"requestId": rid, "seqNo": seq, "data": chunks[seq], "tbc": seq != 2,
                        "generatedAt": now_z()}
                assert await st.call("NotifyCustomerInformation", part) == {}

        st.after_reply(notify)
        return {"status": "Accepted"}

    st.handlers["CustomerInformation"] = customer_information
    base = f"/api/v1/stations/{sid}/customer-information"
    try:
        accepted = await _call(csms, "POST", base, {"id_token": "E2ECUSTOMER1", "id_token_type": "ISO14443",
                                                    "report": True, "clear": False}, expect=202)
        assert accepted["status"] == "Accepted", accepted
        [sent] = _sent(st, "CustomerInformation")
        assert sent == {"requestId": accepted["request_id"], "report": True, "clear": False,
                        "idToken": {"idToken": "E2ECUSTOMER1", "type": "ISO14443"}}, sent

        async def complete() -> Json | None:
            body = await _call(csms, "GET", f"{base}/{accepted['request_id']}")
            return body if body["status"] == "complete" else None

        got = await until(complete, "the customer information complete")
        assert got["data"] == "".join(chunks) and got["parts"] == 3, got
        assert got["identifier_type"] == "id_token" and got["identifier"] == "E2ECUSTOMER1"
        assert got["generated_at"] is not None and got["command_id"] == accepted["command_id"]
        listed = await _call(csms, "GET", base)
        assert [i["request_id"] for i in listed["items"]] == [accepted["request_id"]]
        assert listed["items"][0]["status"] == "complete" and listed["items"][0]["data_length"] == len("".join(chunks))
    finally:
        await st.close()
    assert not st.job_errors, st.job_errors


async def test_an_ocpp_16_station_has_neither(csms: Server, unique_id: str) -> None:
    sid = unique_id
    st = await _connected(csms, sid, V16)
    try:
        # whether the API already knows the station speaks 1.6 (its status) or its gateway
        # says so (the version lacks the command), the answer is the same
        for method, path, body in (
            ("POST", f"/api/v1/stations/{sid}/display-messages",
             {"priority": "InFront", "message": {"format": "UTF8", "content": "x"}}),
            ("GET", f"/api/v1/stations/{sid}/display-messages?source=station", None),
            ("DELETE", f"/api/v1/stations/{sid}/display-messages/1", None),
            ("POST", f"/api/v1/stations/{sid}/customer-information", {"customer_identifier": "c", "report": True}),
        ):
            answer = await _call(csms, method, path, body, expect=400)
            assert answer["status"] == "NotSupported", (path, answer)
        actions = {a for a, _ in st.received}
        assert not actions & {"SetDisplayMessage", "GetDisplayMessages", "ClearDisplayMessage",
                              "CustomerInformation", "DataTransfer"}, actions
    finally:
        await st.close()

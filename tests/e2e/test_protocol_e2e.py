"""Handshake, authentication and bad input against `csms run` (rows of docs/reliability.md cited)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Server, basic
from tests.support.waiting import eventually


async def open_ws(csms: Server, station_id: str, password: str, protocols: tuple[str, ...] = ("ocpp1.6",), **kw: Any) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"{csms.ocpp_url}/{station_id}", protocols=protocols,
                               headers={"Authorization": basic(station_id, password)}, autoping=True, **kw)
    return http, ws


async def call(ws: aiohttp.ClientWebSocketResponse, frame: Any, timeout: float = 5.0) -> Any:
    await ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))
    msg = await asyncio.wait_for(ws.receive(), timeout)
    if msg.type != aiohttp.WSMsgType.TEXT:
        return msg
    return json.loads(msg.data)


async def booted(csms: Server, station_id: str, protocol: str = "ocpp1.6") -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    password = await csms.register_station(station_id)
    http, ws = await open_ws(csms, station_id, password, (protocol,))
    if protocol == "ocpp1.6":
        boot = await call(ws, [2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}])
    else:
        boot = await call(ws, [2, "b1", "BootNotification", {"chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"}])
    assert boot[0] == 3 and boot[2]["status"] == "Accepted", boot
    return http, ws


# -- handshake and auth (rows 1-8, 11) ---------------------------------------------------

async def test_an_unknown_station_gets_404_before_any_upgrade(csms: Server, unique_id: str) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(f"{csms.ocpp_url}/{unique_id}", protocols=("ocpp1.6",), headers={"Authorization": basic(unique_id, "x" * 20)})
        assert e.value.status == 404


@pytest.mark.parametrize("header", [None, "wrong-user", "wrong-password"])
async def test_bad_or_missing_credentials_get_401(csms: Server, unique_id: str, header: str | None) -> None:
    password = await csms.register_station(unique_id)
    headers = {}
    if header == "wrong-user":
        headers["Authorization"] = basic("SOMEONEELSE", password)
    elif header == "wrong-password":
        headers["Authorization"] = basic(unique_id, "not-the-password-at-all")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(f"{csms.ocpp_url}/{unique_id}", protocols=("ocpp1.6",), headers=headers)
        assert e.value.status == 401


@pytest.mark.parametrize("bad_id", ["A" * 49, "a:b", "a%2Fb", "..", "a%252Fb"])
async def test_malformed_station_ids_are_refused_without_upgrade(csms: Server, bad_id: str) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(f"{csms.ocpp_url}/{bad_id}", protocols=("ocpp1.6",), headers={"Authorization": basic(bad_id, "x" * 20)})
        assert e.value.status in (400, 404)


@pytest.mark.parametrize("offered", [(), ("ocpp1.5",)])
async def test_no_acceptable_subprotocol_completes_the_handshake_then_closes(csms: Server, unique_id: str, offered: tuple[str, ...]) -> None:
    password = await csms.register_station(unique_id)
    http, ws = await open_ws(csms, unique_id, password, offered)
    try:
        assert ws.protocol is None
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    finally:
        await ws.close()
        await http.close()


async def test_the_first_supported_subprotocol_offered_is_selected(csms: Server, unique_id: str) -> None:
    password = await csms.register_station(unique_id)
    http, ws = await open_ws(csms, unique_id, password, ("ocpp2.1", "ocpp1.6"))
    try:
        assert ws.protocol == "ocpp1.6"
    finally:
        await ws.close()
        await http.close()


async def test_a_second_socket_for_the_same_station_wins_and_the_old_one_is_closed_1008(csms: Server, unique_id: str) -> None:
    password = await csms.register_station(unique_id)
    http1, ws1 = await open_ws(csms, unique_id, password)
    http2, ws2 = await open_ws(csms, unique_id, password)
    try:
        msg = await asyncio.wait_for(ws1.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws1.close_code == 1008
        hb = await call(ws2, [2, "h1", "Heartbeat", {}])
        assert hb[0] == 3 and hb[2]["currentTime"].endswith("Z")
    finally:
        for ws, http in ((ws1, http1), (ws2, http2)):
            await ws.close()
            await http.close()


# -- frames (rows 15-29) -------------------------------------------------------------------

ROWS_16 = [
    ("not json", "{nope", ("-1", "GenericError")),
    ("short call", [2, "a"], ("a", "ProtocolError")),
    ("numeric id", [2, 5, "Heartbeat", {}], ("-1", "TypeConstraintViolation")),
    ("unknown action", [2, "u1", "Foo", {}], ("u1", "NotImplemented")),
    ("wrong case", [2, "u2", "heartbeat", {}], ("u2", "NotImplemented")),
    ("missing field", [2, "m1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError"}], ("m1", "OccurenceConstraintViolation")),
    ("string connector", [2, "t1", "StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Available"}], ("t1", "TypeConstraintViolation")),
    ("bad enum", [2, "e1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}], ("e1", "PropertyConstraintViolation")),
    ("extra property", [2, "x1", "Heartbeat", {"surprise": 1}], ("x1", "FormationViolation")),
    ("null payload", [2, "n1", "Heartbeat", None], ("n1", "FormationViolation")),
]

ROWS_201 = [
    ("not json", "{nope", ("-1", "RpcFrameworkError")),
    ("short call", [2, "a"], ("a", "RpcFrameworkError")),
    ("unknown type", [7, "a", "X", {}], ("a", "MessageTypeNotSupported")),
    ("37-char id", [2, "x" * 37, "Heartbeat", {}], (None, "RpcFrameworkError")),
    ("unknown action", [2, "u1", "Foo", {}], ("u1", "NotImplemented")),
    ("missing field", [2, "m1", "StatusNotification", {"timestamp": "2026-11-28T04:21:16.004Z", "evseId": 1, "connectorId": 1}], ("m1", "OccurrenceConstraintViolation")),
    ("extra property", [2, "x1", "Heartbeat", {"surprise": 1}], ("x1", "FormatViolation")),
    ("null payload", [2, "n1", "Heartbeat", None], ("n1", "FormatViolation")),
]


@pytest.mark.parametrize("name,frame,expected", ROWS_16, ids=[r[0] for r in ROWS_16])
async def test_bad_16_frames_get_the_16_callerror(csms: Server, unique_id: str, name: str, frame: Any, expected: tuple[str, str]) -> None:
    http, ws = await booted(csms, unique_id)
    try:
        answer = await call(ws, frame)
        assert answer[0] == 4 and answer[2] == expected[1], answer
        assert answer[1] == expected[0]
        # the connection survives and still answers
        hb = await call(ws, [2, "after", "Heartbeat", {}])
        assert hb[:2] == [3, "after"]
    finally:
        await ws.close()
        await http.close()


@pytest.mark.parametrize("name,frame,expected", ROWS_201, ids=[r[0] for r in ROWS_201])
async def test_bad_201_frames_get_the_201_callerror(csms: Server, unique_id: str, name: str, frame: Any, expected: tuple[str | None, str]) -> None:
    http, ws = await booted(csms, unique_id, "ocpp2.0.1")
    try:
        answer = await call(ws, frame)
        assert answer[0] == 4 and answer[2] == expected[1], answer
        if expected[0] is not None:
            assert answer[1] == expected[0]
        hb = await call(ws, [2, "after", "Heartbeat", {}])
        assert hb[:2] == [3, "after"]
    finally:
        await ws.close()
        await http.close()


async def test_an_unknown_message_type_is_ignored_in_16(csms: Server, unique_id: str) -> None:
    http, ws = await booted(csms, unique_id)
    try:
        await ws.send_str(json.dumps([7, "a", "X", {}]))
        hb = await call(ws, [2, "after", "Heartbeat", {}])
        assert hb[:2] == [3, "after"], "the type-7 frame must get no answer at all"
    finally:
        await ws.close()
        await http.close()


async def test_a_callresult_with_an_unknown_id_is_dropped_silently(csms: Server, unique_id: str) -> None:
    http, ws = await booted(csms, unique_id)
    try:
        await ws.send_str(json.dumps([3, "nobody-asked", {}]))
        hb = await call(ws, [2, "after", "Heartbeat", {}])
        assert hb[:2] == [3, "after"]
    finally:
        await ws.close()
        await http.close()


@pytest.mark.parametrize("case,code", [("binary", (1003,)), ("oversize", (1009,)), ("bad-utf8", (1007,))])
async def test_transport_violations_close_with_the_spec_code(csms: Server, unique_id: str, case: str, code: tuple[int, ...]) -> None:
    http, ws = await booted(csms, unique_id)
    try:
        if case == "binary":
            await ws.send_bytes(b"\x00\x01")
        elif case == "oversize":
            await ws.send_str(json.dumps([2, "big", "DataTransfer", {"vendorId": "v", "data": "x" * (1 << 20)}]))
        else:
            # a text frame whose payload is not UTF-8: write the raw frame ourselves
            writer = ws._writer  # noqa: SLF001 - no public API sends invalid text
            await writer.send_frame(b"\xff\xfe\xfd", aiohttp.WSMsgType.TEXT)
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code in code
    finally:
        await ws.close()
        await http.close()


async def test_a_small_compressed_frame_that_inflates_past_the_limit_closes_1009(csms: Server, unique_id: str) -> None:
    password = await csms.register_station(unique_id)
    http, ws = await open_ws(csms, unique_id, password, ("ocpp2.0.1",), compress=15)
    try:
        # ~2 MiB of one letter deflates to a few KiB: the limit must apply to the inflated size.
        await ws.send_str(json.dumps([2, "z", "DataTransfer", {"vendorId": "v", "data": "a" * (2 << 20)}]))
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.close_code == 1009
    finally:
        await ws.close()
        await http.close()


async def test_garbage_from_one_station_does_not_disturb_another(csms: Server, unique_id: str) -> None:
    http1, bad = await booted(csms, unique_id + "B")
    http2, good = await booted(csms, unique_id + "G")
    try:
        for i in range(50):
            await bad.send_str("garbage{" + str(i))
        hb = await call(good, [2, "fine", "Heartbeat", {}])
        assert hb[:2] == [3, "fine"]
    finally:
        for ws, http in ((bad, http1), (good, http2)):
            await ws.close()
            await http.close()


# -- transactions (rows 35-37) ------------------------------------------------------------

async def test_a_replayed_start_transaction_gets_the_same_transaction_id_and_one_session(csms: Server, unique_id: str) -> None:
    await csms.register_token("E2ETOKEN01")
    http, ws = await booted(csms, unique_id)
    start = {"connectorId": 1, "idTag": "E2ETOKEN01", "meterStart": 100, "timestamp": "2026-11-25T04:00:00.000Z"}
    try:
        first = await call(ws, [2, "s1", "StartTransaction", start])
        second = await call(ws, [2, "s2", "StartTransaction", start])
        assert first[0] == 3 and second[0] == 3
        assert first[2]["transactionId"] == second[2]["transactionId"]
        assert first[2]["idTagInfo"]["status"] == "Accepted"
        stop = await call(ws, [2, "s3", "StopTransaction", {"transactionId": first[2]["transactionId"], "meterStop": 1100, "timestamp": "2026-11-25T05:00:00.000Z"}])
        assert stop[0] == 3
    finally:
        await ws.close()
        await http.close()
    async def sessions() -> list[Any]:
        _, body = await csms.api("GET", f"/api/v1/sessions?station_id={unique_id}")
        return [s for s in body["items"] if s["status"] == "completed"]

    done = await eventually(sessions, 10.0, interval=0.1, what=f"a completed session of {unique_id}")
    assert len(done) == 1
    assert done[0]["energy_wh"] == 1000
    # a 3-day-old start is accepted and keeps station time next to receive time
    assert done[0]["started_at"].startswith("2026-11-25T04:00:00")
    assert done[0]["received_at"] != done[0]["started_at"]


async def test_a_stop_for_an_unknown_transaction_is_acknowledged(csms: Server, unique_id: str) -> None:
    http, ws = await booted(csms, unique_id)
    try:
        for tx in (987654321, -1):
            stop = await call(ws, [2, f"x{tx}", "StopTransaction", {"transactionId": tx, "meterStop": 5, "timestamp": "2026-11-28T04:00:00.000Z"}])
            assert stop[0] == 3, stop
    finally:
        await ws.close()
        await http.close()

"""Bad frames and message-level faults over a real socket, per version (rows 15-34)."""

from __future__ import annotations

import asyncio
import zlib

import aiohttp
import orjson
import pytest

from tests.integration_inproc.gateway.harness import Gateway, call, closed_with, nothing_within, recv

P16, P201 = ("ocpp1.6",), ("ocpp2.0.1",)
BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}


async def send_recv(ws: aiohttp.ClientWebSocketResponse, text: str) -> list:
    await ws.send_str(text)
    return await recv(ws)


@pytest.mark.parametrize("protocols,code", [(P16, "GenericError"), (P201, "RpcFrameworkError")])
async def test_a_non_json_text_frame_gets_a_callerror_with_id_minus_one(gw: Gateway, protocols: tuple, code: str) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    assert (await send_recv(ws, "hello {"))[:3] == [4, "-1", code]
    assert not ws.closed


async def test_invalid_utf8_in_a_text_frame_closes_1007(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await ws._writer.send_frame(b'[2,"a","Heartbeat",{"x":"\xc3\x28"}]', aiohttp.WSMsgType.TEXT)
    assert await closed_with(ws) == 1007


async def test_a_binary_frame_closes_1003(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await ws.send_bytes(b'[2,"a","Heartbeat",{}]')
    assert await closed_with(ws) == 1003


async def test_a_frame_over_the_size_limit_closes_1009(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await ws.send_str('[2,"a","DataTransfer",{"vendorId":"v","data":"' + "x" * 70_000 + '"}]')
    assert await closed_with(ws) == 1009


async def test_a_small_compressed_frame_that_inflates_over_the_limit_closes_1009(gw: Gateway) -> None:
    ws = await gw.connect("CP1", compress=15)
    assert ws.compress == 15  # permessage-deflate was negotiated
    text = '[2,"a","DataTransfer",{"vendorId":"v","data":"' + "x" * 1_000_000 + '"}]'
    assert len(zlib.compress(text.encode())) < 5_000
    await ws.send_str(text)
    assert await closed_with(ws) == 1009


async def test_compressed_frames_under_the_limit_are_served(gw: Gateway) -> None:
    ws = await gw.connect("CP1", compress=15)
    assert (await call(ws, "Heartbeat", {}))[0] == 3


@pytest.mark.parametrize("protocols", [P16, P201])
async def test_json_nested_100k_deep_is_answered_not_crashed(gw: Gateway, protocols: tuple) -> None:
    ws = await gw.connect("CP1", protocols=protocols, max_msg_size=0)
    out = await send_recv(ws, '[2,"a","Heartbeat",' + "[" * 30_000 + "]" * 30_000 + "]")
    assert out[0] == 4
    assert (await call(ws, "Heartbeat", {}))[0] == 3


@pytest.mark.parametrize("protocols,code", [(P16, "FormationViolation"), (P201, "FormatViolation")])
async def test_json_deeper_than_the_limit_is_a_format_violation(gw: Gateway, protocols: tuple, code: str) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    deep = "[" * 40 + "]" * 40
    assert (await send_recv(ws, f'[2,"a","Heartbeat",{{"x":{deep}}}]'))[:3] == [4, "a", code]


@pytest.mark.parametrize("protocols,code", [(P16, "ProtocolError"), (P201, "RpcFrameworkError")])
async def test_a_two_element_array_is_a_protocol_or_framework_error(gw: Gateway, protocols: tuple, code: str) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    assert (await send_recv(ws, '[2,"a"]'))[:3] == [4, "a", code]


async def test_message_type_7_is_ignored_by_16(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=P16)
    await ws.send_str('[7,"a","X",{}]')
    assert await nothing_within(ws, 0.3)


async def test_message_type_7_is_ignored_by_21(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(ocpp21=True)
    ws = await gw.connect("CP1", protocols=("ocpp2.1",))
    await ws.send_str('[7,"a","X",{}]')
    assert await nothing_within(ws, 0.3)


async def test_message_type_7_is_message_type_not_supported_in_201(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=P201)
    assert (await send_recv(ws, '[7,"a","X",{}]'))[:3] == [4, "a", "MessageTypeNotSupported"]


@pytest.mark.parametrize("protocols,code", [(P16, "TypeConstraintViolation"), (P201, "RpcFrameworkError")])
@pytest.mark.parametrize("mid,echo", [('"' + "i" * 37 + '"', "i" * 37), ("5", "-1"), ("null", "-1")])
async def test_a_bad_message_id_is_refused(gw: Gateway, protocols: tuple, code: str, mid: str, echo: str) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    assert (await send_recv(ws, f'[2,{mid},"Heartbeat",{{}}]'))[:3] == [4, echo, code]


@pytest.mark.parametrize("protocols", [P16, P201])
@pytest.mark.parametrize("action", ["Foo", "heartbeat"])
async def test_an_unknown_or_miscased_action_is_not_implemented(gw: Gateway, protocols: tuple, action: str) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    assert (await call(ws, action, {}, mid="m1"))[:3] == [4, "m1", "NotImplemented"]


async def test_an_action_that_only_goes_csms_to_station_is_not_supported(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    assert (await call(ws, "Reset", {"type": "Hard"}, mid="m1"))[:3] == [4, "m1", "NotSupported"]


@pytest.mark.parametrize("protocols,action,payload,code", [
    (P16, "BootNotification", {"chargePointVendor": "V"}, "OccurenceConstraintViolation"),
    (P201, "BootNotification", {"reason": "PowerUp"}, "OccurrenceConstraintViolation"),
    (P16, "StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Available"}, "TypeConstraintViolation"),
    (P16, "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleepy"}, "PropertyConstraintViolation"),
    (P201, "BootNotification", {**BOOT201, "reason": "Bored"}, "PropertyConstraintViolation"),
    (P16, "BootNotification", {**BOOT16, "extra": 1}, "FormationViolation"),
    (P201, "BootNotification", {**BOOT201, "extra": 1}, "FormatViolation"),
    (P16, "Heartbeat", None, "FormationViolation"),
    (P201, "Heartbeat", None, "FormatViolation"),
])
async def test_payload_violations_get_the_versions_error_code(gw: Gateway, protocols: tuple, action: str, payload: object, code: str) -> None:
    ws = await gw.connect("CP1", protocols=protocols)
    assert (await call(ws, action, payload, mid="m1"))[:3] == [4, "m1", code]


async def test_a_16_boot_and_heartbeat_round_trip(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    boot = await call(ws, "BootNotification", BOOT16, mid="b1")
    assert boot[:2] == [3, "b1"] and boot[2]["status"] == "Accepted" and boot[2]["interval"] > 0
    hb = await call(ws, "Heartbeat", {}, mid="h1")
    assert hb[:2] == [3, "h1"] and hb[2]["currentTime"].endswith("Z")
    booted = await gw.wait_event(lambda e: e.type_name == "StationBooted")
    assert booted.station_id == "CP1" and booted.message_id == "b1" and booted.action == "BootNotification"
    assert booted.ocpp_version == "1.6" and booted.gateway_id == "gateway-0"
    await gw.wait_event(lambda e: e.type_name == "Heartbeat" and e.message_id == "h1")


async def test_a_201_boot_round_trip(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=P201)
    boot = await call(ws, "BootNotification", BOOT201, mid="b1")
    assert boot[:2] == [3, "b1"] and boot[2]["status"] == "Accepted"


async def test_calls_sent_back_to_back_are_answered_in_order(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    for i in range(10):
        await ws.send_str(orjson.dumps([2, f"m{i}", "Heartbeat", {}]).decode())
    ids = [(await recv(ws))[1] for _ in range(10)]
    assert ids == [f"m{i}" for i in range(10)]


async def test_an_identical_retry_of_a_withheld_call_is_dropped_and_a_different_one_with_the_same_id_is_refused(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_event(lambda e: e.type_name == "StationConnected")
    gw.bus.set_available(False)
    first = orjson.dumps([2, "same", "Heartbeat", {}]).decode()
    await ws.send_str(first)
    await asyncio.sleep(0.1)
    await ws.send_str(first)  # the station retrying: dropped silently
    await ws.send_str(orjson.dumps([2, "same", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}]).decode())
    dup = await recv(ws)
    assert dup[:3] == [4, "same", "ProtocolError"]
    gw.bus.set_available(True)
    answer = await recv(ws, timeout=5)
    assert answer[:2] == [3, "same"]
    assert await nothing_within(ws, 0.3)  # exactly one answer


async def test_a_callresult_with_an_unknown_id_is_dropped_without_a_callerror(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await ws.send_str('[3,"nobody-asked",{}]')
    await ws.send_str('[4,"nobody-asked","GenericError","",{}]')
    assert (await call(ws, "Heartbeat", {}, mid="h1"))[:2] == [3, "h1"]


@pytest.mark.parametrize("protocols,boot", [(P16, BOOT16), (P201, BOOT201)])
async def test_calls_other_than_boot_while_pending_get_a_security_error(make_gateway, protocols: tuple, boot: dict) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(boot_rate_per_s=0.001)
    first = await gw.connect("CP0", protocols=protocols)
    assert (await call(first, "BootNotification", boot, mid="b0"))[2]["status"] == "Accepted"  # the only token
    ws = await gw.connect("CP1", protocols=protocols)
    answer = await call(ws, "BootNotification", boot, mid="b1")
    assert answer[2]["status"] == "Pending"
    assert (await call(ws, "Heartbeat", {}, mid="h1"))[:3] == [4, "h1", "SecurityError"]
    assert (await call(ws, "BootNotification", boot, mid="b2"))[0] == 3  # boot stays allowed


async def test_a_heartbeat_flood_is_throttled_then_closed_1008(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    for i in range(1000):
        if ws.closed:
            break
        try:
            await ws.send_str(f'[2,"f{i}","Heartbeat",{{}}]')
        except ConnectionError:
            break
    assert await closed_with(ws, timeout=10) == 1008


async def test_a_station_sending_a_frame_after_a_callerror_keeps_its_connection(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    for bad in ("nope", '[2,"a"]', '[2,"b","Foo",{}]', '[2,"c","Heartbeat",null]'):
        await ws.send_str(bad)
        assert (await recv(ws))[0] == 4
    assert (await call(ws, "Heartbeat", {}))[0] == 3


async def test_a_flood_of_garbage_frames_is_throttled_then_closed_1008(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    for i in range(2000):
        if ws.closed:
            break
        try:
            await ws.send_str("garbage")
        except ConnectionError:
            break
    assert await closed_with(ws, timeout=10) == 1008


async def test_unsolicited_answers_are_paced_too(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    for i in range(2000):
        if ws.closed:
            break
        try:
            await ws.send_str(f'[3,"x{i}",{{}}]')
        except ConnectionError:
            break
    assert await closed_with(ws, timeout=10) == 1008


async def test_a_21_boot_round_trip_when_21_is_enabled(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(ocpp21=True)
    ws = await gw.connect("CP1", protocols=("ocpp2.1",))
    boot = await call(ws, "BootNotification", BOOT201, mid="b1")
    assert boot[:2] == [3, "b1"] and boot[2]["status"] == "Accepted"
    assert (await call(ws, "BootNotification", {"reason": "PowerUp"}, mid="b2"))[:3] == [4, "b2", "OccurrenceConstraintViolation"]

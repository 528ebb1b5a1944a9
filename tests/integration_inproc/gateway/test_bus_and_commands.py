"""Withheld replies while the bus is down (rows 42, 49) and the command return path (ADR 001)."""

from __future__ import annotations

import asyncio
import time

import orjson

from services.common.events import CommandResult
from tests.integration_inproc.gateway.harness import Gateway, call, nothing_within, recv

START16 = {"connectorId": 1, "idTag": "TAG1", "meterStart": 100, "timestamp": "2026-01-01T10:00:00Z"}


async def test_while_the_bus_is_down_no_reply_is_sent_and_the_reply_follows_recovery(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_event(lambda e: e.type_name == "StationConnected")
    gw.bus.set_available(False)
    await ws.send_str(orjson.dumps([2, "s1", "StartTransaction", START16]).decode())
    assert await nothing_within(ws, 0.5)  # withheld: neither CALLRESULT nor CALLERROR
    assert not gw.svc.ready()
    resp = await gw.session.get(f"http://127.0.0.1:{gw.port}/readyz")
    assert resp.status == 503
    gw.bus.set_available(True)
    answer = await recv(ws, timeout=5)
    assert answer[:2] == [3, "s1"] and answer[2]["transactionId"] > 0
    for _ in range(100):
        if gw.svc.ready():
            break
        await asyncio.sleep(0.02)
    assert gw.svc.ready()
    started = await gw.wait_event(lambda e: e.type_name == "TransactionStarted")
    assert started.station_time is not None and started.received_at is not None


async def test_a_station_leaving_during_an_outage_stops_the_retries(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_event(lambda e: e.type_name == "StationConnected")
    gw.bus.set_available(False)
    await ws.send_str('[2,"h1","Heartbeat",{}]')
    await asyncio.sleep(0.2)
    await ws.close()
    for _ in range(150):
        if "CP1" not in gw.svc.registry and gw.publisher.retrying <= 1:
            break
        await asyncio.sleep(0.02)
    # the Heartbeat's publish gave up; only StationDisconnected (bounded) still retries
    assert "CP1" not in gw.svc.registry and gw.publisher.retrying <= 1
    gw.bus.set_available(True)
    await gw.wait_event(lambda e: e.type_name == "StationDisconnected")
    assert not gw.events(lambda e: e.type_name == "Heartbeat")


async def answer_next_call(ws, response: dict) -> list:  # type: ignore[no-untyped-def]
    frame = await recv(ws)
    assert frame[0] == 2
    await ws.send_str(orjson.dumps([3, frame[1], response]).decode())
    return frame


async def test_a_command_round_trip_publishes_issued_and_result_events(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    cid = await gw.send_command("CP1", "Reset", {"reset_type": "Hard"})
    frame = await answer_next_call(ws, {"status": "Accepted"})
    assert frame[2] == "Reset" and frame[3] == {"type": "Hard"}
    result = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert result.body.status == "Accepted"  # type: ignore[union-attr]
    assert result.message_id == frame[1] and result.action == "Reset"
    # the result carries what the station was sent (ADR 016 §1): no join with CommandIssued needed
    assert result.body.ocpp_action == "Reset" and orjson.loads(result.body.request_json) == {"type": "Hard"}  # type: ignore[union-attr]
    issued = await gw.wait_event(lambda e: e.type_name == "CommandIssued")
    assert issued.body.command_id == cid and issued.body.ocpp_action == "Reset"  # type: ignore[union-attr]


async def test_a_201_command_is_translated_to_the_stations_version(gw: Gateway) -> None:
    ws = await gw.connect("CP1", protocols=("ocpp2.0.1",))
    await gw.wait_connected("CP1")
    cid = await gw.send_command("CP1", "Reset", {"reset_type": "Hard"})
    frame = await answer_next_call(ws, {"status": "Accepted"})
    assert frame[2] == "Reset" and frame[3]["type"] == "Immediate"
    result = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert result.body.status == "Accepted"  # type: ignore[union-attr]
    assert orjson.loads(result.body.request_json) == frame[3] and result.body.ocpp_action == "Reset"  # type: ignore[union-attr]


async def test_a_callerror_from_the_station_is_a_rejected_result_with_its_code(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    cid = await gw.send_command("CP1", "Reset", {"reset_type": "Soft"})
    frame = await recv(ws)
    await ws.send_str(orjson.dumps([4, frame[1], "NotSupported", "no", {}]).decode())
    result = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert (result.body.status, result.body.error_code) == ("Rejected", "NotSupported")  # type: ignore[union-attr]
    assert result.body.ocpp_action == "Reset" and orjson.loads(result.body.request_json) == frame[3]  # type: ignore[union-attr]


async def test_a_command_without_an_answer_times_out(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(command_timeout_s=0.3)
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    cid = await gw.send_command("CP1", "Reset", {"reset_type": "Soft"})
    frame = await recv(ws)
    result = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert result.body.status == "Timeout"  # type: ignore[union-attr]
    assert result.body.ocpp_action == "Reset" and orjson.loads(result.body.request_json) == frame[3]  # type: ignore[union-attr]


async def test_commands_to_one_station_are_sent_one_at_a_time_in_order(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    ids = [await gw.send_command("CP1", "Reset", {"reset_type": t}) for t in ("Soft", "Hard", "Soft")]
    seen = []
    for _ in ids:
        frame = await recv(ws)
        seen.append(frame[3]["type"])
        assert await nothing_within(ws, 0.05)  # the next CALL waits for this answer
        await ws.send_str(orjson.dumps([3, frame[1], {"status": "Accepted"}]).decode())
    assert seen == ["Soft", "Hard", "Soft"]
    for cid in ids:
        await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)


async def test_a_command_the_version_lacks_is_not_supported(gw: Gateway) -> None:
    await gw.connect("CP1")
    await gw.wait_connected("CP1")
    cid = await gw.send_command("CP1", "GetVariables", {"variables": [{"component": "C", "variable": "V"}]})
    result = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert result.body.status == "NotSupported"  # type: ignore[union-attr]


async def test_a_command_for_a_station_not_connected_anywhere_is_station_offline(gw: Gateway) -> None:
    cid = await gw.send_command("GHOST", "Reset", {"reset_type": "Soft"})
    result = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert result.body.status == "StationOffline"  # type: ignore[union-attr]
    # never sent: the station's version (and so the action) is not known here
    assert (result.body.ocpp_action, result.body.request_json) == ("", "")  # type: ignore[union-attr]


async def test_a_command_for_a_station_owned_elsewhere_is_rerouted_once(gw: Gateway) -> None:
    await gw.store.claim_station("CP9", "gateway-3")
    cid = await gw.send_command("CP9", "Reset", {"reset_type": "Soft"})
    for _ in range(200):
        moved = [c for c in gw.commands(3) if c.command_id == cid]
        if moved:
            break
        await asyncio.sleep(0.01)
    assert moved and moved[0].hops == 1 and moved[0].target_gateway_id == "gateway-3"


async def test_a_rerouted_command_that_misses_again_is_station_offline(gw: Gateway) -> None:
    await gw.store.claim_station("CP9", "gateway-3")
    cid = await gw.send_command("CP9", "Reset", {"reset_type": "Soft"}, hops=1)
    result = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert result.body.status == "StationOffline"  # type: ignore[union-attr]


async def test_an_expired_command_is_dropped(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    await gw.send_command("CP1", "Reset", {"reset_type": "Soft"}, ttl_s=-1)
    assert await nothing_within(ws, 0.3)


async def test_a_slow_station_does_not_hold_up_commands_for_others(gw: Gateway) -> None:
    slow = await gw.connect("SLOW")
    fast = await gw.connect("FAST")
    await gw.wait_connected("SLOW")
    await gw.wait_connected("FAST")
    await gw.send_command("SLOW", "Reset", {"reset_type": "Soft"})
    await recv(slow)  # never answered
    t0 = time.monotonic()
    cid = await gw.send_command("FAST", "Reset", {"reset_type": "Soft"})
    await answer_next_call(fast, {"status": "Accepted"})
    await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert time.monotonic() - t0 < 2


async def test_the_handshake_and_a_call_need_no_more_than_the_bus_and_store(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    assert (await call(ws, "Authorize", {"idTag": "UNKNOWN"}))[2]["idTagInfo"]["status"] == "Invalid"


async def test_a_revocation_on_the_command_topic_clears_the_gateways_auth_cache(gw: Gateway) -> None:
    from services.common.routing import broadcast_revoke
    from tests.support.waiting import eventually

    ws = await gw.connect("CP-RV")
    await gw.wait_connected("CP-RV")
    auth = gw.svc.web.auth
    assert auth.stations.get("CP-RV") is not None  # the handshake cached the station
    await broadcast_revoke(gw.bus, "CP-RV", reason="rotated", close=False, issuer="api", clock=gw.rt.clock)
    await eventually(lambda: auth.stations.get("CP-RV") is None, 2.0, what="the auth cache to forget the station")
    assert not ws.closed  # close=False: only the caches

"""Issue 7 items 5 and 6 over a real socket: lenient transaction messages, unusable samples
kept raw, out-of-range integers, and frames/records too large for the bus (docs/gateway-leniency.md)."""

from __future__ import annotations

import logging

import orjson
import pytest
from prometheus_client import REGISTRY

from services.common.events import MeterValues, TransactionEnded, TransactionStarted, TransactionUpdated
from services.gateway import sizes
from tests.integration_inproc.gateway.harness import Gateway, call, recv

P16, P201, P21 = ("ocpp1.6",), ("ocpp2.0.1",), ("ocpp2.1",)
TS = "2026-01-01T10:00:00Z"
START16 = {"connectorId": 1, "idTag": "TAG1", "meterStart": 100, "timestamp": TS}


def lenient_count(action: str, field: str) -> float:
    return REGISTRY.get_sample_value("csms_gateway_lenient_fields_total", {"action": action, "field": field}) or 0.0


def tx_event(event_type: str, seq_no: int, **extra: object) -> dict:
    return {
        "eventType": event_type, "timestamp": TS, "triggerReason": "Authorized", "seqNo": seq_no,
        "transactionInfo": {"transactionId": "tx-1"}, "evse": {"id": 1, "connectorId": 1}, **extra,
    }


async def test_a_16_unit_in_lower_case_is_answered_and_forwarded_canonical_and_scaled(gw: Gateway) -> None:
    before = lenient_count("MeterValues", "meterValue.sampledValue.unit")
    ws = await gw.connect("CP1")
    mv = {"connectorId": 1, "transactionId": 7, "meterValue": [{"timestamp": TS, "sampledValue": [
        {"value": "1.5", "unit": "kwh", "measurand": "energy.active.import.register"}]}]}
    assert await call(ws, "MeterValues", mv, mid="mv1") == [3, "mv1", {}]
    ev = await gw.wait_event(lambda e: e.message_id == "mv1")
    assert isinstance(ev.body, MeterValues)
    (s,) = ev.body.samples
    assert (s.value, s.unit, s.measurand, s.raw_value) == (1500.0, "Wh", "Energy.Active.Import.Register", "")
    assert lenient_count("MeterValues", "meterValue.sampledValue.unit") == before + 1


async def test_a_16_stop_reason_local_in_lower_case_ends_the_transaction(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    stop = {"transactionId": 7, "meterStop": 2000, "timestamp": TS, "reason": "local",
            "transactionData": [{"timestamp": TS, "sampledValue": [{"value": "2", "unit": "KWH", "context": "transaction.end"}]}]}
    answer = await call(ws, "StopTransaction", stop, mid="st1")
    assert answer == [3, "st1", {}]
    ev = await gw.wait_event(lambda e: e.message_id == "st1")
    assert isinstance(ev.body, TransactionEnded)
    assert (ev.body.transaction_id, ev.body.stop_reason, ev.body.meter_stop_wh) == ("7", "Local", 2000)
    assert [(s.value, s.unit, s.context) for s in ev.body.samples] == [(2000.0, "Wh", "Transaction.End")]


async def test_an_unknown_16_reason_and_context_are_kept_raw_and_counted(gw: Gateway) -> None:
    before = lenient_count("StopTransaction", "reason")
    ws = await gw.connect("CP1")
    stop = {"transactionId": 8, "meterStop": 10, "timestamp": TS, "reason": "CableCut"}
    assert (await call(ws, "StopTransaction", stop, mid="st2"))[0] == 3
    ev = await gw.wait_event(lambda e: e.message_id == "st2")
    assert ev.body.stop_reason == "CableCut"
    assert lenient_count("StopTransaction", "reason") == before + 1


@pytest.mark.parametrize("protocols", [P201, P21])
async def test_an_unknown_201_measurand_and_trigger_reason_are_kept_raw(make_gateway, protocols: tuple) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(ocpp21=True)
    before = lenient_count("TransactionEvent", "meterValue.sampledValue.measurand")
    ws = await gw.connect("CP2", protocols=protocols)
    payload = tx_event("updated", 1, triggerReason="SomethingNew", meterValue=[{"timestamp": TS, "sampledValue": [
        {"value": 3.5, "measurand": "Energy.Active.Import.Interval.Custom", "unitOfMeasure": {"unit": "kwh"}},
        {"value": 1200, "measurand": "Energy.Active.Import.Register"}]}])
    answer = await call(ws, "TransactionEvent", payload, mid="te1")
    assert answer[:2] == [3, "te1"]
    ev = await gw.wait_event(lambda e: e.message_id == "te1")
    assert isinstance(ev.body, TransactionUpdated)  # "updated" was canonicalised to Updated
    assert ev.body.trigger_reason == "SomethingNew"
    assert [(s.measurand, s.value, s.unit) for s in ev.body.samples] == [
        ("Energy.Active.Import.Interval.Custom", 3500.0, "Wh"), ("Energy.Active.Import.Register", 1200.0, "Wh")]
    assert lenient_count("TransactionEvent", "meterValue.sampledValue.measurand") == before + 1


async def test_a_201_event_type_that_is_not_one_of_the_three_is_still_refused(gw: Gateway) -> None:
    ws = await gw.connect("CP2", protocols=P201)
    answer = await call(ws, "TransactionEvent", tx_event("Paused", 1), mid="te2")
    assert answer[:3] == [4, "te2", "PropertyConstraintViolation"]
    assert not gw.events(lambda e: e.message_id == "te2")


@pytest.mark.parametrize("text", ["1e308", "NaN", "-Infinity", "12,5"])
async def test_a_16_value_that_is_not_a_usable_number_is_forwarded_raw(gw: Gateway, text: str) -> None:
    ws = await gw.connect("CP1")
    mv = {"connectorId": 1, "transactionId": 7, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": text}, {"value": "42"}]}]}
    assert await call(ws, "MeterValues", mv, mid="mv2") == [3, "mv2", {}]
    ev = await gw.wait_event(lambda e: e.message_id == "mv2")
    assert [(s.value, s.raw_value) for s in ev.body.samples] == [(0.0, text), (42.0, "")]


async def test_a_201_value_that_is_a_string_is_forwarded_raw(gw: Gateway) -> None:
    ws = await gw.connect("CP2", protocols=P201)
    mv = {"evseId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "NaN"}, {"value": 1e308}]}]}
    assert await call(ws, "MeterValues", mv, mid="mv3") == [3, "mv3", {}]
    ev = await gw.wait_event(lambda e: e.message_id == "mv3")
    assert [(s.value, s.raw_value) for s in ev.body.samples] == [(0.0, "NaN"), (0.0, "1e+308")]


async def test_a_meter_start_of_2_to_the_70_is_answered_and_forwarded_as_absent(gw: Gateway) -> None:
    before = lenient_count("StartTransaction", "meterStart")
    ws = await gw.connect("CP1")
    # Written by hand: the literal integer as a station sends it (orjson reads it as a float).
    await ws.send_str(f'[2,"s1","StartTransaction",{{"connectorId":1,"idTag":"TAG1","meterStart":{2**70},"timestamp":"{TS}"}}]')
    answer = await recv(ws)
    assert answer[:2] == [3, "s1"] and answer[2]["transactionId"] > 0
    ev = await gw.wait_event(lambda e: e.message_id == "s1")
    assert isinstance(ev.body, TransactionStarted) and ev.body.meter_start_wh is None
    assert lenient_count("StartTransaction", "meterStart") == before + 1


async def test_201_integers_beyond_the_event_fields_never_break_encoding(gw: Gateway) -> None:
    ws = await gw.connect("CP2", protocols=P201)
    text = orjson.dumps([2, "te3", "TransactionEvent", tx_event("Started", 0)]).decode()
    text = (text.replace('"seqNo":0', f'"seqNo":{2**70}').replace('"id":1', f'"id":{2**40}')
            .replace('"transactionId":"tx-1"}', f'"transactionId":"tx-1","remoteStartId":{2**40}}}'))
    await ws.send_str(text)
    answer = await recv(ws)
    assert answer[:2] == [3, "te3"]
    ev = await gw.wait_event(lambda e: e.message_id == "te3")
    assert (ev.body.seq_no, ev.body.evse_id, ev.body.remote_start_id) == (2**63 - 1, 0, 0)


@pytest.mark.parametrize("protocols,payload,code", [
    (P201, {"reason": "powerup", "chargingStation": {"model": "M", "vendorName": "V"}}, "PropertyConstraintViolation"),
    (P16, {"chargePointVendor": "V", "chargePointModel": "M", "extra": 1}, "FormationViolation"),
])
async def test_other_actions_keep_strict_validation(gw: Gateway, protocols: tuple, payload: dict, code: str) -> None:
    ws = await gw.connect("CP3", protocols=protocols)
    assert (await call(ws, "BootNotification", payload, mid="b1"))[:3] == [4, "b1", code]


async def test_a_transaction_message_without_its_identity_gets_the_strict_callerror(gw: Gateway) -> None:
    ws = await gw.connect("CP1")
    stop = {"meterStop": 10, "timestamp": TS, "reason": "local"}
    assert (await call(ws, "StopTransaction", stop, mid="st3"))[:3] == [4, "st3", "OccurenceConstraintViolation"]
    stop = {"transactionId": "7", "meterStop": 10, "timestamp": TS}
    assert (await call(ws, "StopTransaction", stop, mid="st4"))[:3] == [4, "st4", "TypeConstraintViolation"]


async def test_the_schema_error_is_logged_once_per_station_and_field_but_counted_each_time(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    before = lenient_count("MeterValues", "meterValue.sampledValue.unit")
    mv = {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "1", "unit": "kwh"}]}]}
    a, b = await gw.connect("CP1"), await gw.connect("CP9")
    with caplog.at_level(logging.WARNING, logger="csms.gateway.connection"):
        for ws in (a, a, a, b):
            assert (await call(ws, "MeterValues", mv))[0] == 3
    lines = [r.getMessage() for r in caplog.records if "meterValue.sampledValue.unit" in r.getMessage()]
    assert len(lines) == 2 and any("station=CP1" in x for x in lines) and any("station=CP9" in x for x in lines)
    assert "'kwh' -> 'kWh'" in lines[0]
    assert lenient_count("MeterValues", "meterValue.sampledValue.unit") == before + 4


# -- sizes -------------------------------------------------------------------------------

async def test_a_data_transfer_just_under_1_mib_gets_a_callerror_naming_the_limit_and_the_gateway_stays_ready(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(max_frame_bytes=1 << 20, bus_max_record_bytes=1 << 20)
    limit = sizes.frame_limit(1 << 20)
    ws, other = await gw.connect("CP1"), await gw.connect("CP2")
    head = '[2,"d1","DataTransfer",{"vendorId":"v","data":"'
    text = head + "x" * ((1 << 20) - len(head) - 10) + '"}]'
    assert len(text) < 1 << 20
    await ws.send_str(text)
    answer = await recv(ws)
    assert answer[:3] == [4, "d1", "FormationViolation"]
    assert f"limit is {limit} bytes" in answer[3] and "DataTransfer data" in answer[3]
    assert gw.svc.ready() and not gw.publisher.failing
    assert (await gw.session.get(f"http://127.0.0.1:{gw.port}/readyz")).status == 200
    assert (await call(ws, "Heartbeat", {}))[0] == 3
    assert (await call(other, "Heartbeat", {}))[0] == 3
    assert not gw.events(lambda e: e.message_id == "d1")
    # just under the action limit still goes through
    fits = head + "y" * (limit - len(head) - 10) + '"}]'
    await ws.send_str(fits.replace('"d1"', '"d2"'))
    assert (await recv(ws))[:3] == [3, "d2", {"status": "UnknownVendorId"}]


async def test_a_201_frame_over_its_action_limit_is_a_format_violation(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(max_frame_bytes=256 * 1024, bus_max_record_bytes=64 * 1024)
    ws = await gw.connect("CP2", protocols=P201)
    answer = await call(ws, "DataTransfer", {"vendorId": "v", "data": {"blob": "z" * 60_000}}, mid="d3")
    assert answer[:3] == [4, "d3", "FormatViolation"] and f"{sizes.frame_limit(64 * 1024)} bytes" in answer[3]
    assert gw.svc.ready()


def minimal_samples(n: int) -> dict:
    # ~14 bytes of JSON per sample, ~90 bytes per sample in the event (defaults filled in)
    return {"connectorId": 1, "transactionId": 7, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "1"}] * n}]}


async def test_an_event_that_expands_beyond_the_record_limit_is_one_callerror_not_an_outage(make_gateway) -> None:  # type: ignore[no-untyped-def]
    gw = await make_gateway(max_frame_bytes=256 * 1024, bus_max_record_bytes=64 * 1024)
    ws, other = await gw.connect("CP1"), await gw.connect("CP2")
    payload = minimal_samples(3000)
    assert len(orjson.dumps(payload)) < sizes.frame_limit(64 * 1024)  # the frame itself fits
    answer = await call(ws, "MeterValues", payload, mid="big")
    assert answer[:3] == [4, "big", "FormationViolation"] and "limit is 65536 bytes" in answer[3]
    assert gw.svc.ready() and gw.publisher.retrying == 0
    assert (await call(ws, "MeterValues", minimal_samples(3), mid="small"))[:2] == [3, "small"]
    assert (await call(other, "Heartbeat", {}))[0] == 3


async def test_a_record_too_large_from_the_bus_itself_is_one_callerror_not_an_outage(make_gateway) -> None:  # type: ignore[no-untyped-def]
    # The gateway believes the bus takes 1 MiB; the bus (like a broker configured lower)
    # refuses anything over 32 KiB. Its RecordTooLarge must not be taken for an outage.
    gw = await make_gateway(max_frame_bytes=256 * 1024, bus_max_record_bytes=1 << 20, bus_options={"max_record_bytes": 32 * 1024})
    ws, other = await gw.connect("CP1"), await gw.connect("CP2")
    answer = await call(ws, "DataTransfer", {"vendorId": "v", "data": "q" * 40_000}, mid="dt")
    assert answer[:3] == [4, "dt", "FormationViolation"] and "32768" in answer[3]
    assert gw.svc.ready() and gw.publisher.retrying == 0 and not gw.publisher.failing
    assert (await gw.session.get(f"http://127.0.0.1:{gw.port}/readyz")).status == 200
    assert (await call(ws, "Heartbeat", {}))[0] == 3
    assert (await call(other, "Heartbeat", {}))[0] == 3


async def test_a_running_cost_is_not_estimated_over_a_station_clock_decades_off(gw: Gateway) -> None:
    import time
    from decimal import Decimal

    from services.billing.codec import tariff_to_dict
    from services.billing.domain import Tariff

    tariff = Tariff(id="T1", currency="EUR", price_per_kwh=Decimal("0.30"), price_per_minute=Decimal("0.05"), session_fee=Decimal("1.00"))
    await gw.store.put_doc("tariff", "T1", tariff_to_dict(tariff))
    # a station id no other test uses: the gateway caches each station's tariff for 30 s
    await gw.add_station("CP-COST", tariff_id="T1")
    ws = await gw.connect("CP-COST", protocols=P201)
    register = [{"timestamp": TS, "sampledValue": [{"value": 1000, "measurand": "Energy.Active.Import.Register"}]}]
    started = {**tx_event("Started", 0, meterValue=register), "timestamp": "1970-01-01T00:00:00Z"}
    assert (await call(ws, "TransactionEvent", started))[0] == 3
    t0 = time.perf_counter()
    answer = await call(ws, "TransactionEvent", tx_event("Updated", 1, meterValue=register))
    assert answer[0] == 3 and "totalCost" not in answer[2]
    assert time.perf_counter() - t0 < 0.5
    # a plausible session still gets its estimate (the guard is what removed it above)
    ws2 = await gw.connect("CP-COST", protocols=P201)
    other = {**tx_event("Started", 0, meterValue=register), "transactionInfo": {"transactionId": "tx-2"}}
    assert (await call(ws2, "TransactionEvent", other))[0] == 3
    update = {**tx_event("Updated", 1, meterValue=register), "transactionInfo": {"transactionId": "tx-2"}}
    assert "totalCost" in (await call(ws2, "TransactionEvent", update))[2]


async def test_a_command_answer_too_large_for_a_record_is_published_without_its_body(make_gateway) -> None:  # type: ignore[no-untyped-def]
    from services.common.events import CommandResult

    gw = await make_gateway(max_frame_bytes=256 * 1024, bus_max_record_bytes=64 * 1024)
    ws = await gw.connect("CP1")
    await gw.wait_connected("CP1")
    cid = await gw.send_command("CP1", "GetConfiguration", {})
    frame = await recv(ws)
    keys = [{"key": f"K{i}", "readonly": False, "value": "v" * 400} for i in range(400)]
    await ws.send_str(orjson.dumps([3, frame[1], {"configurationKey": keys}]).decode())
    result = await gw.wait_event(lambda e: isinstance(e.body, CommandResult) and e.body.command_id == cid)
    assert result.body.status == "Accepted" and result.body.response_json == "{}"  # type: ignore[union-attr]
    assert result.body.error_code == "ResponseTooLarge" and "65536 bytes" in result.body.error_description  # type: ignore[union-attr]
    assert gw.svc.ready()
    assert (await call(ws, "Heartbeat", {}))[0] == 3

"""Lenient validation of transaction messages, frame size limits, and RecordTooLarge in the
publisher (docs/gateway-leniency.md)."""

from __future__ import annotations

import copy
import json
import os
from datetime import datetime, timezone
from typing import Any

import ocpp
import orjson
import pytest
from hypothesis import given, settings, strategies as st

from services.common.bus.memory import MemoryBus
from services.common.errors import RecordTooLarge
from services.common.events import Envelope, Notification
from services.gateway import frames, sizes, validation
from services.gateway.publisher import Publisher

V16, V201, V21 = "1.6", "2.0.1", "2.1"
TS = "2026-01-01T10:00:00Z"
METER16 = {"connectorId": 1, "transactionId": 5, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "1"}]}]}
EVENT201 = {"eventType": "Updated", "timestamp": TS, "triggerReason": "MeterValuePeriodic", "seqNo": 1,
            "transactionInfo": {"transactionId": "tx"}}


def test_valid_payloads_take_the_strict_path_unchanged() -> None:
    payload = copy.deepcopy(METER16)
    assert validation.check(V16, "MeterValues", payload) == (None, [])
    assert payload == METER16


@pytest.mark.parametrize("version,action,payload,path,sent,canonical", [
    (V16, "MeterValues", {**METER16, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "1", "unit": "kwh"}]}]},
     ["meterValue", 0, "sampledValue", 0, "unit"], "kwh", "kWh"),
    (V16, "StopTransaction", {"transactionId": 5, "meterStop": 1, "timestamp": TS, "reason": "local"}, ["reason"], "local", "Local"),
    (V16, "StopTransaction", {"transactionId": 5, "meterStop": 1, "timestamp": TS, "transactionData": [
        {"timestamp": TS, "sampledValue": [{"value": "1", "context": "sample.periodic"}]}]},
     ["transactionData", 0, "sampledValue", 0, "context"], "sample.periodic", "Sample.Periodic"),
    (V201, "TransactionEvent", {**EVENT201, "eventType": "ENDED"}, ["eventType"], "ENDED", "Ended"),
    (V21, "TransactionEvent", {**EVENT201, "transactionInfo": {"transactionId": "tx", "stoppedReason": "evdisconnected"}},
     ["transactionInfo", "stoppedReason"], "evdisconnected", "EVDisconnected"),
])
def test_enum_values_are_canonicalised_case_insensitively(version: str, action: str, payload: dict, path: list, sent: str, canonical: str) -> None:
    assert validation.validate(version, action, payload) is not None  # the strict schema refuses it
    violation, notes = validation.check(version, action, payload)
    assert violation is None
    node: Any = payload
    for step in path:
        node = node[step]
    assert node == canonical
    field = ".".join(p for p in path if isinstance(p, str))
    assert notes == [validation.Lenient(field, "canonicalised", f"{sent!r} -> {canonical!r}")]


def test_unknown_enum_values_bad_timestamps_and_unknown_properties_are_kept_and_reported() -> None:
    payload = {**METER16, "vendorThing": 1, "meterValue": [{"timestamp": "yesterday", "sampledValue": [
        {"value": "1", "measurand": "Energy.Made.Up", "unit": "furlong", "phase": "L4"}]}]}
    violation, notes = validation.check(V16, "MeterValues", payload)
    assert violation is None
    assert {(n.field, n.kind) for n in notes} == {
        ("*", "ignored"), ("meterValue.timestamp", "kept_raw"), ("meterValue.sampledValue.measurand", "kept_raw"),
        ("meterValue.sampledValue.unit", "kept_raw"), ("meterValue.sampledValue.phase", "kept_raw"),
    }
    assert payload["meterValue"][0]["sampledValue"][0]["unit"] == "furlong"


def test_a_201_measurement_that_is_not_a_number_is_kept_but_an_id_of_the_wrong_type_is_not() -> None:
    payload = {"evseId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "NaN"}]}]}
    assert validation.check(V201, "MeterValues", payload) == (
        None, [validation.Lenient("meterValue.sampledValue.value", "kept_raw", "'NaN' is not a number")])
    bad = {"evseId": "1", "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 1}]}]}
    assert validation.check(V201, "MeterValues", bad) == (validation.validate(V201, "MeterValues", bad), [])


@pytest.mark.parametrize("version,action,payload", [
    (V16, "StartTransaction", {"connectorId": 1, "meterStart": 0, "timestamp": TS}),              # idTag missing
    (V16, "StopTransaction", {"transactionId": "5", "meterStop": 0, "timestamp": TS}),            # id of the wrong type
    (V16, "StopTransaction", {"transactionId": 5, "meterStop": 1.5, "timestamp": TS, "reason": "local"}),  # counter not integral
    (V16, "MeterValues", {"connectorId": 1, "meterValue": []}),                                    # no readings
    (V201, "TransactionEvent", {**EVENT201, "eventType": "Paused"}),                               # meaning unknown
    (V201, "TransactionEvent", {**EVENT201, "seqNo": "1", "triggerReason": "x"}),
    (V201, "TransactionEvent", {**EVENT201, "transactionInfo": {"stoppedReason": "local"}}),       # no transactionId
])
def test_what_leaves_the_transaction_unidentifiable_or_meaningless_gets_the_strict_error(version: str, action: str, payload: dict) -> None:
    strict = validation.validate(version, action, payload)
    assert strict is not None
    assert validation.check(version, action, payload) == (strict, [])


@pytest.mark.parametrize("version,action,payload", [
    (V16, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M", "x": 1}),
    (V16, "StatusNotification", {"connectorId": 1, "errorCode": "noerror", "status": "Available"}),
    (V201, "BootNotification", {"reason": "powerup", "chargingStation": {"model": "M", "vendorName": "V"}}),
    (V201, "StatusNotification", {"timestamp": TS, "connectorStatus": "available", "evseId": 1, "connectorId": 1}),
])
def test_every_other_action_stays_strict(version: str, action: str, payload: dict) -> None:
    before = copy.deepcopy(payload)
    violation, notes = validation.check(version, action, payload)
    assert violation == validation.validate(version, action, payload) and violation is not None
    assert notes == [] and payload == before


# -- the label set is bounded by the schema -------------------------------------------------

def _schema(version: str, action: str) -> dict:
    folder = os.path.join(os.path.dirname(ocpp.__file__), "v" + version.replace(".", ""), "schemas")
    with open(os.path.join(folder, action + (".json" if version == V16 else "Request.json")), encoding="utf-8-sig") as f:
        return json.load(f)  # type: ignore[no-any-return]


def _paths(schema: dict) -> set[str]:
    """Every property path of the schema, plus `<object path>.*` for unknown properties."""
    defs = schema.get("definitions", {})
    out: set[str] = set()

    def walk(node: dict, path: str, depth: int) -> None:
        if depth > 12:
            return
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if node.get("type") == "object" or "properties" in node:
            out.add(f"{path}.*" if path else "*")
            for name, sub in node.get("properties", {}).items():
                child = f"{path}.{name}" if path else name
                out.add(child)
                walk(sub, child, depth + 1)
        if isinstance(node.get("items"), dict):
            walk(node["items"], path, depth + 1)

    walk(schema, "", 0)
    return out


words = st.sampled_from(["kwh", "KWH", "local", "Local", "foo", "", "Sample.Periodic", "ENERGY.ACTIVE.IMPORT.REGISTER", "l1", "outlet"]) | st.text(max_size=8)
sampled = st.dictionaries(
    st.sampled_from(["value", "unit", "measurand", "phase", "context", "location", "format"]) | st.text(max_size=6),
    words, max_size=8,
).map(lambda d: {**d, "value": d.get("value", "1")})


@settings(max_examples=200, deadline=None)
@given(st.lists(sampled, min_size=1, max_size=4), words, st.dictionaries(st.text(max_size=6), words, max_size=3))
def test_noted_fields_are_always_schema_paths_whatever_the_station_sends(svs: list, reason: str, extra: dict) -> None:
    allowed = _paths(_schema(V16, "StopTransaction"))
    payload = {"transactionId": 5, "meterStop": 1, "timestamp": TS, "reason": reason,
               "transactionData": [{"timestamp": TS, "sampledValue": svs}], **{k: v for k, v in extra.items() if k not in ("transactionId", "meterStop", "timestamp", "reason", "transactionData")}}
    violation, notes = validation.check(V16, "StopTransaction", payload)
    assert {n.field for n in notes} <= allowed
    if violation is None:
        # whatever was accepted is now valid for the relaxed schema, and canonical where it can be
        for sv in payload["transactionData"][0]["sampledValue"]:
            if sv.get("unit", "").casefold() == "kwh":
                assert sv["unit"] == "kWh"


# -- sizes --------------------------------------------------------------------------------

def test_the_frame_limit_is_the_record_limit_minus_the_headroom() -> None:
    assert sizes.frame_limit(1 << 20) == (1 << 20) - sizes.ENVELOPE_HEADROOM_BYTES
    assert sizes.frame_limit(1000) == sizes.MIN_FRAME_LIMIT_BYTES


def _call(version: str, action: str, payload: Any) -> frames.Call:
    parsed = frames.parse(version, orjson.dumps([2, "m1", action, payload]).decode(), 32)
    assert isinstance(parsed, frames.Call)
    return parsed


@pytest.mark.parametrize("version,code", [(V16, "FormationViolation"), (V201, "FormatViolation")])
def test_a_data_transfer_over_the_limit_is_refused_naming_the_limit(version: str, code: str) -> None:
    limit = 10_000
    out = frames.check_call(version, _call(version, "DataTransfer", {"vendorId": "v", "data": "é" * 6000}), True, False, max_bytes=limit)
    assert out is not None
    err = orjson.loads(out)
    assert err[:3] == [4, "m1", code] and err[3] == "DataTransfer data is 12000 bytes; the limit is 10000 bytes"
    assert frames.check_call(version, _call(version, "DataTransfer", {"vendorId": "v", "data": "é" * 4000}), True, False, max_bytes=limit) is None


def test_any_action_over_the_limit_is_refused_before_schema_validation() -> None:
    payload = {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "1"}] * 1000}], "bogus": 1}
    err = orjson.loads(frames.check_call(V16, _call(V16, "MeterValues", payload), True, False, max_bytes=5000) or "null")
    assert err[2] == "FormationViolation" and "the limit for one CALL is 5000 bytes" in err[3]


def test_check_call_reports_lenient_fields_and_canonicalises_the_payload() -> None:
    notes: list[validation.Lenient] = []
    call = _call(V16, "StopTransaction", {"transactionId": 5, "meterStop": 1, "timestamp": TS, "reason": "local"})
    assert frames.check_call(V16, call, True, False, max_bytes=10_000, lenient=notes) is None
    assert call.payload["reason"] == "Local" and [n.field for n in notes] == ["reason"]


# -- publisher ----------------------------------------------------------------------------

def _env(size: int) -> Envelope:
    return Envelope(event_id="e1", station_id="CP1", received_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                    body=Notification(payload_json="x" * size), gateway_id="gateway-0")


async def test_the_publisher_refuses_an_oversized_event_at_once_without_an_outage() -> None:
    bus = MemoryBus()
    pub = Publisher(bus.publish, 8192)
    with pytest.raises(RecordTooLarge, match="8192 bytes"):
        await pub.publish(_env(9000), alive=lambda: True)
    assert not pub.failing and pub.retrying == 0 and bus.healthy
    assert await pub.publish(_env(100), alive=lambda: True)


async def test_a_record_too_large_from_the_bus_is_raised_without_retrying() -> None:
    bus = MemoryBus(max_record_bytes=4096)
    pub = Publisher(bus.publish, 1 << 20)
    with pytest.raises(RecordTooLarge):
        await pub.publish(_env(6000), alive=lambda: True)
    assert not pub.failing and pub.retrying == 0 and bus.healthy

"""Frame parsing and action checks, per version (RELIABILITY rows 15, 20-29)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from services.gateway import frames
from services.gateway.frames import Call, Error, Ignore, Reply, Result

V16, V201, V21 = "1.6", "2.0.1", "2.1"
DEPTH = 32


def err(frame: frames.Frame) -> list:
    assert isinstance(frame, Reply), frame
    out = orjson.loads(frame.text)
    assert out[0] == 4 and len(out) == 5
    return out


def call(version: str, action: str, payload: object, mid: str = "m1") -> frames.Call:
    text = orjson.dumps([2, mid, action, payload]).decode()
    parsed = frames.parse(version, text, DEPTH)
    assert isinstance(parsed, Call)
    return parsed


def checked(version: str, action: str, payload: object, *, station_side: bool = True, csms_side: bool = False) -> list | None:
    out = frames.check_call(version, call(version, action, payload), station_side, csms_side)
    return None if out is None else orjson.loads(out)


@pytest.mark.parametrize("version,code", [(V16, "GenericError"), (V201, "RpcFrameworkError"), (V21, "RpcFrameworkError")])
def test_a_non_json_frame_gets_the_versions_framework_error_with_id_minus_one(version: str, code: str) -> None:
    assert err(frames.parse(version, "this is not json", DEPTH))[:3] == [4, "-1", code]


@pytest.mark.parametrize("version,code", [(V16, "ProtocolError"), (V201, "RpcFrameworkError")])
@pytest.mark.parametrize("text,mid", [('[2,"a"]', "a"), ('{"a":1}', "-1"), ("42", "-1"), ('[2]', "-1"), ('[2,"a","Heartbeat"]', "a"), ('["2","a","Heartbeat",{}]', "a")])
def test_a_frame_of_the_wrong_shape_is_a_protocol_or_framework_error(version: str, code: str, text: str, mid: str) -> None:
    assert err(frames.parse(version, text, DEPTH))[:3] == [4, mid, code]


def test_a_call_with_five_elements_is_a_shape_error() -> None:
    assert err(frames.parse(V201, '[2,"a","Heartbeat",{},1]', DEPTH))[:3] == [4, "a", "RpcFrameworkError"]


@pytest.mark.parametrize("version", [V16, V21])
def test_an_unknown_message_type_is_ignored_by_16_and_21(version: str) -> None:
    assert isinstance(frames.parse(version, '[7,"a","X",{}]', DEPTH), Ignore)


def test_an_unknown_message_type_is_message_type_not_supported_in_201() -> None:
    assert err(frames.parse(V201, '[7,"a","X",{}]', DEPTH))[:3] == [4, "a", "MessageTypeNotSupported"]


@pytest.mark.parametrize("mid_json,echo", [('"' + "x" * 37 + '"', "x" * 37), ("5", "-1"), ("null", "-1"), ('""', "-1")])
@pytest.mark.parametrize("version,code", [(V16, "TypeConstraintViolation"), (V201, "RpcFrameworkError"), (V21, "RpcFrameworkError")])
def test_a_message_id_that_is_not_a_short_string_is_refused(mid_json: str, echo: str, version: str, code: str) -> None:
    out = err(frames.parse(version, f'[2,{mid_json},"Heartbeat",{{}}]', DEPTH))
    assert out[:3] == [4, echo, code]


def test_a_36_character_id_is_accepted() -> None:
    assert isinstance(frames.parse(V201, '[2,"' + "x" * 36 + '","Heartbeat",{}]', DEPTH), Call)


def test_results_and_errors_from_the_station_are_classified() -> None:
    assert frames.parse(V16, '[3,"a",{"status":"Accepted"}]', DEPTH) == Result("a", {"status": "Accepted"})
    assert frames.parse(V16, '[4,"a","NotSupported","nope",{}]', DEPTH) == Error("a", "NotSupported", "nope", {})
    assert isinstance(frames.parse(V21, '[5,"a","InternalError","x",{}]', DEPTH), Error)
    assert isinstance(frames.parse(V21, '[6,"a","NotifyPeriodicEventStream",{}]', DEPTH), Ignore)


@pytest.mark.parametrize("version,code", [(V16, "FormationViolation"), (V201, "FormatViolation")])
def test_json_nested_deeper_than_the_limit_is_a_format_violation(version: str, code: str) -> None:
    deep = "[" * 100 + "]" * 100
    assert err(frames.parse(version, f'[2,"a","DataTransfer",{{"vendorId":"v","data":{deep}}}]', DEPTH))[:3] == [4, "a", code]


@pytest.mark.parametrize("version,code", [(V16, "GenericError"), (V201, "RpcFrameworkError")])
def test_json_nested_100k_levels_deep_is_unreadable_not_a_crash(version: str, code: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert err(frames.parse(version, f'[2,"a","DataTransfer",{deep}]', DEPTH))[:3] == [4, "-1", code]


def test_many_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = orjson.dumps([2, "a", "DataTransfer", {"vendorId": "v", "data": "{[" * 1000}]).decode()
    assert isinstance(frames.parse(V16, text, DEPTH), Call)


def test_the_depth_walk_is_iterative() -> None:
    node: list = []
    root = node
    for _ in range(5000):
        child: list = []
        node.append(child)
        node = child
    assert frames.depth_exceeds(root, 32) and not frames.depth_exceeds([[1], {"a": [2]}], 3)


@pytest.mark.parametrize("version", [V16, V201])
@pytest.mark.parametrize("action", ["Foo", "heartbeat", "HEARTBEAT"])
def test_an_unknown_or_wrong_case_action_is_not_implemented(version: str, action: str) -> None:
    assert checked(version, action, {}, station_side=False)[2] == "NotImplemented"  # type: ignore[index]


def test_an_action_that_only_goes_csms_to_station_is_not_supported() -> None:
    assert checked(V16, "RemoteStartTransaction", {"idTag": "x"}, station_side=False, csms_side=True)[2] == "NotSupported"  # type: ignore[index]


@pytest.mark.parametrize("version,code", [(V16, "FormationViolation"), (V201, "FormatViolation")])
@pytest.mark.parametrize("payload", [None, [], "x", 1])
def test_a_payload_that_is_not_an_object_is_a_format_violation(version: str, code: str, payload: object) -> None:
    assert checked(version, "Heartbeat", payload)[2] == code  # type: ignore[index]


BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}


@pytest.mark.parametrize(
    "version,action,payload,code",
    [
        (V16, "BootNotification", {"chargePointVendor": "V"}, "OccurenceConstraintViolation"),
        (V201, "BootNotification", {"reason": "PowerUp"}, "OccurrenceConstraintViolation"),
        (V21, "BootNotification", {"reason": "PowerUp"}, "OccurrenceConstraintViolation"),
        (V16, "StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Available"}, "TypeConstraintViolation"),
        (V201, "StatusNotification", {"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": "1", "connectorId": 1}, "TypeConstraintViolation"),
        (V16, "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}, "PropertyConstraintViolation"),
        (V201, "BootNotification", {**BOOT201, "reason": "Bored"}, "PropertyConstraintViolation"),
        (V16, "BootNotification", {**BOOT16, "extra": 1}, "FormationViolation"),
        (V201, "BootNotification", {**BOOT201, "extra": 1}, "FormatViolation"),
        (V16, "BootNotification", {**BOOT16, "chargePointVendor": "V" * 21}, "TypeConstraintViolation"),
        (V16, "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": "yesterday"}, "PropertyConstraintViolation"),
        # Transaction messages are lenient, but not about what identifies the transaction.
        (V16, "StartTransaction", {"connectorId": 1, "meterStart": 0, "timestamp": "yesterday"}, "OccurenceConstraintViolation"),
        (V16, "StopTransaction", {"transactionId": "5", "meterStop": 0, "timestamp": "2026-01-01T00:00:00Z"}, "TypeConstraintViolation"),
    ],
)
def test_schema_violations_map_to_the_versions_error_code(version: str, action: str, payload: dict, code: str) -> None:
    assert checked(version, action, payload)[2] == code  # type: ignore[index]


@pytest.mark.parametrize("ts", ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123+02:00", "2026-01-01T00:00:00"])
def test_timestamps_with_z_offset_or_no_zone_are_valid(ts: str) -> None:
    assert checked(V16, "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": ts}) is None


def test_a_valid_call_passes_all_checks() -> None:
    assert checked(V16, "BootNotification", BOOT16) is None
    assert checked(V201, "BootNotification", BOOT201) is None


def test_error_descriptions_are_capped_at_255_characters() -> None:
    out = checked(V201, "BootNotification", {**BOOT201, **{f"k{i}": 1 for i in range(200)}})
    assert out is not None and len(out[3]) <= 255


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_frame_parses_to_a_frame_without_raising(text: str) -> None:
    for version in (V16, V201, V21):
        assert isinstance(frames.parse(version, text, DEPTH), (Call, Result, Error, Reply, Ignore))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=5))
def test_any_json_array_parses_and_checks_without_raising(msg: list) -> None:
    text = orjson.dumps(msg).decode()
    for version in (V16, V201):
        frame = frames.parse(version, text, DEPTH)
        if isinstance(frame, Call):
            frames.check_call(version, frame, frame.action == "Heartbeat", False)

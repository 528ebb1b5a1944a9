"""Commands go to the owning gateway's partition and the API waits for the station's answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime, timezone

from prometheus_client import REGISTRY

from services.common import kinds, topics
from services.common.codec import Command
from services.stations.documents import command_to_doc
from services.stations.domain.commands import CommandRecord

from .builders import Api, FakeGateway, answering, eventually

# csms.commands.v1 after `api.a_station`: POST /stations announces a new station on every
# partition (a `_Revoke` with close false: gateways drop a cached "unknown id")
CREATED = [0] * 8


async def test_a_command_for_an_unknown_station_is_a_404(api: Api) -> None:
    status, body = await api.post("/api/v1/stations/NOPE/commands", {"type": "Reset", "reset_type": "Soft"})
    assert status == 404 and "error" in body


async def test_a_command_for_a_station_that_is_not_connected_is_409_station_offline(api: Api) -> None:
    await api.a_station("CP-1")
    status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "Reset", "reset_type": "Soft"})
    assert status == 409
    assert body == {"status": "StationOffline", "error": "station is not connected"}
    epoch = await api.connected("CP-1")
    await api.rt.store.release_station("CP-1", "gateway-3", epoch)
    status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "Reset", "reset_type": "Soft"})
    assert status == 409 and body["status"] == "StationOffline"


async def test_invalid_commands_are_400_before_anything_is_sent(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    cases = [
        ({"type": "Explode"}, "type"),
        ({}, "type"),
        ({"type": "Reset"}, "reset_type"),
        ({"type": "Reset", "reset_type": "Gentle"}, "reset_type"),
        ({"type": "RemoteStart"}, "id_token"),
        ({"type": "RemoteStop"}, "transaction_id"),
        ({"type": "ChangeAvailability", "availability": "Maybe"}, "availability"),
        ({"type": "TriggerMessage"}, "requested_message"),
        ({"type": "ChangeConfiguration", "key": "HeartbeatInterval"}, "value"),
        ({"type": "ChangeConfiguration", "key": "HeartbeatInterval", "value": {"a": 1}}, "value"),
        ({"type": "SetChargingProfile", "connector_id": 1}, "charging_profile"),
        ({"type": "SetVariables", "variables": []}, "variables"),
        ({"type": "GetVariables", "variables": [{"component": "X"}]}, "variables[0].variable"),
        ({"type": "UnlockConnector", "connector_id": "1"}, "connector_id"),
        ({"type": "ClearCache", "timeout": 121}, "timeout"),
        ({"type": "ClearCache", "timeout": 0}, "timeout"),
        ({"type": "DataTransfer", "vendor_id": "x", "data": 10**30}, "data"),  # beyond 64 bits
        ({"type": "DataTransfer", "vendor_id": "x", "data": [1.0, float("nan")]}, "data"),
    ]
    for body, field in cases:
        status, answer = await api.post("/api/v1/stations/CP-1/commands", body)
        assert status == 400, (body, answer)
        assert field in answer["details"], (body, answer)
    assert api.rt.bus.end_offsets(topics.COMMANDS) == CREATED  # type: ignore[attr-defined]


async def test_a_command_reaches_the_owners_partition_and_returns_the_station_answer(api: Api) -> None:
    await api.a_station("CP-1")
    epoch = await api.connected("CP-1", "gateway-3")
    gw = await FakeGateway(api.rt, "gateway-3", answering("Accepted", {"status": "Accepted"})).start()
    try:
        status, body = await api.post(
            "/api/v1/stations/CP-1/commands", {"type": "RemoteStart", "id_token": "TOKEN1", "connector_id": 1}
        )
    finally:
        await gw.stop()
    assert status == 200, body
    assert body["status"] == "Accepted" and body["response"] == {"status": "Accepted"}
    [(partition, cmd)] = gw.received
    assert partition == 3
    assert api.rt.bus.end_offsets(topics.COMMANDS) == [0, 0, 0, 1, 0, 0, 0, 0]  # type: ignore[attr-defined]
    assert isinstance(cmd, Command)
    assert body["command_id"] == cmd.command_id
    assert (cmd.station_id, cmd.command_type, cmd.issuer) == ("CP-1", "RemoteStart", "api")
    assert (cmd.target_gateway_id, cmd.target_epoch) == ("gateway-3", epoch)
    assert json.loads(cmd.params_json) == {"id_token": "TOKEN1", "connector_id": 1}
    assert 1.9 <= (cmd.expires_at - cmd.issued_at).total_seconds() <= 2.1  # settings.command_timeout_s


async def test_the_station_response_comes_back_in_snake_case_as_given_by_the_gateway(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1", "gateway-0")
    response = {"configuration_key": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}], "unknown_key": []}
    gw = await FakeGateway(api.rt, "gateway-0", answering("Accepted", response)).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "GetConfiguration", "keys": ["HeartbeatInterval"]})
    finally:
        await gw.stop()
    assert status == 200 and body["response"] == response
    assert gw.received[0][0] == 0


async def test_a_rejection_by_the_station_is_still_a_200_with_its_status(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, answer=answering("Rejected")).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "Reset", "reset_type": "Hard"})
    finally:
        await gw.stop()
    assert status == 200 and body["status"] == "Rejected"


async def test_a_gateway_that_lost_the_station_makes_it_a_409_station_offline(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, answer=answering("StationOffline", {})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "ClearCache"})
    finally:
        await gw.stop()
    assert status == 409 and body["status"] == "StationOffline" and body["command_id"]


async def test_a_command_the_station_does_not_support_is_a_400_not_supported(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, answer=answering("NotSupported", {}, error_code="NotImplemented")).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "GetLog"})
    finally:
        await gw.stop()
    assert status == 400 and body["status"] == "NotSupported" and body["error_code"] == "NotImplemented"


async def test_a_gateway_timeout_is_a_504_and_an_invalid_payload_for_the_version_a_400(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, answer=answering("Timeout", {}, error_description="no answer within 30 s")).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "ClearCache"})
    finally:
        await gw.stop()
    assert status == 504 and body["status"] == "Timeout" and body["command_id"]
    gw = await FakeGateway(api.rt, answer=answering("Rejected", {}, error_code="InvalidCommand")).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "RemoteStop", "transaction_id": "x"})
    finally:
        await gw.stop()
    assert status == 400 and body["error_code"] == "InvalidCommand"


async def test_a_station_that_never_answers_gives_504_and_the_late_result_is_readable(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, answer=None).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "Reset", "reset_type": "Soft", "timeout": 0.2})
    finally:
        await gw.stop()
    assert status == 504
    assert body["status"] == "Timeout" and body["command_id"] == gw.received[0][1].command_id
    assert api.service.waiter.pending == 0
    command_id = body["command_id"]
    assert (await api.get(f"/api/v1/commands/{command_id}"))[0] == 404
    # what the sessions processor records when the answer comes late
    record = CommandRecord(
        command_id=command_id, station_id="CP-1", command_type="Reset", ocpp_action="Reset",
        status="Accepted", response={"status": "Accepted"}, late_reply=True, version=3,
        issued_at=datetime(2026, 11, 28, 4, 21, 16, 4000, tzinfo=timezone.utc),
    )
    await api.rt.store.put_doc(kinds.COMMAND, command_id, command_to_doc(record), parent="CP-1", version=3)
    status, body = await api.get(f"/api/v1/commands/{command_id}")
    assert status == 200
    assert body["status"] == "Accepted" and body["response"] == {"status": "Accepted"} and body["late_reply"] is True
    assert body["issued_at"] == "2026-11-28T04:21:16.004Z" and body["command_type"] == "Reset"
    assert "version" not in body  # the record's internal version is not part of the view


async def test_results_of_other_api_instances_commands_are_ignored(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")

    gw = await FakeGateway(api.rt, answer=lambda c: answering("Accepted")(replace(c, command_id="not-ours"))).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "ClearCache", "timeout": 0.2})
    finally:
        await gw.stop()
    assert status == 504


async def test_command_outcomes_are_counted_by_type_and_status(api: Api) -> None:
    def count(status: str) -> float:
        return REGISTRY.get_sample_value("csms_api_commands_total", {"type": "DataTransfer", "status": status}) or 0.0

    before = count("Accepted"), count("StationOffline")
    await api.a_station("CP-1")
    await api.post("/api/v1/stations/CP-1/commands", {"type": "DataTransfer", "vendor_id": "x"})
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, answer=answering("Accepted")).start()
    try:
        await api.post("/api/v1/stations/CP-1/commands", {"type": "DataTransfer", "vendor_id": "x"})
    finally:
        await gw.stop()
    assert (count("Accepted"), count("StationOffline")) == (before[0] + 1, before[1] + 1)


async def test_the_result_waiter_is_ready_and_uses_its_own_consumer_group(api: Api) -> None:
    assert api.service.waiter.group.startswith("csms-api-")
    assert await eventually(lambda: _ready(api))


async def _ready(api: Api) -> bool:
    return api.service.ready()


async def test_an_owner_beyond_the_command_partitions_is_a_503_not_a_crash(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1", "gateway-8")  # the topic has partitions 0..7
    status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "ClearCache"})
    assert status == 503 and "CSMS_COMMANDS_PARTITIONS" in body["error"]


async def test_a_command_waiting_when_the_api_stops_is_answered_503_at_once(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    gw = await FakeGateway(api.rt, answer=None).start()
    try:
        request = asyncio.create_task(api.post("/api/v1/stations/CP-1/commands", {"type": "ClearCache", "timeout": 60}))
        assert await eventually(lambda: _has_pending(api))
        started = asyncio.get_running_loop().time()
        await api.service.stop()
        status, body = await request
    finally:
        await gw.stop()
    assert asyncio.get_running_loop().time() - started < 3
    assert status == 503 and body["status"] == "Unknown" and body["command_id"]


async def _has_pending(api: Api) -> bool:
    return api.service.waiter.pending > 0


async def test_an_owner_whose_gateway_id_has_no_ordinal_is_a_503_deployment_error(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1", "gateway-east")  # the router cannot tell its command partition
    status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "ClearCache"})
    assert status == 503 and "no ordinal" in body["error"]
    assert api.rt.bus.end_offsets(topics.COMMANDS) == CREATED  # type: ignore[attr-defined]


async def test_the_command_types_are_the_gateways_builder_table(api: Api) -> None:
    from services.api.commands import COMMAND_TYPES
    from services.common.ocpp import commands as vocabulary

    assert COMMAND_TYPES == vocabulary.COMMAND_TYPES
    assert "SetChargingLimit" in COMMAND_TYPES and "_Fence" not in COMMAND_TYPES
    await api.a_station("CP-1")
    status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "_Fence", "epoch": 1})
    assert status == 400 and "type" in body["details"]


async def test_a_charging_limit_is_checked_before_it_is_sent_and_then_sent_as_given(api: Api) -> None:
    await api.a_station("CP-1")
    await api.connected("CP-1")
    cases = [
        ({"type": "SetChargingLimit", "purpose": "tx", "evse_id": 1, "limit_a": "16", "profile_id": 1}, "transaction_id"),
        ({"type": "SetChargingLimit", "purpose": "max", "limit_a": "16", "profile_id": 1}, "purpose"),
        ({"type": "SetChargingLimit", "purpose": "default", "limit_a": "-1", "profile_id": 1}, "limit_a"),
        ({"type": "SetChargingLimit", "purpose": "default", "limit_a": "lots", "profile_id": 1}, "limit_a"),
        ({"type": "SetChargingLimit", "purpose": "default", "limit_a": 16}, "profile_id"),
        ({"type": "SetChargingLimit", "purpose": "default", "limit_a": 16, "profile_id": 1, "number_phases": 4}, "number_phases"),
    ]
    for body, field in cases:
        status, answer = await api.post("/api/v1/stations/CP-1/commands", body)
        assert status == 400, (body, answer)
        assert field in answer["details"], (body, answer)
    assert api.rt.bus.end_offsets(topics.COMMANDS) == CREATED  # type: ignore[attr-defined]

    limit = {"purpose": "default", "evse_id": 0, "limit_a": "10.5", "number_phases": None, "profile_id": 9}
    gw = await FakeGateway(api.rt, "gateway-3", answering("Accepted", {"status": "Accepted"})).start()
    try:
        status, body = await api.post("/api/v1/stations/CP-1/commands", {"type": "SetChargingLimit", **limit})
    finally:
        await gw.stop()
    assert status == 200, body
    [(_, cmd)] = gw.received
    assert cmd.command_type == "SetChargingLimit" and json.loads(cmd.params_json) == limit

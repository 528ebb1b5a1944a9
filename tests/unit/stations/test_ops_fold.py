"""`apply_ops` (pure): each event type, idempotent redelivery, out-of-order connector
statuses, and outages opened, closed and re-caused across connect / fault / unavailable
sequences (ADR 016 §6); and the STATION_OPS document round trip."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from itertools import permutations
from typing import Any

import orjson

from services.common import events as ev
from services.stations.documents import station_ops_from_doc, station_ops_to_doc
from services.stations.domain import (
    ChargingLimit,
    FirmwareState,
    LogState,
    MeterReading,
    OpenOutage,
    OpsChange,
    Outage,
    StationOps,
    apply_ops,
    down_cause,
)
from tests.unit.sessions.builders import NOW, STATION, an_envelope, at


def fold(*events: ev.Envelope, ops: StationOps | None = None) -> tuple[StationOps, list[Outage]]:
    closed: list[Outage] = []
    state = ops if ops is not None else StationOps(STATION)
    for e in events:
        change = apply_ops(state, e, NOW)
        state = change.ops
        if change.closed is not None:
            closed.append(change.closed)
    return state, closed


def connected(epoch: int, minute: float, *, profile: int = 2, gateway: str = "gateway-0") -> ev.Envelope:
    return an_envelope(ev.StationConnected(epoch=epoch, remote_addr="10.0.0.7", subprotocol="ocpp2.0.1",
                                           security_profile=profile),
                       station_time=None, received_at=at(minute), gateway_id=gateway)


def disconnected(epoch: int, minute: float) -> ev.Envelope:
    return an_envelope(ev.StationDisconnected(epoch=epoch, close_code=1006), station_time=None, received_at=at(minute))


def connector(status: str, minute: float, evse: int = 1, conn: int = 1, *, station_minute: float | None = None) -> ev.Envelope:
    st = at(minute if station_minute is None else station_minute)
    return an_envelope(ev.ConnectorStatus(evse_id=evse, connector_id=conn, status=status), station_time=st,
                       received_at=at(minute))


def issued(action: str, payload: dict[str, Any], minute: float, command_id: str = "cmd-1") -> ev.Envelope:
    return an_envelope(ev.CommandIssued(command_id=command_id, command_type=action, ocpp_action=action,
                                        payload_json=json.dumps(payload)), station_time=None, received_at=at(minute))


def result(action: str, status: str, request: dict[str, Any], minute: float, command_id: str = "cmd-1") -> ev.Envelope:
    return an_envelope(ev.CommandResult(command_id=command_id, command_type=action, status=status, ocpp_action=action,
                                        request_json=json.dumps(request)), station_time=None, received_at=at(minute))


def booted(version: str, minute: float) -> ev.Envelope:
    return an_envelope(ev.StationBooted(vendor="ACME", model="A1", firmware_version=version), received_at=at(minute))


# -- connection ----------------------------------------------------------------------------
def test_a_connection_keeps_its_epoch_time_address_profile_and_gateway() -> None:
    ops, _ = fold(connected(3, 1, profile=3, gateway="gateway-2"))
    c = ops.connectivity
    assert (c.connected, c.epoch, c.connected_at, c.remote_addr, c.security_profile, c.gateway_id) == (
        True, 3, at(1), "10.0.0.7", 3, "gateway-2")
    assert (ops.version, ops.updated_at) == (1, NOW)


def test_connection_epochs_follow_the_sessions_rule_in_any_order() -> None:
    events = [connected(3, 0), disconnected(3, 2), connected(4, 3), disconnected(2, 4)]
    results = set()
    for p in permutations(events):
        c = fold(*p)[0].connectivity
        results.add((c.connected, c.epoch, c.disconnected_epoch, c.connected_at))
    assert results == {(True, 4, 3, at(3))}
    # a Connected redelivered after its own Disconnected stays disconnected
    assert fold(connected(3, 0), disconnected(3, 1), connected(3, 0))[0].connectivity.connected is False


# -- connectors ----------------------------------------------------------------------------
def test_connector_statuses_keep_the_latest_by_station_time_whatever_the_order() -> None:
    events = [connector("Occupied", 10), connector("Available", 5), connector("Faulted", 7, conn=2)]
    for p in permutations(events):
        ops, _ = fold(*p)
        assert dict(ops.connectivity.connectors) == {"1/1": ("Occupied", at(10)), "1/2": ("Faulted", at(7))}


def test_a_late_arriving_older_status_changes_nothing() -> None:
    ops, _ = fold(connected(1, 0), connector("Occupied", 10))
    # received later, stamped earlier by the station (an offline queue)
    assert apply_ops(ops, connector("Faulted", 12, station_minute=8), NOW).ops is ops


# -- boot, firmware ------------------------------------------------------------------------
FW_201 = {"requestId": 42, "firmware": {"location": "https://fw.example/a.bin", "retrieveDateTime": "2026-11-28T10:00:00Z"}}


def test_an_update_firmware_is_requested_with_the_version_booted_before() -> None:
    ops, _ = fold(booted("1.0", 0), booted("0.9", -5), issued("UpdateFirmware", FW_201, 1))
    assert ops.boot_firmware_version == "1.0" and ops.booted_at == at(0)
    assert ops.firmware == FirmwareState(
        status="Requested", request_id=42, location="https://fw.example/a.bin", signed=False, requested_at=at(1),
        command_id="cmd-1", version_before="1.0",
    )


def test_a_16_update_and_a_signed_update_are_requested_too() -> None:
    ops, _ = fold(issued("UpdateFirmware", {"location": "ftp://fw/1.bin", "retrieveDate": "x"}, 1))
    assert ops.firmware is not None and (ops.firmware.request_id, ops.firmware.location, ops.firmware.signed) == (
        None, "ftp://fw/1.bin", False)
    signed = {"requestId": 7, "firmware": {"location": "https://fw/2.bin", "signingCertificate": "C", "signature": "S"}}
    ops, _ = fold(issued("SignedUpdateFirmware", signed, 2, "cmd-2"), ops=ops)
    assert ops.firmware is not None and (ops.firmware.request_id, ops.firmware.signed, ops.firmware.command_id) == (
        7, True, "cmd-2")


def firmware_status(status: str, minute: float, request_id: int | None = 42) -> ev.Envelope:
    return an_envelope(ev.FirmwareStatus(status=status, request_id=request_id), station_time=at(minute - 0.5),
                       received_at=at(minute))


def test_firmware_statuses_follow_the_request_and_the_latest_wins() -> None:
    ops, _ = fold(issued("UpdateFirmware", FW_201, 1), firmware_status("Downloading", 2), firmware_status("Installed", 5),
                  firmware_status("Downloaded", 3))
    fw = ops.firmware
    assert fw is not None
    assert (fw.status, fw.request_id, fw.updated_at, fw.station_time) == ("Installed", 42, at(5), at(4.5))
    assert (fw.location, fw.requested_at, fw.command_id) == ("https://fw.example/a.bin", at(1), "cmd-1")


def test_a_status_of_another_request_updates_and_keeps_its_own_request_id() -> None:
    ops, _ = fold(issued("UpdateFirmware", FW_201, 1), firmware_status("DownloadFailed", 2, request_id=41))
    fw = ops.firmware
    assert fw is not None and (fw.status, fw.request_id, fw.location) == ("DownloadFailed", 41, "https://fw.example/a.bin")
    # a 1.6 FirmwareStatusNotification carries no request id: the request's stays
    ops, _ = fold(issued("UpdateFirmware", FW_201, 1), firmware_status("Downloading", 2, request_id=None))
    assert ops.firmware is not None and ops.firmware.request_id == 42


def test_a_status_without_a_request_seen_starts_the_state() -> None:
    ops, _ = fold(firmware_status("Idle", 2, request_id=None))
    assert ops.firmware == FirmwareState("Idle", None, updated_at=at(2), station_time=at(1.5))


def test_a_redelivered_or_older_update_firmware_changes_nothing() -> None:
    ops, _ = fold(issued("UpdateFirmware", FW_201, 1), firmware_status("Downloading", 2))
    assert apply_ops(ops, issued("UpdateFirmware", FW_201, 1), NOW).ops is ops
    assert apply_ops(ops, issued("UpdateFirmware", FW_201, 0.5, "cmd-0"), NOW).ops is ops
    newer = apply_ops(ops, issued("UpdateFirmware", {**FW_201, "requestId": 43}, 3, "cmd-3"), NOW).ops
    assert newer.firmware is not None and (newer.firmware.status, newer.firmware.request_id) == ("Requested", 43)


# -- logs ----------------------------------------------------------------------------------
def test_a_get_log_is_requested_and_its_statuses_follow() -> None:
    payload = {"logType": "SecurityLog", "requestId": 9, "log": {"remoteLocation": "https://csms/uploads/t/"}}
    ops, _ = fold(issued("GetLog", payload, 1),
                  an_envelope(ev.LogStatus(status="Uploading", request_id=9), received_at=at(2)),
                  an_envelope(ev.LogStatus(status="Uploaded", request_id=9), received_at=at(3)))
    assert ops.log == LogState("Uploaded", 9, "SecurityLog", requested_at=at(1), command_id="cmd-1", updated_at=at(3))


def test_a_16_get_diagnostics_is_a_diagnostics_log_without_request_id() -> None:
    ops, _ = fold(issued("GetDiagnostics", {"location": "ftp://x/"}, 1),
                  an_envelope(ev.LogStatus(status="Uploaded", diagnostics=True), received_at=at(2)))
    assert ops.log == LogState("Uploaded", None, "DiagnosticsLog", requested_at=at(1), command_id="cmd-1", updated_at=at(2))


# -- availability --------------------------------------------------------------------------
def test_accepted_or_scheduled_change_availability_sets_the_requested_availability() -> None:
    ops, _ = fold(
        result("ChangeAvailability", "Accepted", {"connectorId": 0, "type": "Inoperative"}, 1, "c1"),
        result("ChangeAvailability", "Scheduled", {"connectorId": 2, "type": "Inoperative"}, 2, "c2"),
        result("ChangeAvailability", "Accepted", {"operationalStatus": "Operative", "evse": {"id": 3}}, 3, "c3"),
        result("ChangeAvailability", "Accepted", {"operationalStatus": "Operative"}, 4, "c4"),
        result("ChangeAvailability", "Rejected", {"operationalStatus": "Inoperative", "evse": {"id": 1}}, 5, "c5"),
        result("ChangeAvailability", "Timeout", {"connectorId": 1, "type": "Inoperative"}, 6, "c6"),
    )
    assert dict(ops.availability) == {"0": "Operative", "2": "Inoperative", "3": "Operative"}


def test_a_result_without_its_request_changes_nothing() -> None:
    env = an_envelope(ev.CommandResult(command_id="c", command_type="ChangeAvailability", status="Accepted",
                                       ocpp_action="ChangeAvailability"))
    ops = StationOps(STATION)
    assert apply_ops(ops, env, NOW).ops is ops


# -- meters, limits, security --------------------------------------------------------------
def sample(minute: float, value: float, measurand: str = "Voltage", phase: str = "L1", unit: str = "V",
           raw: str = "") -> ev.MeterSample:
    return ev.MeterSample(timestamp=at(minute), value=value, unit=unit, measurand=measurand, phase=phase, raw_value=raw)


def test_meter_values_outside_transactions_keep_the_latest_per_evse_measurand_and_phase() -> None:
    ops, _ = fold(
        an_envelope(ev.MeterValues(evse_id=1, samples=(sample(5, 231.0), sample(5, 229.0, phase="L2")))),
        an_envelope(ev.MeterValues(evse_id=1, samples=(sample(3, 240.0), sample(6, 0, raw="NaN")))),
        an_envelope(ev.MeterValues(evse_id=0, samples=(sample(4, 50.0, "Frequency", "", "Hz"),))),
        an_envelope(ev.MeterValues(transaction_id="tx-1", evse_id=1, samples=(sample(9, 999.0),))),
    )
    assert dict(ops.meters) == {
        "1/Voltage/L1": MeterReading(231.0, "V", at(5)),
        "1/Voltage/L2": MeterReading(229.0, "V", at(5)),
        "0/Frequency/": MeterReading(50.0, "Hz", at(4)),
    }


def test_charging_limits_are_set_and_cleared_per_evse_and_source() -> None:
    schedule = ev.ChargingSchedule(charging_rate_unit="W", periods=(ev.SchedulePeriod(0, 11000.0),))
    ops, _ = fold(
        an_envelope(ev.ChargingLimitSet(source="EMS", is_grid_critical=True, evse_id=1, schedules=(schedule,)),
                    received_at=at(1)),
        an_envelope(ev.ChargingLimitSet(source="SO", evse_id=2), received_at=at(2)),
    )
    assert dict(ops.charging_limits) == {
        "1": ChargingLimit("EMS", True, 11000.0, "W", at(1)), "2": ChargingLimit("SO", None, None, "", at(2)),
    }
    other_source, _ = fold(an_envelope(ev.ChargingLimitCleared(source="SO", evse_id=1), received_at=at(3)), ops=ops)
    assert other_source.charging_limits == ops.charging_limits
    set_again = ev.ChargingLimitSet(source="EMS", is_grid_critical=True, evse_id=1, schedules=(schedule,))
    cleared, _ = fold(an_envelope(ev.ChargingLimitCleared(source="EMS", evse_id=0), received_at=at(3)), ops=ops)
    assert list(cleared.charging_limits) == ["2"]
    # the limit set before the clear, delivered again, stays cleared; a newer one is set
    assert apply_ops(cleared, an_envelope(set_again, received_at=at(1)), NOW).ops is cleared
    newer, _ = fold(an_envelope(set_again, received_at=at(4)), ops=cleared)
    assert newer.charging_limits["1"] == ChargingLimit("EMS", True, 11000.0, "W", at(4))


def test_the_last_security_event_is_kept() -> None:
    ops, _ = fold(an_envelope(ev.SecurityEvent(type="FirmwareUpdated"), received_at=at(2)),
                  an_envelope(ev.SecurityEvent(type="ResetOrReboot"), received_at=at(1)))
    assert (ops.last_security_event, ops.last_security_event_at) == ("FirmwareUpdated", at(2))


# -- idempotency ---------------------------------------------------------------------------
def all_kinds() -> list[ev.Envelope]:
    schedule = ev.ChargingSchedule(charging_rate_unit="A", periods=(ev.SchedulePeriod(0, 16.0),))
    return [
        connected(1, 0), booted("1.0", 0.1), connector("Available", 0.2), connector("Faulted", 0.3, 0, 0),
        issued("UpdateFirmware", FW_201, 1), firmware_status("Downloading", 2),
        issued("GetLog", {"logType": "DiagnosticsLog", "requestId": 3}, 3, "cmd-3"),
        an_envelope(ev.LogStatus(status="Uploading", request_id=3), received_at=at(4)),
        result("ChangeAvailability", "Accepted", {"connectorId": 1, "type": "Inoperative"}, 5, "cmd-5"),
        an_envelope(ev.MeterValues(evse_id=1, samples=(sample(6, 230.0),))),
        an_envelope(ev.ChargingLimitSet(source="EMS", evse_id=1, schedules=(schedule,)), received_at=at(7)),
        an_envelope(ev.ChargingLimitCleared(source="EMS", evse_id=1), received_at=at(8)),
        an_envelope(ev.SecurityEvent(type="StartupOfTheDevice"), received_at=at(9)),
        disconnected(1, 10),
    ]


def test_applying_any_event_again_changes_nothing_and_closes_nothing() -> None:
    ops = StationOps(STATION)
    for e in all_kinds():
        ops = apply_ops(ops, e, NOW).ops
        again = apply_ops(ops, e, NOW + timedelta(hours=1))
        assert again == OpsChange(ops) and again.ops is ops, e.type_name


def test_replaying_a_whole_batch_on_its_result_changes_nothing() -> None:
    events = all_kinds()
    ops, _ = fold(*events)
    assert fold(*events, ops=ops) == (ops, [])


def test_events_the_state_does_not_fold_return_it_unchanged() -> None:
    ops = StationOps(STATION)
    for body in (ev.Heartbeat(), ev.Authorization(id_token="T", status="Accepted"), ev.DataTransfer(vendor_id="V"),
                 ev.ReservationStatus(reservation_id=1, status="Expired")):
        assert apply_ops(ops, an_envelope(body), NOW).ops is ops
    fresh = apply_ops(None, an_envelope(ev.Heartbeat()), NOW).ops
    assert (fresh.station_id, fresh.version) == (STATION, 0)


# -- outages -------------------------------------------------------------------------------
def test_a_station_never_seen_connected_has_no_outage() -> None:
    ops, closed = fold(connector("Faulted", 1))
    assert (ops.outage, closed) == (None, [])


def test_a_disconnect_opens_an_offline_outage_and_the_reconnect_closes_it() -> None:
    ops, closed = fold(connected(1, 0), disconnected(1, 10))
    assert (ops.outage, closed) == (OpenOutage("offline", at(10)), [])
    ops, closed = fold(connected(2, 25), ops=ops)
    assert (ops.outage, closed) == (None, [Outage("offline", at(10), at(25))])


def test_every_connector_faulted_is_a_faulted_outage_and_one_available_ends_it() -> None:
    ops, closed = fold(connected(1, 0), connector("Available", 1, conn=1), connector("Faulted", 2, conn=2),
                       connector("Faulted", 3, conn=1))
    assert (ops.outage, closed) == (OpenOutage("faulted", at(3)), [])
    ops, closed = fold(connector("Available", 7, conn=2), ops=ops)
    assert (ops.outage, closed) == (None, [Outage("faulted", at(3), at(7))])


def test_all_connectors_unavailable_is_unavailable_and_faulted_wins_in_a_mix() -> None:
    ops, closed = fold(connected(1, 0), connector("Available", 1, conn=2), connector("Unavailable", 1.5, conn=1))
    assert (ops.outage, closed) == (None, [])  # one connector still in service
    ops, closed = fold(connector("Unavailable", 2, conn=2), ops=ops)
    assert (ops.outage, closed) == (OpenOutage("unavailable", at(2)), [])
    ops, closed = fold(connector("Faulted", 4, conn=2), ops=ops)
    assert (ops.outage, closed) == (OpenOutage("faulted", at(4)), [Outage("unavailable", at(2), at(4))])


def test_the_station_level_connector_decides_alone() -> None:
    ops, _ = fold(connected(1, 0), connector("Available", 1), connector("Unavailable", 2, evse=0, conn=0))
    assert ops.outage == OpenOutage("unavailable", at(2))
    ops, closed = fold(connector("Faulted", 3, evse=0, conn=0), ops=ops)
    assert (ops.outage, closed) == (OpenOutage("faulted", at(3)), [Outage("unavailable", at(2), at(3))])
    ops, closed = fold(connector("Available", 5, evse=0, conn=0), ops=ops)
    assert (ops.outage, closed) == (None, [Outage("faulted", at(3), at(5))])


def test_offline_wins_over_faulted_and_the_fault_resumes_on_reconnect() -> None:
    ops, closed = fold(connected(1, 0), connector("Faulted", 1), disconnected(1, 5), connected(2, 8))
    assert closed == [Outage("faulted", at(1), at(5)), Outage("offline", at(5), at(8))]
    assert ops.outage == OpenOutage("faulted", at(8))
    # a fault reported while offline (an offline queue) does not reopen anything until reconnect
    ops, closed = fold(connected(1, 0), disconnected(1, 2), connector("Faulted", 3))
    assert (ops.outage, closed) == (OpenOutage("offline", at(2)), [])


def test_a_disconnect_of_an_older_epoch_after_a_reconnect_opens_nothing() -> None:
    ops, closed = fold(connected(1, 0), connected(2, 5, gateway="gateway-1"), disconnected(1, 6))
    assert (ops.outage, closed, ops.connectivity.connected) == (None, [], True)


def test_an_outage_never_ends_before_it_began() -> None:
    ops, _ = fold(connected(1, 0), disconnected(1, 10))
    # a reconnect received (by another gateway's clock) a little before the disconnect
    ops, closed = fold(connected(2, 9), ops=ops)
    assert closed == [Outage("offline", at(10), at(10))] and ops.outage is None


def test_down_cause_of_a_connected_station_without_connectors_is_up() -> None:
    ops, _ = fold(connected(1, 0))
    assert down_cause(ops.connectivity) is None


# -- the document --------------------------------------------------------------------------
def test_the_station_ops_document_round_trips_every_field() -> None:
    ops, _ = fold(*all_kinds()[:-1], an_envelope(ev.ChargingLimitSet(source="SO", evse_id=2), received_at=at(11)))
    ops, _ = fold(connector("Faulted", 12, conn=1), ops=ops)
    assert ops.outage is not None and ops.firmware is not None and ops.log is not None and ops.meters
    assert ops.charging_limits and ops.availability and ops.last_security_event and ops.boot_firmware_version
    doc = station_ops_to_doc(ops)
    assert station_ops_from_doc(json.loads(orjson.dumps(doc))) == ops
    assert doc["connectivity"]["connectors"]["1/1"] == {"status": "Faulted", "at": "2026-11-28T10:12:00.000Z"}
    assert doc["outage"] == {"cause": "faulted", "since": "2026-11-28T10:00:18.000Z"}  # the station-level fault


def test_a_document_without_the_newer_fields_loads() -> None:
    old = {"station_id": STATION, "version": 3, "updated_at": "2026-11-28T10:00:00.000Z",
           "connectivity": {"epoch": 2, "connectors": {"1/1": {"status": "Available", "at": "2026-11-28T10:00:00.000Z"}}}}
    ops = station_ops_from_doc(old)
    assert (ops.version, ops.connectivity.epoch, ops.connectivity.connected, ops.firmware, ops.outage) == (3, 2, True, None, None)
    assert (ops.boot_firmware_version, ops.booted_at, dict(ops.meters)) == ("", None, {})
    assert ops.connectivity.connectors["1/1"] == ("Available", datetime.fromisoformat("2026-11-28T10:00:00+00:00"))
    assert station_ops_from_doc({"station_id": STATION}) == StationOps(STATION)


def test_only_events_that_can_change_the_state_are_folded() -> None:
    from services.stations.domain import folds

    assert folds(issued("UpdateFirmware", FW_201, 1)) and folds(issued("GetLog", {}, 1))
    assert folds(result("ChangeAvailability", "Rejected", {}, 1))
    assert not folds(issued("SetChargingProfile", {"evseId": 1}, 1))
    assert not folds(result("UpdateFirmware", "Accepted", FW_201, 1))
    assert not folds(an_envelope(ev.MeterValues(transaction_id="tx-1", evse_id=1)))
    assert folds(an_envelope(ev.MeterValues(evse_id=1))) and folds(connector("Available", 1))
    assert not folds(an_envelope(ev.Heartbeat())) and not folds(an_envelope(ev.DataTransfer(vendor_id="V")))

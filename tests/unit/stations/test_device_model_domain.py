"""The device model's pure folds: report assembly (any order, redelivery), replace vs merge,
and each source of single values (through the stage's payload readers)."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

from services.common import events as ev
from services.stations.device_model import entries_of_part, event_updates, updates_of_result
from services.stations.device_model_documents import (
    inventory_from_doc,
    inventory_to_doc,
    report_from_doc,
    report_to_doc,
)
from services.stations.domain.device_model import (
    Entry,
    Inventory,
    ReportAssembly,
    ValueUpdate,
    add_report_part,
    answer_report,
    apply_report,
    apply_values,
    entry_key,
    report_requested,
)

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _t(s: int) -> datetime:
    return T0 + timedelta(seconds=s)


def _datum(component: str, variable: str, value: str, *, evse: int | None = None) -> ev.ReportDatum:
    return ev.ReportDatum(
        ev.Component(component, evse_id=evse, connector_id=1 if evse else 0), ev.Variable(variable),
        (ev.VariableAttribute("Actual", value, "ReadWrite", True), ev.VariableAttribute("MaxSet", "99", "ReadOnly")),
        ev.VariableCharacteristics("integer", "A", 0.0, 32.0),
    )


def _parts(request_id: int = 7) -> list[ev.ReportPart]:
    return [
        ev.ReportPart(request_id, 0, True, data=(_datum("EVSE", "Power", "11000", evse=1),)),
        ev.ReportPart(request_id, 1, True, data=(_datum("OCPPCommCtrlr", "HeartbeatInterval", "300"),)),
        ev.ReportPart(request_id, 2, False, data=(_datum("SampledDataCtrlr", "TxUpdatedInterval", "60"),)),
    ]


def _assemble(report: ReportAssembly, parts: list[ev.ReportPart], inv: Inventory) -> tuple[Inventory, ReportAssembly]:
    for i, p in enumerate(parts):
        report = add_report_part(report, p.seq_no, p.tbc, entries_of_part(p, _t(i + 1)), _t(i + 1))
        if report.complete and report.parts:
            inv, report = apply_report(inv, report, _t(i + 1))
    return inv, report


def _requested(base: str = "FullInventory", request_id: int = 7) -> ReportAssembly:
    return report_requested(None, "CP-1", request_id, report_base=base, command_id="c1", at=T0)


def test_a_report_in_three_parts_in_any_order_with_redelivery_builds_one_inventory() -> None:
    results = set()
    for order in itertools.permutations(_parts()):
        sequence = [order[0], order[0], *order[1:], order[1]]  # redelivered parts
        inv, report = _assemble(_requested(), sequence, Inventory("CP-1"))
        assert report.complete and report.status == "complete" and report.items == 6
        assert report.parts == {}
        results.add(frozenset((k, e.value) for k, e in inv.entries.items()))
    assert len(results) == 1
    [values] = results
    assert len(values) == 6
    assert (entry_key("OCPPCommCtrlr", "HeartbeatInterval"), "300") in values
    assert (entry_key("EVSE", "Power", evse_id=1, connector_id=1, attribute_type="MaxSet"), "99") in values


def test_a_report_is_not_complete_until_every_part_up_to_the_last_arrived() -> None:
    first, second, last = _parts()
    report = _requested()
    assert report.status == "requested"
    report = add_report_part(report, last.seq_no, last.tbc, entries_of_part(last, T0), T0)
    report = add_report_part(report, first.seq_no, first.tbc, entries_of_part(first, T0), T0)
    assert not report.complete and report.status == "assembling" and report.last_seq == 2
    report = add_report_part(report, second.seq_no, second.tbc, entries_of_part(second, T0), T0)
    assert report.complete


def test_parts_of_a_complete_report_arriving_again_change_nothing() -> None:
    inv, report = _assemble(_requested(), _parts(), Inventory("CP-1"))
    inv = apply_values(inv, [ValueUpdate(entry_key("OCPPCommCtrlr", "HeartbeatInterval"), "60")],
                       source="set_variables", at=_t(10))
    again, report2 = _assemble(report, _parts(), inv)
    assert report2 == report and again == inv


def test_a_full_report_replaces_report_entries_and_a_summary_merges() -> None:
    inv, _ = _assemble(_requested(), _parts(), Inventory("CP-1"))
    inv = apply_values(inv, [ValueUpdate(entry_key("", "MeterValueSampleInterval"), "30")], source="get_configuration", at=_t(5))
    only = [ev.ReportPart(8, 0, False, data=(_datum("OCPPCommCtrlr", "HeartbeatInterval", "600"),))]
    merged, _ = _assemble(_requested("SummaryInventory", 8), only, inv)
    assert len(merged.entries) == 7 and merged.entries[entry_key("OCPPCommCtrlr", "HeartbeatInterval")].value == "600"
    replaced, _ = _assemble(_requested("FullInventory", 9), [ev.ReportPart(9, 0, False, data=only[0].data)], inv)
    # the report entries not in the new full report are gone; the 1.6 key stays (another source)
    assert {k[0] for k in replaced.entries} == {"OCPPCommCtrlr", ""}
    assert replaced.entries[entry_key("OCPPCommCtrlr", "HeartbeatInterval")].value == "600"
    custom, _ = _assemble(report_requested(None, "CP-1", 10, report_base="", command_id="c9", at=T0),
                          [ev.ReportPart(10, 0, False, data=only[0].data)], inv)
    assert len(custom.entries) == 7  # GetReport merges


def test_a_configuration_inventory_replaces_the_configurable_variables_only() -> None:
    read_only = ev.ReportDatum(ev.Component("ChargingStation"), ev.Variable("Model"),
                               (ev.VariableAttribute("Actual", "M1", "ReadOnly"),))
    full = [*_parts()[:2], ev.ReportPart(7, 2, False, data=(*_parts()[2].data, read_only))]
    inv, _ = _assemble(_requested(), full, Inventory("CP-1"))
    assert len(inv.entries) == 7
    config = [ev.ReportPart(8, 0, False, data=(_datum("OCPPCommCtrlr", "HeartbeatInterval", "600"),))]
    replaced, _ = _assemble(_requested("ConfigurationInventory", 8), config, inv)
    # EVSE.Power and TxUpdatedInterval (writable, no longer reported) are gone; the read-only Model stays
    assert {(k[0], k[4]) for k in replaced.entries} == {("OCPPCommCtrlr", "HeartbeatInterval"), ("ChargingStation", "Model")}
    assert replaced.entries[entry_key("OCPPCommCtrlr", "HeartbeatInterval")].value == "600"
    again, _ = _assemble(_requested("ConfigurationInventory", 9), [ev.ReportPart(9, 0, False, data=full[1].data + full[2].data + full[0].data)], inv)
    assert set(again.entries) == set(inv.entries)  # the same variables reported again: nothing duplicated or lost


def test_a_rejected_report_and_the_characteristics_of_an_entry() -> None:
    report = answer_report(_requested(), "EmptyResultSet", T0)
    assert report.status == "rejected" and report.station_status == "EmptyResultSet"
    accepted = answer_report(_requested(), "Accepted", T0)
    assert accepted.status == "requested"
    [power, maxset] = entries_of_part(_parts()[0], T0)
    assert power.value == "11000" and power.mutability == "ReadWrite" and power.persistent
    assert power.unit == "A" and power.data_type == "integer" and power.max_limit == 32.0
    assert maxset.key[-1] == "MaxSet" and maxset.mutability == "ReadOnly"


def _result(command_type: str, status: str, response: object, request: object | None = None) -> ev.CommandResult:
    return ev.CommandResult("c1", command_type, status, json.dumps(response), ocpp_action=command_type,
                            request_json="" if request is None else json.dumps(request))


def test_get_and_set_variables_results() -> None:
    get = updates_of_result(_result("GetVariables", "Accepted", {"get_variable_result": [
        {"attribute_status": "Accepted", "attribute_value": "300", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}},
        {"attribute_status": "Accepted", "attribute_type": "Target", "attribute_value": "16",
         "component": {"name": "EVSE", "evse": {"id": 2, "connector_id": 1}}, "variable": {"name": "Current", "instance": "L1"}},
        {"attribute_status": "UnknownVariable", "component": {"name": "X"}, "variable": {"name": "Y"}},
    ]}))
    assert get is not None and get.source == "get_variables"
    assert [(u.key, u.value) for u in get.updates] == [
        (entry_key("OCPPCommCtrlr", "HeartbeatInterval"), "300"),
        (entry_key("EVSE", "Current", evse_id=2, connector_id=1, variable_instance="L1", attribute_type="Target"), "16"),
    ]
    request = {"setVariableData": [
        {"attributeValue": "120", "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"attributeValue": "x", "component": {"name": "A"}, "variable": {"name": "B"}},
        {"attributeValue": "5", "component": {"name": "C"}, "variable": {"name": "D"}},
    ]}
    set_ = updates_of_result(_result("SetVariables", "Accepted", {"set_variable_result": [
        {"attribute_status": "Accepted", "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"attribute_status": "Rejected", "component": {"name": "A"}, "variable": {"name": "B"}},
        {"attribute_status": "RebootRequired", "component": {"name": "C"}, "variable": {"name": "D"}},
    ]}, request))
    assert set_ is not None and set_.source == "set_variables"
    assert [(u.key[0], u.value) for u in set_.updates] == [("OCPPCommCtrlr", "120"), ("C", "5")]


def test_16_configuration_results() -> None:
    got = updates_of_result(_result("GetConfiguration", "Accepted", {
        "configuration_key": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                              {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
                              {"key": "AuthorizationKey", "readonly": False}],
        "unknown_key": ["Nope"],
    }, {}))
    assert got is not None and got.complete
    assert [(u.key, u.value, u.mutability) for u in got.updates] == [
        (entry_key("", "HeartbeatInterval"), "300", "ReadWrite"),
        (entry_key("", "NumberOfConnectors"), "2", "ReadOnly"),
        (entry_key("", "AuthorizationKey"), None, "ReadWrite"),
    ]
    some = updates_of_result(_result("GetConfiguration", "Accepted", {"configuration_key": []}, {"key": ["X"]}))
    assert some is not None and not some.complete
    changed = updates_of_result(_result("ChangeConfiguration", "RebootRequired", {"status": "RebootRequired"},
                                        {"key": "HeartbeatInterval", "value": "60"}))
    assert changed is not None and [(u.key, u.value) for u in changed.updates] == [(entry_key("", "HeartbeatInterval"), "60")]
    assert updates_of_result(_result("ChangeConfiguration", "Rejected", {}, {"key": "K", "value": "v"})) is None
    inv = apply_values(Inventory("CP-1"), got.updates, source="get_configuration", at=_t(1))
    inv = apply_values(inv, changed.updates, source="change_configuration", at=_t(2))
    hb = inv.entries[entry_key("", "HeartbeatInterval")]
    assert hb.value == "60" and hb.mutability == "ReadWrite" and hb.source == "change_configuration"
    # a complete listing without a key drops it; an older result does not roll a value back
    fewer = apply_values(inv, got.updates[:1], source="get_configuration", at=_t(3),
                         replace_sources=("get_configuration", "change_configuration"), component="")
    assert set(fewer.entries) == {entry_key("", "HeartbeatInterval")}
    stale = apply_values(inv, got.updates[:1], source="get_configuration", at=_t(1))
    assert stale.entries[entry_key("", "HeartbeatInterval")].value == "60"


def test_event_values_update_the_actual_attribute() -> None:
    report = ev.EventReport(0, events=(
        ev.EventDatum(1, "Delta", ev.Component("Connector", evse_id=1, connector_id=1), ev.Variable("AvailabilityState"),
                      actual_value="Occupied"),
        ev.EventDatum(2, "Periodic", ev.Component("X"), ev.Variable("Y"), actual_value="1"),
        ev.EventDatum(3, "Alerting", ev.Component("Z"), ev.Variable("W"), actual_value=""),
    ))
    updates = event_updates(report)
    assert [(u.key, u.value) for u in updates] == [
        (entry_key("Connector", "AvailabilityState", evse_id=1, connector_id=1), "Occupied"),
    ]
    inv = apply_values(Inventory("CP-1"), updates, source="event", at=T0)
    assert inv.entries[updates[0].key].source == "event"


def test_documents_round_trip() -> None:
    report = add_report_part(_requested(), 0, True, entries_of_part(_parts()[0], T0), T0)
    assert report_from_doc(report_to_doc(report, version=3)) == report
    inv, done = _assemble(_requested(), _parts(), Inventory("CP-1", commands={"c1": 7}))
    assert inventory_from_doc(inventory_to_doc(inv)) == inv
    assert report_from_doc(report_to_doc(done, version=4)) == done
    e = Entry(entry_key("A", "B"), None, source="event")
    assert inventory_from_doc(inventory_to_doc(Inventory("S", {e.key: e}))).entries[e.key] == e

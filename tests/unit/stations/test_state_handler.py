"""The stations-state stage on the memory bus and the SQLite store (ADR 016 §2, §3): what a
station's events leave in station_ops, command records, the history log and
csms.datatransfer.v1; transaction traffic skipped on the ce_type header without decoding;
a redelivered batch changing nothing; undecodable and poison records never stopping the
consumer; the history prune job."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.memory import MemoryBus
from services.common.bus.port import Record
from services.common.runtime import Runtime
from services.common.store.port import StationEventRow
from services.stations import handlers as state_handlers
from services.stations.codec import event_json, history_row, outage_row
from services.stations.domain import Outage
from services.stations.handlers import StationsStateHandler, prune_history
from services.stations.wiring import GROUP, STATE_STAGE, build_state, build_state_handler, build_stations
from tests.support import FixedClock, a_runtime, eventually, running
from tests.unit.sessions.builders import NOW, STATION, an_envelope, at

FW = {"requestId": 42, "firmware": {"location": "https://fw.example/a.bin", "retrieveDateTime": "2026-11-28T10:00:00Z"}}


@pytest.fixture
async def rt() -> AsyncIterator[Runtime]:
    async with running(a_runtime(clock=FixedClock(NOW), dlq_max_attempts=2, dlq_backoff_s=0.01)) as runtime:
        yield runtime


@pytest.fixture
def handler(rt: Runtime) -> StationsStateHandler:
    return build_state_handler(rt)


class Feed:
    def __init__(self) -> None:
        self.offset = 0

    def records(self, *events: ev.Envelope) -> list[Record]:
        out = []
        for e in events:
            out.append(Record(topics.EVENTS, 0, self.offset, e.station_id.encode(), codec.encode_event(e),
                              tuple(codec.event_headers(e))))
            self.offset += 1
        return out


def station_day() -> list[ev.Envelope]:
    """A station's events as the gateways publish them (transaction traffic included)."""
    sample = ev.MeterSample(timestamp=at(6), value=231.0, unit="V", measurand="Voltage", phase="L1")
    return [
        an_envelope(ev.StationConnected(epoch=1, remote_addr="10.0.0.7", security_profile=2), station_time=None,
                    received_at=at(0), action=""),
        an_envelope(ev.StationBooted(vendor="ACME", model="A1", firmware_version="1.0"), received_at=at(0.1),
                    action="BootNotification"),
        an_envelope(ev.ConnectorStatus(evse_id=1, connector_id=1, status="Available"), station_time=at(0.2),
                    received_at=at(0.2), action="StatusNotification"),
        an_envelope(ev.Heartbeat(), received_at=at(0.5), action="Heartbeat"),
        an_envelope(ev.TransactionStarted(transaction_id="tx-1", evse_id=1, connector_id=1), received_at=at(1),
                    action="TransactionEvent"),
        an_envelope(ev.MeterValues(transaction_id="tx-1", evse_id=1, samples=(sample,)), received_at=at(1.5),
                    action="MeterValues"),
        an_envelope(ev.CommandIssued(command_id="cmd-fw", command_type="UpdateFirmware", ocpp_action="UpdateFirmware",
                                     payload_json=json.dumps(FW)), station_time=None, received_at=at(2),
                    action="UpdateFirmware"),
        an_envelope(ev.CommandResult(command_id="cmd-fw", command_type="UpdateFirmware", status="Accepted",
                                     response_json='{"status": "Accepted"}', ocpp_action="UpdateFirmware",
                                     request_json=json.dumps(FW)), station_time=None, received_at=at(2.1),
                    action="UpdateFirmware"),
        an_envelope(ev.FirmwareStatus(status="Downloading", request_id=42), station_time=at(3), received_at=at(3),
                    action="FirmwareStatusNotification"),
        an_envelope(ev.DataTransfer(vendor_id="com.acme", message_id="m1", data_json='{"x":1}', status="Accepted"),
                    received_at=at(4), action="DataTransfer", event_id="dt-accepted"),
        an_envelope(ev.DataTransfer(vendor_id="org.other", status="UnknownVendorId"), received_at=at(4.5),
                    action="DataTransfer"),
        an_envelope(ev.MeterValues(evse_id=1, samples=(sample,)), received_at=at(6), action="MeterValues"),
        an_envelope(ev.StationDisconnected(epoch=1, close_code=1006, reason="gone"), station_time=None,
                    received_at=at(10)),
        an_envelope(ev.StationConnected(epoch=2), station_time=None, received_at=at(25)),
    ]


async def test_a_stations_events_end_up_in_its_state_commands_history_and_datatransfers(
    rt: Runtime, handler: StationsStateHandler,
) -> None:
    events = station_day()
    await handler.handle_batch(Feed().records(*events))

    ops = await rt.store.get_doc("station_ops", STATION)
    assert ops is not None
    assert ops["connectivity"]["connected"] is True and ops["connectivity"]["epoch"] == 2
    assert ops["connectivity"]["connected_at"] == "2026-11-28T10:25:00.000Z"
    assert ops["connectivity"]["connectors"] == {"1/1": {"status": "Available", "at": "2026-11-28T10:00:12.000Z"}}
    assert ops["firmware"]["status"] == "Downloading" and ops["firmware"]["request_id"] == 42
    assert ops["firmware"]["version_before"] == "1.0" and ops["firmware"]["location"] == "https://fw.example/a.bin"
    assert ops["meters"] == {"1/Voltage/L1": {"value": 231.0, "unit": "V", "at": "2026-11-28T10:06:00.000Z"}}
    assert ops["outage"] is None
    cmd = await rt.store.get_doc("command", "cmd-fw")
    assert cmd is not None and (cmd["status"], cmd["ocpp_action"], cmd["station_id"]) == (
        "Accepted", "UpdateFirmware", STATION)
    assert [c["command_id"] for c in await rt.store.list_docs("command", parent=STATION)] == ["cmd-fw"]

    rows = await rt.store.read_station_events(STATION, limit=100)
    kept = [e for e in events if e.type_name not in ("Heartbeat", "TransactionStarted")
            and not (isinstance(e.body, ev.MeterValues) and e.body.transaction_id)]
    assert sorted(r.event_id for r in rows if r.type != "Outage") == sorted(e.event_id for e in kept)
    outage = [r for r in rows if r.type == "Outage"]
    assert [(r.at, r.body["data"]) for r in outage] == [(at(25), {
        "cause": "offline", "start": "2026-11-28T10:10:00.000Z", "end": "2026-11-28T10:25:00.000Z", "duration_s": 900.0,
    })]
    fw = (await rt.store.read_station_events(STATION, types=["FirmwareStatus"]))[0]
    assert fw.body == {
        "event_id": events[8].event_id, "type": "FirmwareStatus", "action": "FirmwareStatusNotification",
        "received_at": "2026-11-28T10:03:00.000Z", "station_time": "2026-11-28T10:03:00.000Z", "gateway_id": "gateway-0",
        "data": {"status": "Downloading", "request_id": 42},
    }

    assert isinstance(rt.bus, MemoryBus)
    forwarded = await rt.bus.read(topics.DATATRANSFER)
    assert len(forwarded) == 1
    record = forwarded[0]
    assert (record.key, record.header("ce_id"), record.header("ce_type")) == (
        STATION.encode(), "dt-accepted", "csms.datatransfer.v1.StationDataTransfer")
    pb = codec.datatransfer_pb2.StationDataTransfer()
    pb.ParseFromString(record.value)
    assert (pb.event_id, pb.station_id, pb.vendor_id, pb.message_id, pb.data_json, pb.gateway_id, pb.ocpp_version) == (
        "dt-accepted", STATION, "com.acme", "m1", '{"x":1}', "gateway-0", "2.0.1")
    assert codec.timestamp_value(pb.received_at) == at(4)


async def test_a_redelivered_batch_changes_no_document_and_writes_the_same_rows(
    rt: Runtime, handler: StationsStateHandler,
) -> None:
    records = Feed().records(*station_day())
    await handler.handle_batch(records)
    ops = await rt.store.get_doc("station_ops", STATION)
    cmd = await rt.store.get_doc("command", "cmd-fw")
    rows = await rt.store.read_station_events(STATION, limit=100)

    await handler.handle_batch(records)
    assert await rt.store.get_doc("station_ops", STATION) == ops
    assert await rt.store.get_doc("command", "cmd-fw") == cmd
    assert await rt.store.read_station_events(STATION, limit=100) == rows
    assert isinstance(rt.bus, MemoryBus)
    again = await rt.bus.read(topics.DATATRANSFER)
    assert [r.header("ce_id") for r in again] == ["dt-accepted", "dt-accepted"]  # consumers dedupe by ce_id


async def test_transaction_traffic_is_skipped_on_its_header_without_decoding(
    rt: Runtime, handler: StationsStateHandler,
) -> None:
    skipped = state_handlers.EVENTS_SKIPPED.labels(reason="irrelevant")
    before = skipped._value.get()
    headers = tuple(codec.cloudevent_headers("x", "csms.events.v1.TransactionUpdated", "/csms/gateway/g", NOW, STATION))
    garbage = Record(topics.EVENTS, 0, 0, STATION.encode(), b"\xff not protobuf", headers)
    connected = an_envelope(ev.StationConnected(epoch=1), station_time=None, received_at=at(0))
    await handler.handle_batch([garbage, *Feed().records(connected)])
    assert skipped._value.get() == before + 1
    ops = await rt.store.get_doc("station_ops", STATION)
    assert ops is not None and ops["connectivity"]["epoch"] == 1


async def test_an_undecodable_record_is_counted_and_skipped(rt: Runtime, handler: StationsStateHandler) -> None:
    undecodable = state_handlers.EVENTS_SKIPPED.labels(reason="undecodable")
    before = undecodable._value.get()
    headers = tuple(codec.cloudevent_headers("x", "csms.events.v1.FirmwareStatus", "/csms/gateway/g", NOW, STATION))
    bad = Record(topics.EVENTS, 0, 0, STATION.encode(), b"\xff not protobuf", headers)
    event = an_envelope(ev.SecurityEvent(type="TamperDetectionActivated"), received_at=at(1))
    await handler.handle_batch([bad, *Feed().records(event)])
    assert undecodable._value.get() == before + 1
    assert [r.type for r in await rt.store.read_station_events(STATION)] == ["SecurityEvent"]


async def test_a_result_from_an_older_gateway_takes_its_request_from_the_command_record(
    rt: Runtime, handler: StationsStateHandler,
) -> None:
    request = {"connectorId": 2, "type": "Inoperative"}
    issued = an_envelope(ev.CommandIssued(command_id="cmd-av", command_type="ChangeAvailability",
                                          ocpp_action="ChangeAvailability", payload_json=json.dumps(request)),
                         station_time=None, received_at=at(1))
    bare = an_envelope(ev.CommandResult(command_id="cmd-av", command_type="ChangeAvailability", status="Accepted"),
                       station_time=None, received_at=at(2))
    feed = Feed()
    await handler.handle_batch(feed.records(issued))
    await handler.handle_batch(feed.records(bare))  # the record comes from the store, not the batch
    ops = await rt.store.get_doc("station_ops", STATION)
    assert ops is not None and ops["availability"] == {"2": "Inoperative"}


def test_history_rows_leave_out_transaction_traffic_and_keep_everything_else() -> None:
    for body in (ev.TransactionStarted(transaction_id="t"), ev.TransactionUpdated(transaction_id="t"),
                 ev.TransactionEnded(transaction_id="t"), ev.Heartbeat(), ev.MeterValues(transaction_id="t"),
                 ev.SessionAbandoned(transaction_id="t", session_id="s")):
        assert history_row(an_envelope(body)) is None
    report = ev.ReportPart(request_id=3, seq_no=0, generated_at=at(1), data=(
        ev.ReportDatum(ev.Component("EVSE", evse_id=1), ev.Variable("Power"), (ev.VariableAttribute(value="11000"),)),))
    row = history_row(an_envelope(report, received_at=at(2), station_time=None, action="NotifyReport"))
    assert row is not None and (row.type, row.at, row.station_id) == ("ReportPart", at(2), STATION)
    assert row.body["station_time"] is None and row.body["action"] == "NotifyReport"
    assert row.body["data"] == {
        "request_id": 3, "seq_no": 0, "tbc": False, "generated_at": "2026-11-28T10:01:00.000Z",
        "data": [{"component": {"name": "EVSE", "instance": "", "evse_id": 1, "connector_id": 0},
                  "variable": {"name": "Power", "instance": ""},
                  "attributes": [{"type": "Actual", "value": "11000", "mutability": "ReadWrite", "persistent": False,
                                  "constant": False}],
                  "characteristics": None}],
    }
    assert history_row(an_envelope(ev.MeterValues(evse_id=1))) is not None
    env = an_envelope(ev.Authorization(id_token="T", status="Accepted"))
    assert history_row(env) == StationEventRow(STATION, env.received_at, env.event_id, "Authorization", event_json(env))


def test_an_outage_row_is_the_same_row_when_written_again() -> None:
    outage = Outage("faulted", at(1), at(3.5))
    row = outage_row(STATION, outage)
    assert row == outage_row(STATION, outage)
    assert (row.at, row.type, row.body["type"], row.body["data"]["duration_s"]) == (at(3.5), "Outage", "Outage", 150.0)


async def test_a_poison_record_is_dead_lettered_alone_and_the_stage_goes_on(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = state_handlers.apply_ops

    def poisoned(ops: Any, env: ev.Envelope, now: Any) -> Any:
        if env.event_id == "poison":
            raise ArithmeticError("a bug")
        return real(ops, env, now)

    monkeypatch.setattr(state_handlers, "apply_ops", poisoned)
    stage = build_state(rt)
    assert (stage.name, stage.group, stage.topic) == (STATE_STAGE, GROUP, topics.EVENTS)
    await stage.start()
    try:
        events = [
            an_envelope(ev.StationConnected(epoch=1), station_time=None, received_at=at(0)),
            an_envelope(ev.SecurityEvent(type="X"), received_at=at(1), event_id="poison"),
            an_envelope(ev.ConnectorStatus(evse_id=1, connector_id=1, status="Faulted"), station_time=at(2),
                        received_at=at(2)),
        ]
        for e in events:
            await rt.bus.publish(topics.EVENTS, e.station_id, codec.encode_event(e), codec.event_headers(e))

        async def done() -> bool:
            ops = await rt.store.get_doc("station_ops", STATION)
            return ops is not None and ops["outage"] is not None

        await eventually(done)
        assert isinstance(rt.bus, MemoryBus)

        async def dead() -> list[Record]:
            assert isinstance(rt.bus, MemoryBus)
            return await rt.bus.read(topics.EVENTS_DLQ)

        letters = await eventually(dead)
        assert [r.header("ce_id") for r in letters] == ["poison"] and letters[0].header("dlq_group") == GROUP
    finally:
        await stage.stop()


async def test_history_older_than_the_retention_is_pruned(rt: Runtime) -> None:
    clock = FixedClock(NOW)
    old = an_envelope(ev.SecurityEvent(type="Old"), received_at=NOW - timedelta(days=91))
    new = an_envelope(ev.SecurityEvent(type="New"), received_at=NOW - timedelta(days=89))
    rows = [history_row(old), history_row(new)]
    await rt.store.append_station_events([r for r in rows if r is not None])
    assert await prune_history(rt.store, clock, 0) == 0
    assert await prune_history(rt.store, clock, 90) == 1
    assert [r.event_id for r in await rt.store.read_station_events(STATION)] == [new.event_id]


async def test_the_stations_service_runs_its_stages(rt: Runtime) -> None:
    service = build_stations(rt)
    assert not service.ready()
    await service.start()
    try:
        assert service.ready() and service.name == "stations"
        assert [p.name for p in service.processors][0] == STATE_STAGE
        e = an_envelope(ev.StationConnected(epoch=1), station_time=None, received_at=at(0))
        await rt.bus.publish(topics.EVENTS, e.station_id, codec.encode_event(e), codec.event_headers(e))

        async def stored() -> bool:
            return await rt.store.get_doc("station_ops", STATION) is not None

        await eventually(stored)
    finally:
        await service.stop()
    assert not service.ready()


async def test_transaction_traffic_and_other_commands_cost_the_stage_no_store_operation(
    rt: Runtime, handler: StationsStateHandler,
) -> None:
    sample = ev.MeterSample(timestamp=at(1), value=1000.0)
    events = [
        an_envelope(ev.TransactionUpdated(transaction_id="tx-1", evse_id=1), received_at=at(1)),
        an_envelope(ev.MeterValues(transaction_id="tx-1", evse_id=1, samples=(sample,)), received_at=at(1)),
        an_envelope(ev.Heartbeat(), received_at=at(2)),
    ]
    store: Any = rt.store
    store.ops.clear()
    await handler.handle_batch(Feed().records(*events))
    assert not store.ops, store.ops
    # a smart-charging command: its record and its history row, never the station's state
    limit = an_envelope(ev.CommandIssued(command_id="sc-1", command_type="SetChargingProfile",
                                         ocpp_action="SetChargingProfile", payload_json="{}"), received_at=at(3))
    await handler.handle_batch(Feed().records(limit))
    assert any(op == "write" for op, _ in store.ops), store.ops  # the counter counts
    assert await rt.store.get_doc("station_ops", STATION) is None
    assert await rt.store.get_doc("command", "sc-1") is not None


async def test_transaction_meter_values_are_skipped_without_building_the_event(
    rt: Runtime, handler: StationsStateHandler, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MeterValues share one ce_type; those of a transaction (the bulk of the topic) are
    told apart on the protobuf and never built, those without one are folded and logged."""
    skipped = state_handlers.EVENTS_SKIPPED.labels(reason="irrelevant")
    before = skipped._value.get()
    sample = ev.MeterSample(timestamp=at(1), value=230.0, unit="V", measurand="Voltage", phase="L1")
    in_tx = an_envelope(ev.MeterValues(transaction_id="tx-1", evse_id=1, samples=(sample,)), received_at=at(1))
    outside = an_envelope(ev.MeterValues(evse_id=1, samples=(sample,)), received_at=at(2))
    built: list[str] = []
    real_decode = codec.decode_event

    def decode(data: bytes, headers: dict[str, str] | None = None) -> ev.Envelope:
        env = real_decode(data, headers)
        built.append(env.event_id)
        return env

    monkeypatch.setattr(codec, "decode_event", decode)  # the module the stage decodes with
    await handler.handle_batch(Feed().records(in_tx, outside))
    assert built == [outside.event_id]
    assert skipped._value.get() == before + 1
    assert [r.event_id for r in await rt.store.read_station_events(STATION)] == [outside.event_id]
    ops = await rt.store.get_doc("station_ops", STATION)
    assert ops is not None and list(ops["meters"]) == ["1/Voltage/L1"]


async def test_transaction_meter_values_without_a_header_are_skipped_after_decoding(
    rt: Runtime, handler: StationsStateHandler,
) -> None:
    skipped = state_handlers.EVENTS_SKIPPED.labels(reason="irrelevant")
    before = skipped._value.get()
    in_tx = an_envelope(ev.MeterValues(transaction_id="tx-1", evse_id=1), received_at=at(1))
    bare = Record(topics.EVENTS, 0, 0, STATION.encode(), codec.encode_event(in_tx), ())  # an older producer
    await handler.handle_batch([bare])
    assert skipped._value.get() == before + 1
    assert await rt.store.read_station_events(STATION) == []


def test_transaction_meter_values_reads_only_meter_values_of_a_transaction() -> None:
    from services.stations.codec import transaction_meter_values

    assert transaction_meter_values(codec.encode_event(an_envelope(ev.MeterValues(transaction_id="t", evse_id=1))))
    assert not transaction_meter_values(codec.encode_event(an_envelope(ev.MeterValues(evse_id=1))))
    assert not transaction_meter_values(codec.encode_event(an_envelope(ev.TransactionUpdated(transaction_id="t"))))
    with pytest.raises(Exception):
        transaction_meter_values(b"\xff not protobuf")


def _reference_plain(value: Any) -> Any:
    """`_plain` as first written (dataclasses.fields per value): the rows must not change."""
    import dataclasses
    from datetime import datetime

    from services.common.timeutil import to_ocpp

    if isinstance(value, datetime):
        return to_ocpp(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _reference_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_reference_plain(v) for v in value]
    return value


def test_history_row_data_is_the_event_body_spelled_out() -> None:
    sample = ev.MeterSample(timestamp=at(1), value=230.0, unit="V", measurand="Voltage", phase="L1", raw_value="x")
    part = ev.ReportPart(7, 0, True, generated_at=at(2), data=(ev.ReportDatum(
        ev.Component("C", evse_id=1, connector_id=2), ev.Variable("V", "i"),
        (ev.VariableAttribute("Actual", None), ev.VariableAttribute("Target", "5", constant=True)),
        ev.VariableCharacteristics("decimal", min_limit=0.5)),))
    bodies: list[ev.Body] = [
        ev.MeterValues(evse_id=1, samples=(sample, sample)), part, ev.Heartbeat(),
        ev.CommandResult("c", "GetVariables", "Accepted", '{"a": 1}', request_json="{}"),
        ev.SecurityEvent(type="T", timestamp=None), ev.FirmwareStatus(status="Installed", request_id=None),
    ]
    for body in bodies:
        env = an_envelope(body, received_at=at(3))
        assert event_json(env)["data"] == _reference_plain(body)
    assert event_json(an_envelope(part, received_at=at(3)))["data"]["data"][0]["attributes"][0] == {
        "type": "Actual", "value": None, "mutability": "ReadWrite", "persistent": False, "constant": False}

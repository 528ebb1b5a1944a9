"""The stations processor (`csms stations`, ADR 016 §2) on Kafka + Cassandra: a station's
events published on csms.events.v1 end up in its station_ops document, its command
records, its history log (with the Outage row of a closed outage) and, for an accepted
DataTransfer, on csms.datatransfer.v1; transaction traffic is left out of the history."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from services.common import codec
from services.common import events as ev
from services.common.bus.kafka import KafkaBus
from services.common.store.cassandra import CassandraStore
from services.common.timeutil import utcnow
from tests.integration.conftest import new_cluster
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra


async def test_a_stations_events_reach_station_ops_history_and_the_datatransfer_topic(tmp_path: Path) -> None:
    cluster = new_cluster(tmp_path, roles=("stations",))
    prefix, store_url, bus_url = (
        cluster.env["CSMS_TOPIC_PREFIX"], cluster.env["CSMS_STORE_URL"], cluster.env["CSMS_BUS_URL"]
    )
    station = f"ST{uuid.uuid4().hex[:8]}"
    t0 = utcnow().replace(microsecond=0) - timedelta(minutes=30)

    def env(body: ev.Body, minutes: float, **kw: object) -> ev.Envelope:
        at = t0 + timedelta(minutes=minutes)
        fields: dict[str, object] = dict(event_id=str(uuid.uuid4()), station_id=station, received_at=at, body=body,
                                         gateway_id="gateway-0", ocpp_version="2.0.1", station_time=at)
        fields.update(kw)
        return ev.Envelope(**fields)  # type: ignore[arg-type]

    fw = {"requestId": 5, "firmware": {"location": "https://fw.example/b.bin", "retrieveDateTime": "2026-01-01T00:00:00Z"}}
    events = [
        env(ev.StationConnected(epoch=1, remote_addr="10.1.1.1", security_profile=2), 0, station_time=None),
        env(ev.StationBooted(vendor="ACME", model="A1", firmware_version="1.0"), 0.1, action="BootNotification"),
        env(ev.ConnectorStatus(evse_id=1, connector_id=1, status="Faulted"), 1, action="StatusNotification"),
        env(ev.TransactionStarted(transaction_id="tx-1", evse_id=1, connector_id=1), 1.5, action="TransactionEvent"),
        env(ev.Heartbeat(), 1.6, action="Heartbeat"),
        env(ev.CommandIssued(command_id=f"{station}-fw", command_type="UpdateFirmware", ocpp_action="UpdateFirmware",
                             payload_json=json.dumps(fw)), 2, station_time=None, action="UpdateFirmware"),
        env(ev.CommandResult(command_id=f"{station}-fw", command_type="UpdateFirmware", status="Accepted",
                             ocpp_action="UpdateFirmware", request_json=json.dumps(fw)), 2.1, station_time=None),
        env(ev.FirmwareStatus(status="Installing", request_id=5), 3, action="FirmwareStatusNotification"),
        env(ev.DataTransfer(vendor_id="com.acme", message_id="hello", data_json='"hi"', status="Accepted"), 4,
            action="DataTransfer", event_id=f"{station}-dt"),
        env(ev.ConnectorStatus(evse_id=1, connector_id=1, status="Available"), 6, action="StatusNotification"),
    ]
    bus = KafkaBus(bus_url)
    store = CassandraStore(store_url)
    await bus.start()
    await store.start()
    try:
        topic = prefix + "csms.events.v1"
        await bus.ensure_topic(topic, 6)
        for e in events:
            await bus.publish(topic, station, codec.encode_event(e), codec.event_headers(e))

        async def folded() -> bool:
            doc = await store.get_doc("station_ops", station)
            return doc is not None and doc["outage"] is None and (doc.get("firmware") or {}).get("status") == "Installing"

        await eventually(folded, 90, what="the station's station_ops document")
        doc = await store.get_doc("station_ops", station)
        assert doc is not None
        assert (doc["connectivity"]["connected"], doc["connectivity"]["security_profile"]) == (True, 2)
        assert (doc["firmware"]["request_id"], doc["firmware"]["version_before"]) == (5, "1.0")
        cmd = await store.get_doc("command", f"{station}-fw")
        assert cmd is not None and cmd["status"] == "Accepted"

        async def history() -> list[str]:
            rows = await store.read_station_events(station, limit=100)
            return [r.type for r in rows] if len(rows) == 9 else []

        types = await eventually(history, 60, what="the station's history")
        assert sorted(types) == sorted([
            "StationConnected", "StationBooted", "ConnectorStatus", "CommandIssued", "CommandResult", "FirmwareStatus",
            "DataTransfer", "ConnectorStatus", "Outage",
        ])
        outage = await store.read_station_events(station, types=["Outage"])
        assert [r.body["data"]["cause"] for r in outage] == ["faulted"]
        assert outage[0].body["data"]["duration_s"] == 300.0

        async def forwarded() -> list[bytes]:
            records = await bus.read(prefix + "csms.datatransfer.v1")
            return [r.value for r in records if r.key == station.encode()]

        values = await eventually(forwarded, 60, what="the forwarded DataTransfer")
        pb = codec.datatransfer_pb2.StationDataTransfer()
        pb.ParseFromString(values[0])
        assert (pb.event_id, pb.station_id, pb.vendor_id, pb.message_id, pb.data_json) == (
            f"{station}-dt", station, "com.acme", "hello", '"hi"')
    finally:
        await bus.close()
        await store.close()
        cluster.stop_all()
    log = cluster.procs["stations"].log()
    assert "Traceback" not in log, log[-6000:]

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.memory import MemoryBus
from services.common.bus.port import Record
from services.common.config import Settings
from services.common.errors import BusUnavailable
from services.common.runtime import Runtime, bootstrap
from services.common.store.sqlite import SqliteStore
from services.sessions import codec as snapshots
from services.sessions.domain import session_id
from services.sessions.handlers import SessionsHandler
from services.sessions.wiring import build_handler, build_sessions
from tests.support import FixedClock, eventually

from .builders import NOW, STATION, TX, V16, a_16_session, a_201_session, an_envelope, at


@pytest.fixture
def handler(rt: Runtime) -> SessionsHandler:
    return build_handler(rt)


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    store = SqliteStore(f"sqlite:///{tmp_path}/s.db")
    runtime = bootstrap(Settings(events_partitions=4), bus=MemoryBus(default_partitions=4), store=store,
                        clock=FixedClock(NOW), pepper=b"test-pepper")
    await runtime.start()
    await store.migrate()
    yield runtime
    await runtime.close()


async def publish(rt: Runtime, *events: ev.Envelope) -> None:
    for e in events:
        await rt.bus.publish(topics.EVENTS, e.station_id, codec.encode_event(e), codec.event_headers(e))


def a_record(e: ev.Envelope, offset: int = 0) -> Record:
    return Record(topics.EVENTS, 0, offset, e.station_id.encode(), codec.encode_event(e), tuple(codec.event_headers(e)))


async def snapshots_on(rt: Runtime) -> list[Record]:
    seen: list[Record] = []

    async def collect(record: Record) -> None:
        seen.append(record)

    await rt.bus.subscribe(topics.SESSIONS, group="test-snapshots", handler=collect)
    return seen


async def test_the_service_turns_a_201_session_into_a_stored_session_and_snapshots(rt: Runtime) -> None:
    seen = await snapshots_on(rt)
    service = build_sessions(rt)
    assert not service.ready()
    await service.start()
    assert service.ready() and service.name == "sessions"

    events = a_201_session()
    await publish(rt, *events)
    sid = session_id(STATION, TX)

    async def completed() -> bool:
        doc = await rt.store.get_doc("session", sid)
        return (
            doc is not None and doc["status"] == "completed" and bool(seen)
            and snapshots.decode_session(seen[-1].value)["version"] == doc["version"]
        )

    await eventually(completed)
    await service.stop()
    assert not service.ready()

    doc = await rt.store.get_doc("session", sid)
    assert doc is not None
    assert (doc["status"], doc["energy_wh"], doc["transaction_id"], doc["id_token"]) == ("completed", 6_000, TX, "TOKEN-1")
    assert (doc["started_at"], doc["stopped_at"]) == ("2026-11-28T10:00:00.000Z", "2026-11-28T11:00:00.000Z")
    assert [d["id"] for d in await rt.store.list_docs("session", parent=STATION)] == [sid]

    last = seen[-1]
    assert last.key == STATION.encode()
    assert last.header("ce_type") == "csms.sessions.v1.Session"
    assert last.header("ce_id") == f"{sid}:{doc['version']}"
    assert last.header("ce_subject") == STATION
    snap = snapshots.decode_session(last.value)
    assert (snap["id"], snap["status"], snap["energy_wh"], snap["version"]) == (sid, "completed", 6_000, doc["version"])
    assert snap["stopped_at"] == doc["stopped_at"] and snap["sample_count"] == doc["sample_count"] == 6
    assert snap["first_register"] == {"at": "2026-11-28T10:00:00.000Z", "wh": 10_000}
    assert snap["last_register"] == {"at": "2026-11-28T11:00:00.000Z", "wh": 16_000}
    assert snap["peak_power_w"] == 7_400 and snap["meter_start_wh"] is None and snap["meter_stop_wh"] is None
    versions = [snapshots.decode_session(r.value)["version"] for r in seen]
    assert versions == sorted(set(versions))  # one snapshot per batch that changed the session, in order

    # the samples went to csms.meter-values.v1, one record per event that carried some
    assert isinstance(rt.bus, MemoryBus)
    mv = await rt.bus.read(topics.METER_VALUES)
    assert [r.header("ce_type") for r in mv] == ["csms.meter_values.v1.SessionMeterValues"] * len(events)
    decoded = [snapshots.decode_meter_values(r.value) for r in mv]
    assert {d["session_id"] for d in decoded} == {sid} and [d["event_id"] for d in decoded] == [e.event_id for e in events]
    assert [(x["timestamp"], x["measurand"], x["value"]) for d in decoded for x in d["samples"]] == [
        ("2026-11-28T10:00:00.000Z", "Energy.Active.Import.Register", 10_000),
        ("2026-11-28T10:15:00.000Z", "Energy.Active.Import.Register", 12_500),
        ("2026-11-28T10:30:00.000Z", "Energy.Active.Import.Register", 15_000),
        ("2026-11-28T10:30:00.000Z", "Power.Active.Import", 7_400),
        ("2026-11-28T10:45:00.000Z", "Energy.Active.Import.Register", 16_000),
        ("2026-11-28T11:00:00.000Z", "Energy.Active.Import.Register", 16_000),
    ]


async def test_the_service_keeps_station_status_and_leaves_command_records_to_the_stations_processor(rt: Runtime) -> None:
    service = build_sessions(rt)
    await service.start()
    await publish(
        rt,
        an_envelope(ev.StationConnected(epoch=2), station_time=None, received_at=at(0)),
        an_envelope(ev.StationBooted(vendor="ACME", model="A1"), received_at=at(0)),
        an_envelope(ev.CommandIssued(command_id="cmd-9", command_type="Reset"), received_at=at(2)),
        an_envelope(ev.CommandResult(command_id="cmd-9", command_type="Reset", status="Accepted"), received_at=at(3)),
        an_envelope(ev.ConnectorStatus(evse_id=1, connector_id=1, status="Occupied"), station_time=at(4)),
    )

    async def recorded() -> bool:
        status = await rt.store.get_doc("station_status", STATION)
        return status is not None and "1/1" in status["connectors"]

    await eventually(recorded)
    await service.stop()
    status = await rt.store.get_doc("station_status", STATION)
    assert status is not None
    assert (status["connected"], status["epoch"], status["boot"]["vendor"]) == (True, 2, "ACME")
    assert status["connectors"]["1/1"]["status"] == "Occupied"
    # command records are the stations processor's (ADR 016)
    assert await rt.store.get_doc("command", "cmd-9") is None
    assert await rt.store.list_docs("command", parent=STATION) == []


async def test_handling_the_same_record_twice_keeps_the_version_and_republishes_one_identical_snapshot(rt: Runtime, handler: SessionsHandler) -> None:
    seen = await snapshots_on(rt)
    record = a_record(a_16_session()[0])

    await handler.handle_record(record)
    first = await rt.store.get_doc("session", session_id(STATION, TX))
    await handler.handle_record(record)
    second = await rt.store.get_doc("session", session_id(STATION, TX))

    assert first == second and first is not None and first["version"] == 1
    await eventually(lambda: _at_least(seen, 2))
    assert len(seen) == 2
    assert seen[0].value == seen[1].value and seen[0].header("ce_id") == seen[1].header("ce_id")


async def test_a_crash_between_the_write_and_the_publish_republishes_the_same_version(rt: Runtime, handler: SessionsHandler) -> None:
    seen = await snapshots_on(rt)
    record = a_record(a_16_session()[0])
    assert isinstance(rt.bus, MemoryBus)

    rt.bus.set_available(False)
    with pytest.raises(BusUnavailable):
        await handler.handle_record(record)
    stored = await rt.store.get_doc("session", session_id(STATION, TX))
    assert stored is not None and stored["version"] == 1

    rt.bus.set_available(True)
    await handler.handle_record(record)  # redelivery
    await eventually(lambda: _at_least(seen, 1))
    assert snapshots.decode_session(seen[0].value)["version"] == 1
    assert (await rt.store.get_doc("session", session_id(STATION, TX))) == stored


async def test_an_undecodable_record_is_skipped_without_blocking_the_partition(rt: Runtime, handler: SessionsHandler) -> None:
    bad = Record(topics.EVENTS, 0, 0, STATION.encode(), b"\xff\x00not protobuf")
    await handler.handle_record(bad)  # no exception: the partition moves on
    await handler.handle_record(a_record(a_16_session()[0], offset=1))
    assert await rt.store.get_doc("session", session_id(STATION, TX)) is not None


async def test_a_16_stop_for_an_unknown_transaction_is_stored_as_an_orphan(rt: Runtime, handler: SessionsHandler) -> None:
    stop = a_16_session()[-1]
    unknown = an_envelope(ev.TransactionEnded(transaction_id="-1", meter_stop_wh=4_200), station_time=at(30), **V16)
    await handler.handle_record(a_record(stop))
    await handler.handle_record(a_record(unknown, offset=1))

    docs = await rt.store.list_docs("session", parent=STATION)
    assert len(docs) == 2 and all(d["orphan"] and d["status"] == "completed" for d in docs)
    assert {d["transaction_id"] for d in docs} == {TX, "-1"}


async def _at_least(seen: list[Record], n: int) -> bool:
    return len(seen) >= n


async def test_an_old_site_notification_on_the_events_topic_creates_no_station_status(rt: Runtime, handler: SessionsHandler) -> None:
    # Before csms.sites.v1 the API published site changes as a station event with the id
    # "site:<id>"; such records may still be in the topic during an upgrade.
    old = an_envelope(
        ev.Notification(payload_json='{"id":"S1","max_current_a":32}'), station_id="site:S1", action="SiteUpdated"
    )
    station = an_envelope(ev.Notification(payload_json="{}"), action="DataTransfer")
    await handler.handle_record(a_record(old, 0))
    await handler.handle_record(a_record(station, 1))
    assert await rt.store.get_doc("station_status", "site:S1") is None
    assert await rt.store.get_doc("station_status", STATION) is not None

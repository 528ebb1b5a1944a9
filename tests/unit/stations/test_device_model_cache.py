"""The device model stage's cheap paths (bench/stations_processor.py): inventories kept
decoded between batches only while the stored document is the one the stage wrote (version
and etag), events that cannot touch the device model costing no read, and the documents'
encoders. Each is checked against what the stage does without them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from services.common import codec, kinds, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.common.store.port import DocWrite
from services.stations.device_model import DeviceModelStage, may_touch
from services.stations.device_model_documents import (
    entry_to_dict,
    inventory_from_doc,
    inventory_to_doc,
    report_from_doc,
    report_to_doc,
)
from services.stations.domain.device_model import Entry, Inventory, ReportAssembly, entry_key
from tests.support.runtime import a_runtime, running

UTC = timezone.utc
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
STATION = "CP-1"


class Feed:
    def __init__(self) -> None:
        self.n = 0

    def records(self, *bodies: tuple[ev.Body, float]) -> list[Record]:
        out = []
        for body, seconds in bodies:
            self.n += 1
            env = ev.Envelope(f"e{self.n}", STATION, T0 + timedelta(seconds=seconds), body, gateway_id="g",
                              ocpp_version="2.0.1")
            out.append(Record(topics.EVENTS, 0, self.n, STATION.encode(), codec.encode_event(env),
                              tuple(codec.event_headers(env))))
        return out


def _part(request_id: int, values: dict[str, str]) -> ev.ReportPart:
    return ev.ReportPart(request_id, 0, False, data=tuple(
        ev.ReportDatum(ev.Component(c, evse_id=1), ev.Variable("V"), (ev.VariableAttribute("Actual", v),),
                       ev.VariableCharacteristics("integer", unit="W", min_limit=0.0))
        for c, v in values.items()))


def _get_result(command_id: str, component: str, value: str) -> ev.CommandResult:
    item = {"component": {"name": component, "evse": {"id": 1}}, "variable": {"name": "V"}}
    return ev.CommandResult(command_id, "GetVariables", "Accepted", json.dumps(
        {"get_variable_result": [{**item, "attribute_status": "Accepted", "attribute_value": value}]}),
        ocpp_action="GetVariables", request_json=json.dumps({"getVariableData": [item]}))


def _event(component: str, value: str) -> ev.EventReport:
    return ev.EventReport(0, events=(ev.EventDatum(1, "Delta", ev.Component(component, evse_id=1), ev.Variable("V"),
                                                   actual_value=value),))


def _batches() -> list[list[tuple[ev.Body, float]]]:
    """A station's device model traffic over several batches, with instants finer than a
    millisecond (two events of one batch within the same millisecond)."""
    return [
        [(_part(7, {"A": "1", "B": "2", "C": "3"}), 1.0)],
        [(_get_result("c1", "A", "10"), 2.0004), (_event("A", "11"), 2.0001)],
        [(_event("B", "20"), 3.0)],
        [(ev.CommandIssued("c2", "GetVariables", "GetVariables", "{}"), 4.0), (_get_result("c3", "C", "30"), 4.5004)],
        [(_event("C", "31"), 4.5002)],
    ]


class CountingStore:
    """The runtime's store, counting the document reads per kind."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads: list[tuple[str, tuple[str, ...]]] = []

    async def get_docs(self, kind: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.reads.append((kind, tuple(ids)))
        docs: dict[str, dict[str, Any]] = await self.inner.get_docs(kind, ids)
        return docs

    async def put_docs(self, kind: str, writes: Sequence[DocWrite]) -> None:
        await self.inner.put_docs(kind, writes)


async def _run(cache_stations: int) -> tuple[dict[str, Any], dict[str, Any]]:
    async with running(a_runtime()) as rt:
        stage = DeviceModelStage(rt.store, cache_stations=cache_stations)
        feed = Feed()
        for batch in _batches():
            await stage.consume(feed.records(*batch))
        inv = await rt.store.get_doc(kinds.DEVICE_MODEL, STATION)
        report = await rt.store.get_doc(kinds.REPORT, f"{STATION}/7")
        assert inv is not None and report is not None
        return inv, report


def _without_etag(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "etag"}


async def test_the_kept_inventories_give_the_documents_a_stage_without_them_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    plain_inv, plain_report = await _run(cache_stations=0)
    decoded: list[str] = []
    real = inventory_from_doc

    def counting(doc: Any) -> Inventory:
        decoded.append(str(doc["station_id"]))
        return real(doc)

    monkeypatch.setattr("services.stations.device_model.inventory_from_doc", counting)
    kept_inv, kept_report = await _run(cache_stations=10)
    assert decoded == []  # every batch after the first found the inventory it wrote
    assert _without_etag(kept_inv) == _without_etag(plain_inv)
    assert kept_report == plain_report
    values = {k[0]: e.value for k, e in inventory_from_doc(kept_inv).entries.items()}
    assert values == {"A": "10", "B": "20", "C": "31"}  # in one batch the finer instants decide (2.0004 > 2.0001)


async def test_a_document_another_writer_stored_is_read_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(a_runtime()) as rt:
        stage = DeviceModelStage(rt.store, cache_stations=10)
        feed = Feed()
        await stage.consume(feed.records((_part(7, {"A": "1"}), 1.0)))
        doc = await rt.store.get_doc(kinds.DEVICE_MODEL, STATION)
        assert doc is not None and isinstance(doc.get("etag"), str)
        decoded: list[int] = []
        real = inventory_from_doc

        def counting(d: Any) -> Inventory:
            decoded.append(int(d["version"]))
            return real(d)

        monkeypatch.setattr("services.stations.device_model.inventory_from_doc", counting)
        # another process's document of the same version (a race in a rebalance), its own etag
        # (written unversioned: a versioned write of an equal version would not land)
        theirs = {**doc, "entries": [{**doc["entries"][0], "value": "theirs"}], "etag": "other-1"}
        await rt.store.put_docs(kinds.DEVICE_MODEL, [DocWrite(STATION, theirs)])
        await stage.consume(feed.records((_event("B", "2"), 2.0)))
        assert decoded == [int(doc["version"])]
        after = await rt.store.get_doc(kinds.DEVICE_MODEL, STATION)
        assert after is not None
        assert {e["component"]: e.get("value") for e in after["entries"]} == {"A": "theirs", "B": "2"}
        # then a newer one without any etag (an older stage version)
        now = await rt.store.get_doc(kinds.DEVICE_MODEL, STATION)
        assert now is not None
        newer = {k: v for k, v in now.items() if k != "etag"}
        newer["version"] = int(now["version"]) + 5
        newer["entries"] = [*now["entries"], {"component": "Z", "variable": "V", "attribute_type": "Actual",
                                              "value": "z", "source": "report", "updated_at": "2026-12-01T10:00:02.000Z"}]
        await rt.store.put_docs(kinds.DEVICE_MODEL, [DocWrite(STATION, newer, version=newer["version"])])
        decoded.clear()
        await stage.consume(feed.records((_event("C", "3"), 3.0)))
        assert decoded == [newer["version"]]
        final = await rt.store.get_doc(kinds.DEVICE_MODEL, STATION)
        assert final is not None and final["version"] == newer["version"] + 1
        assert {e["component"] for e in final["entries"]} >= {"Z", "C"}


async def test_events_that_cannot_touch_the_device_model_cost_no_read() -> None:
    async with running(a_runtime()) as rt:
        store = CountingStore(rt.store)
        stage = DeviceModelStage(store, cache_stations=10)  # type: ignore[arg-type]
        request = json.dumps({"operationalStatus": "Inoperative", "evse": {"id": 1}})
        await stage.consume(Feed().records(
            (ev.CommandIssued("c1", "GetVariables", "GetVariables", "{}"), 1.0),
            (ev.CommandIssued("c2", "ChangeAvailability", "ChangeAvailability", request), 1.0),
            (ev.CommandResult("c2", "ChangeAvailability", "Accepted", "not json", ocpp_action="ChangeAvailability",
                              request_json=request), 2.0),
            (ev.Heartbeat(), 3.0),
        ))
        assert store.reads == []
        await stage.consume(Feed().records((ev.CommandIssued("c3", "GetBaseReport", "GetBaseReport",
                                                             json.dumps({"requestId": 5})), 4.0)))
        assert [kind for kind, _ in store.reads] == [kinds.DEVICE_MODEL, kinds.REPORT]


def test_may_touch_names_what_the_fold_reads() -> None:
    assert may_touch(ev.CommandIssued("c", "GetReport", "GetReport"))
    assert not may_touch(ev.CommandIssued("c", "GetVariables", "GetVariables"))
    for kind in ("GetVariables", "SetVariables", "GetConfiguration", "ChangeConfiguration", "GetBaseReport"):
        assert may_touch(ev.CommandResult("c", kind, "Accepted"))
        assert may_touch(ev.CommandResult("c", "Custom", "Accepted", ocpp_action=kind))
    assert not may_touch(ev.CommandResult("c", "ChangeAvailability", "Accepted", ocpp_action="ChangeAvailability"))
    assert may_touch(_part(1, {})) and may_touch(ev.EventReport(0))
    assert not may_touch(ev.Heartbeat())


def test_the_documents_spell_out_entries_as_before_and_read_back_the_same() -> None:
    full = Entry(entry_key("C", "V", component_instance="ci", evse_id=1, connector_id=2, variable_instance="vi",
                           attribute_type="Target"),
                 "5", mutability="ReadWrite", persistent=True, constant=True, unit="W", data_type="integer",
                 min_limit=0.0, max_limit=10.5, values_list="a,b", source="report", updated_at=T0)
    bare = Entry(entry_key("", "Key"), source="get_configuration")
    assert entry_to_dict(full) == {
        "component": "C", "variable": "V", "attribute_type": "Target", "component_instance": "ci", "evse_id": 1,
        "connector_id": 2, "variable_instance": "vi", "value": "5", "mutability": "ReadWrite", "persistent": True,
        "constant": True, "unit": "W", "data_type": "integer", "min_limit": 0.0, "max_limit": 10.5,
        "values_list": "a,b", "source": "report", "updated_at": "2026-12-01T10:00:00.000Z",
    }
    assert list(entry_to_dict(full)) == list(entry_to_dict(full).keys())  # order as written
    assert entry_to_dict(bare) == {"component": "", "variable": "Key", "attribute_type": "Actual",
                                   "source": "get_configuration", "updated_at": None}
    later = T0 + timedelta(seconds=1)
    other = Entry(entry_key("D", "V", evse_id=2), "", source="event", updated_at=later)
    inv = Inventory(STATION, {e.key: e for e in (full, bare, other)}, {"c1": 4}, version=3, updated_at=later)
    doc = json.loads(json.dumps(inventory_to_doc(inv)))
    assert inventory_from_doc(doc) == inv
    back = inventory_from_doc(doc)
    assert back.entries[other.key].updated_at is back.updated_at or back.entries[other.key].updated_at == later
    report = ReportAssembly(STATION, 7, "FullInventory", "c1", T0, "Accepted", {0: (full, other)}, frozenset({0}),
                            None, 2, None, later)
    assert report_from_doc(json.loads(json.dumps(report_to_doc(report, version=2)))) == report
    # a connector without an EVSE is no connector, as `entry_key` says, whatever the document holds
    odd = inventory_from_doc({"station_id": STATION, "entries": [{"component": "C", "variable": "V", "connector_id": 3}]})
    assert list(odd.entries) == [entry_key("C", "V", connector_id=3)] == [("C", "", None, None, "V", "", "Actual")]
    with pytest.raises(ValueError):
        inventory_from_doc({"station_id": STATION, "entries": [{"component": "C", "variable": "V",
                                                                "updated_at": "not a time"}]})

"""The `stations-device-model` stage (ADR 016 §2): reports and the inventory, per station.

Consumes csms.events.v1 as group `csms-device-model`. Only these events matter, told
apart on the CloudEvents `ce_type` header before anything is decoded (transaction traffic
never is):
- CommandIssued of GetBaseReport / GetReport: a report requested (REPORT document);
- CommandResult of those: the station's answer (Rejected / NotSupported / EmptyResultSet:
  the report is `rejected`); of GetVariables / SetVariables / GetConfiguration /
  ChangeConfiguration: values of the inventory (the request payload, which the results of
  SetVariables and ChangeConfiguration need, is the result's `request_json`); a 1.6
  GetConfiguration answer is also a complete report of its own (request id derived from
  the command id, `configuration_request_id`, as the API derives it);
- ReportPart (NotifyReport): a part of a report; a complete report is applied;
- EventReport (NotifyEvent): Delta / Alerting events with an actual value.

A decoded event the fold cannot use (CommandIssued of a command other than a report,
CommandResult of a command that is neither a report nor a value command: `may_touch`) is
counted as ignored before any read. A batch is folded per station: one `get_docs` of the
batch's inventories (DEVICE_MODEL), one of the reports it touches (REPORT), then one
versioned `put_docs` of each kind. Each inventory write carries an `etag` (a token unique
to the write); the stage keeps up to CSMS_DEVICE_MODEL_CACHE_STATIONS inventories decoded
and uses one only while the document read is that very version and etag, so a station's
inventory (often hundreds of entries) is not decoded again for every event. A
record that does not decode or that the fold cannot apply is logged, counted
(`csms_device_model_records_total{outcome}`) and skipped: it never stops the consumer.
Store and bus failures propagate (the bus retries the batch).

The payload readers here accept the snake_case answers the gateway records
(`from_ocpp`) and camelCase (the request payloads, and results recorded as sent).
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import Counter

from services.common import codec, kinds, topics
from services.common import events as ev
from services.common.bus.port import Record
from services.common.processor import Processor
from services.common.runtime import Runtime
from services.common.store.port import DocumentStore, DocWrite
from services.stations.device_model_documents import (
    inventory_from_doc,
    inventory_to_doc,
    report_doc_id,
    report_from_doc,
    report_to_doc,
)
from services.stations.domain.device_model import (
    ACTUAL,
    Entry,
    EntryKey,
    Inventory,
    ReportAssembly,
    ValueUpdate,
    add_report_part,
    answer_report,
    apply_report,
    configuration_report,
    configuration_request_id,
    apply_values,
    entry_key,
    report_requested,
    track_command,
)

__all__ = [
    "CONSUMER_GROUP",
    "DeviceModelStage",
    "RELEVANT_TYPES",
    "build_device_model",
    "entries_of_part",
    "updates_of_result",
]

log = logging.getLogger("csms.stations.device_model")

CONSUMER_GROUP = topics.group("csms-device-model")
NAME = "stations-device-model"
RELEVANT_TYPES = frozenset(
    f"csms.events.v1.{cls.__name__}" for cls in (ev.CommandIssued, ev.CommandResult, ev.ReportPart, ev.EventReport)
)
REPORT_COMMANDS = frozenset({"GetBaseReport", "GetReport"})
VALUE_COMMANDS = frozenset({"GetVariables", "SetVariables", "GetConfiguration", "ChangeConfiguration"})
_SET_OK = frozenset({"Accepted", "RebootRequired"})
_EVENT_TRIGGERS = frozenset({"Delta", "Alerting"})

RECORDS = Counter(
    "csms_device_model_records_total",
    "Events seen by the device model stage, by outcome (applied; ignored: not about the device model; "
    "undecodable; failed: the fold could not apply it, logged and skipped)",
    ["outcome"],
)
_APPLIED = RECORDS.labels("applied")
_IGNORED = RECORDS.labels("ignored")


# -- payloads ----------------------------------------------------------------------------
def _get(d: Mapping[str, Any], snake: str, camel: str) -> Any:
    return d[snake] if snake in d else d.get(camel)


def _loads(text: str) -> dict[str, Any]:
    if not text:
        return {}
    value = orjson.loads(text)
    return value if isinstance(value, dict) else {}


def _opt_int(value: Any) -> int | None:
    return None if value is None or isinstance(value, bool) else int(value)


def _key_of(item: Mapping[str, Any]) -> EntryKey:
    """The key of a {component, variable, attribute_type} object of a GetVariables /
    SetVariables request or result."""
    comp = item.get("component") or {}
    var = item.get("variable") or {}
    evse = comp.get("evse") or {}
    return entry_key(
        str(comp["name"]), str(var["name"]), component_instance=str(comp.get("instance") or ""),
        evse_id=_opt_int(evse.get("id")), connector_id=_opt_int(_get(evse, "connector_id", "connectorId")),
        variable_instance=str(var.get("instance") or ""),
        attribute_type=str(_get(item, "attribute_type", "attributeType") or ACTUAL),
    )


def _config_key(name: str) -> EntryKey:
    return entry_key("", name)


@dataclass(frozen=True, slots=True)
class ResultUpdates:
    """What a command result says about the inventory."""

    source: str
    updates: tuple[ValueUpdate, ...] = ()
    complete: bool = False   # a whole listing (1.6 GetConfiguration without keys)


def updates_of_result(body: ev.CommandResult) -> ResultUpdates | None:
    """The values a GetVariables / SetVariables / GetConfiguration / ChangeConfiguration
    result gives; None when it gives none (not such a result, refused, no request known)."""
    kind = _value_kind(body)
    if kind not in VALUE_COMMANDS:
        return None
    response = _loads(body.response_json)
    if kind == "GetVariables":
        rows = _get(response, "get_variable_result", "getVariableResult") or []
        ups = tuple(
            ValueUpdate(_key_of(r), _str_or_none(_get(r, "attribute_value", "attributeValue")))
            for r in rows if _get(r, "attribute_status", "attributeStatus") == "Accepted"
        )
        return ResultUpdates("get_variables", ups)
    if kind == "SetVariables":
        request = _loads(body.request_json)
        asked = {_key_of(d): d for d in _get(request, "set_variable_data", "setVariableData") or []}
        ups_list = []
        for r in _get(response, "set_variable_result", "setVariableResult") or []:
            if _get(r, "attribute_status", "attributeStatus") not in _SET_OK:
                continue
            sent = asked.get(_key_of(r))
            if sent is not None:
                ups_list.append(ValueUpdate(_key_of(r), _str_or_none(_get(sent, "attribute_value", "attributeValue"))))
        return ResultUpdates("set_variables", tuple(ups_list))
    if kind == "GetConfiguration":
        if body.status != "Accepted":
            return None
        keys = []
        for k in _get(response, "configuration_key", "configurationKey") or []:
            name = k.get("key")
            if not isinstance(name, str) or not name:
                continue
            mutability = "ReadOnly" if bool(k.get("readonly")) else "ReadWrite"
            keys.append(ValueUpdate(_config_key(name), _str_or_none(k.get("value")), mutability=mutability))
        whole = bool(body.request_json) and not _loads(body.request_json).get("key")
        return ResultUpdates("get_configuration", tuple(keys), complete=whole)
    if kind == "ChangeConfiguration":
        if body.status not in _SET_OK:
            return None
        request = _loads(body.request_json)
        name = request.get("key")
        if not isinstance(name, str) or not name:
            return None
        return ResultUpdates("change_configuration", (ValueUpdate(_config_key(name), _str_or_none(request.get("value"))),))
    return None


def _value_kind(body: ev.CommandResult) -> str:
    return body.command_type if body.command_type in VALUE_COMMANDS else body.ocpp_action


def may_touch(body: ev.Body) -> bool:
    """Whether `_fold` can do anything with an event of this body: a report command's
    CommandIssued, a report or value command's CommandResult, a ReportPart, an
    EventReport. The others are counted as ignored before any document is read (a
    station with only those in a batch costs no read)."""
    if isinstance(body, ev.CommandIssued):
        return _report_command(body)
    if isinstance(body, ev.CommandResult):
        return _report_command(body) or _value_kind(body) in VALUE_COMMANDS
    return isinstance(body, (ev.ReportPart, ev.EventReport))


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def entries_of_part(part: ev.ReportPart, at: datetime) -> tuple[Entry, ...]:
    """A NotifyReport part's items: one entry per reported attribute."""
    out: list[Entry] = []
    for datum in part.data:
        c, v, ch = datum.component, datum.variable, datum.characteristics
        for attr in datum.attributes:
            key = entry_key(c.name, v.name, component_instance=c.instance, evse_id=c.evse_id,
                            connector_id=c.connector_id, variable_instance=v.instance, attribute_type=attr.type)
            out.append(Entry(
                key, attr.value, mutability=attr.mutability, persistent=attr.persistent, constant=attr.constant,
                unit=ch.unit if ch else "", data_type=ch.data_type if ch else "",
                min_limit=ch.min_limit if ch else None, max_limit=ch.max_limit if ch else None,
                values_list=ch.values_list if ch else "", source="report", updated_at=at,
            ))
    return tuple(out)


def event_updates(body: ev.EventReport) -> tuple[ValueUpdate, ...]:
    return tuple(
        ValueUpdate(entry_key(e.component.name, e.variable.name, component_instance=e.component.instance,
                              evse_id=e.component.evse_id, connector_id=e.component.connector_id,
                              variable_instance=e.variable.instance), e.actual_value)
        for e in body.events if e.trigger in _EVENT_TRIGGERS and e.actual_value != ""
    )


def _report_command(body: ev.CommandIssued | ev.CommandResult) -> bool:
    return body.command_type in REPORT_COMMANDS or (body.command_type not in VALUE_COMMANDS and body.ocpp_action in REPORT_COMMANDS)


def _is_configuration(body: ev.CommandResult) -> bool:
    return body.command_type == "GetConfiguration" or (
        body.command_type not in VALUE_COMMANDS and body.ocpp_action == "GetConfiguration")


def _request_id(payload_json: str) -> int | None:
    value = _loads(payload_json).get("requestId")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- the fold of one station's events -----------------------------------------------------
@dataclass
class _Station:
    inventory: Inventory
    reports: dict[int, ReportAssembly]
    report_versions: dict[int, int]
    touched_reports: set[int] = field(default_factory=set)
    changed: bool = False


def _request_of(st: _Station, body: ev.CommandIssued | ev.CommandResult) -> int | None:
    rid = _request_id(body.payload_json if isinstance(body, ev.CommandIssued) else body.request_json)
    return rid if rid is not None else st.inventory.commands.get(body.command_id)


def _fold(st: _Station, env: ev.Envelope) -> bool:
    """Apply one event; True if it was about the device model."""
    body, at = env.body, env.received_at
    inv = st.inventory
    if isinstance(body, ev.CommandIssued):
        if not _report_command(body):
            return False
        rid = _request_of(st, body)
        if rid is None:
            return False
        base = str(_loads(body.payload_json).get("reportBase") or "")
        st.reports[rid] = report_requested(st.reports.get(rid), env.station_id, rid, report_base=base,
                                          command_id=body.command_id, at=at)
        st.touched_reports.add(rid)
        st.inventory = track_command(inv, body.command_id, rid)
    elif isinstance(body, ev.CommandResult):
        if _report_command(body):
            rid = _request_of(st, body)
            if rid is None:
                return False
            current = st.reports.get(rid) or report_requested(None, env.station_id, rid, report_base="",
                                                              command_id=body.command_id, at=at)
            st.reports[rid] = answer_report(current, body.status, at)
            st.touched_reports.add(rid)
            return True
        found = updates_of_result(body)
        if _is_configuration(body):
            rid = configuration_request_id(body.command_id)
            st.reports[rid] = configuration_report(st.reports.get(rid), env.station_id, body.command_id, body.status,
                                                   len(found.updates) if found else 0, at)
            st.touched_reports.add(rid)
        if found is None:
            return body.command_type in VALUE_COMMANDS
        st.inventory = apply_values(
            inv, found.updates, source=found.source, at=at,
            replace_sources=("get_configuration", "change_configuration") if found.complete else (),
            component="" if found.complete else None,
        )
    elif isinstance(body, ev.ReportPart):
        rid = body.request_id
        current = st.reports.get(rid) or ReportAssembly(env.station_id, rid, updated_at=at)
        assembled = add_report_part(current, body.seq_no, body.tbc, entries_of_part(body, at), at)
        if assembled.complete and assembled.parts:
            st.inventory, assembled = apply_report(inv, assembled, at)
        st.reports[rid] = assembled
        st.touched_reports.add(rid)
    elif isinstance(body, ev.EventReport):
        st.inventory = apply_values(inv, event_updates(body), source="event", at=at)
    else:
        return False
    st.changed = st.changed or st.inventory is not inv
    return True


def _ms(dt: datetime | None) -> datetime | None:
    if dt is None or dt.microsecond % 1000 == 0:
        return dt
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def _as_stored(inv: Inventory, base: Inventory) -> Inventory:
    """The inventory as its document reads back: instants to the millisecond (the fold
    keeps receive times as they came; the document keeps milliseconds). Entries still the
    very ones of `base` (read back, or kept as stored) are so already."""
    entries: dict[EntryKey, Entry] | None = None
    held = base.entries
    for key, e in inv.entries.items():
        if held.get(key) is e:
            continue
        at = _ms(e.updated_at)
        if at is not e.updated_at:
            if entries is None:
                entries = dict(inv.entries)
            entries[key] = replace(e, updated_at=at)
    updated = _ms(inv.updated_at)
    if entries is None and updated is inv.updated_at:
        return inv
    return replace(inv, entries=inv.entries if entries is None else entries, updated_at=updated)


def _report_ids(envs: Iterable[ev.Envelope], inventory: Inventory) -> set[int]:
    """The reports a station's events of this batch may touch (read before the fold)."""
    commands = dict(inventory.commands)
    out: set[int] = set()
    for env in envs:
        body = env.body
        if isinstance(body, ev.ReportPart):
            out.add(body.request_id)
        elif isinstance(body, ev.CommandResult) and _is_configuration(body):
            out.add(configuration_request_id(body.command_id))
        elif isinstance(body, (ev.CommandIssued, ev.CommandResult)) and _report_command(body):
            rid = _request_id(body.payload_json if isinstance(body, ev.CommandIssued) else body.request_json)
            if rid is None:
                rid = commands.get(body.command_id)
            if rid is not None:
                out.add(rid)
                commands[body.command_id] = rid
    return out


class DeviceModelStage:
    """The stage's handler. `cache_stations`: inventories kept decoded between batches
    (least recently used first out; 0 keeps none), as their documents read back. A kept
    inventory is used only when the stored document is the very one it was read from or
    written as: same version and same `etag`, a token each write stamps into the
    document; any other document is decoded afresh."""

    def __init__(self, docs: DocumentStore, *, cache_stations: int = 0) -> None:
        self._docs = docs
        self._cache_max = max(0, int(cache_stations))
        self._cache: OrderedDict[str, tuple[int, str, Inventory]] = OrderedDict()  # station -> (version, etag, as stored)
        self._etag_prefix = secrets.token_hex(6)
        self._writes = 0

    async def consume(self, records: Sequence[Record]) -> None:
        by_station: dict[str, list[ev.Envelope]] = {}
        ignored = 0
        for record in records:
            ce_type = record.header("ce_type")
            if ce_type is not None and ce_type not in RELEVANT_TYPES:
                ignored += 1
                continue
            try:
                env = codec.decode_event(record.value)
            except Exception as exc:  # permanent: the same bytes never decode
                RECORDS.labels("undecodable").inc()
                log.error("undecodable event %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
                continue
            if not may_touch(env.body):
                ignored += 1
                continue
            by_station.setdefault(env.station_id, []).append(env)
        if ignored:
            _IGNORED.inc(ignored)
        if by_station:
            await self._apply(by_station)

    def _inventory(self, station_id: str, doc: Mapping[str, Any] | None) -> Inventory:
        if doc is None:
            return Inventory(station_id)
        kept = self._cache.get(station_id)
        if kept is not None and kept[0] == doc.get("version") and kept[1] == doc.get("etag"):
            self._cache.move_to_end(station_id)
            return kept[2]
        try:
            inventory = inventory_from_doc(doc)
        except Exception:
            log.exception("station=%s device model document unreadable; starting afresh", station_id)
            return Inventory(station_id, version=int(doc.get("version") or 0))
        etag = doc.get("etag")
        if isinstance(etag, str) and etag:
            self._keep(station_id, inventory.version, etag, inventory)
        return inventory

    def _keep(self, station_id: str, version: int, etag: str, inventory: Inventory) -> None:
        if self._cache_max <= 0:
            return
        self._cache[station_id] = (version, etag, inventory)
        self._cache.move_to_end(station_id)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    async def _apply(self, by_station: Mapping[str, list[ev.Envelope]]) -> None:
        docs = await self._docs.get_docs(kinds.DEVICE_MODEL, list(by_station))
        stations: dict[str, _Station] = {}
        wanted: list[str] = []
        for station_id, envs in by_station.items():
            inventory = self._inventory(station_id, docs.get(station_id))
            stations[station_id] = _Station(inventory, {}, {})
            wanted.extend(report_doc_id(station_id, rid) for rid in _report_ids(envs, inventory))
        report_docs = await self._docs.get_docs(kinds.REPORT, wanted) if wanted else {}
        for doc_id, rdoc in report_docs.items():
            station_id = doc_id.rsplit("/", 1)[0]
            try:
                report = report_from_doc(rdoc)
            except Exception:
                log.exception("report document %s unreadable; starting afresh", doc_id)
                continue
            if station_id in stations:
                stations[station_id].reports[report.request_id] = report
                stations[station_id].report_versions[report.request_id] = int(rdoc.get("version") or 0)
        inventories: list[DocWrite] = []
        written: list[tuple[str, str, Inventory]] = []
        bases = {station_id: st.inventory for station_id, st in stations.items()}
        reports: list[DocWrite] = []
        applied = ignored = 0
        for station_id, envs in by_station.items():
            st = stations[station_id]
            for env in envs:
                try:
                    done = _fold(st, env)
                except Exception as exc:
                    RECORDS.labels("failed").inc()
                    log.error("station=%s %s %s cannot be applied to the device model, skipped: %r",
                              station_id, env.type_name, env.event_id, exc)
                    continue
                if done:
                    applied += 1
                else:
                    ignored += 1
            if st.changed:
                version = st.inventory.version + 1
                inv = replace(st.inventory, version=version)
                self._writes += 1
                etag = f"{self._etag_prefix}-{self._writes}"
                doc = inventory_to_doc(inv)
                doc["etag"] = etag
                inventories.append(DocWrite(station_id, doc, version=version))
                if self._cache_max > 0:
                    written.append((station_id, etag, _as_stored(inv, bases[station_id])))
            for rid in sorted(st.touched_reports):
                version = st.report_versions.get(rid, 0) + 1
                reports.append(DocWrite(report_doc_id(station_id, rid), report_to_doc(st.reports[rid], version=version),
                                        parent=station_id, version=version))
        if applied:
            _APPLIED.inc(applied)
        if ignored:
            _IGNORED.inc(ignored)
        # inventories first: a report reads "complete" only once its inventory can be read
        # (a reader polls the report, then lists the variables). A failure between the two
        # writes redelivers the batch, which completes the report again onto the same inventory.
        if inventories:
            await self._docs.put_docs(kinds.DEVICE_MODEL, inventories)
            for station_id, etag, inv in written:  # kept once stored, never before
                self._keep(station_id, inv.version, etag, inv)
        if reports:
            await self._docs.put_docs(kinds.REPORT, reports)


def build_device_model(rt: Runtime) -> Processor:
    """The `stations-device-model` stage as a processor of its own consumer group."""
    stage = DeviceModelStage(rt.store, cache_stations=rt.settings.device_model_cache_stations)

    def store_healthy() -> bool:
        return bool(rt.store.healthy)

    return Processor(
        NAME, rt.bus, topics.EVENTS, CONSUMER_GROUP, stage.consume,
        max_records=rt.settings.batch_max_records, healthy=[store_healthy],
    )

"""A station's device model: the inventory of its variables, and the reports that fill it.

OCPP 2.0.1 describes a station as components (with an instance, an EVSE and a
connector) carrying variables (with an instance), each with up to four attributes
(Actual, Target, MinSet, MaxSet). The inventory holds one `Entry` per (component,
component instance, evse, connector, variable, variable instance, attribute type): its
value, mutability, persistence, characteristics (unit, data type, limits, values list),
where the value came from (`source`) and when.

A report (GetBaseReport / GetReport) arrives as NotifyReport parts numbered 0..n, in
any order and possibly redelivered; the part with `tbc=false` is the last. A
`ReportAssembly` collects parts by `seq_no` and is complete when the last part arrived
and every number up to it is present; only then is it applied: a FullInventory REPLACES
the inventory's entries of source "report" (an entry the station no longer reports
disappears); a ConfigurationInventory replaces those within its scope, the variables
with a writable attribute (the read-only ones a full report gave stay); SummaryInventory
and GetReport (criteria) MERGE. Parts of a complete report that arrive again change
nothing.

Every other update is one value of one entry (GetVariables / SetVariables results,
1.6 GetConfiguration / ChangeConfiguration, NotifyEvent actual values); an update older
than what the entry holds is ignored, so redelivered or reordered results do not roll a
value back. 1.6 configuration keys are entries of component "" with the key as variable.

Pure: the stage (services/stations/device_model.py) reads events and documents and
turns payloads into these values; services/stations/device_model_documents.py stores them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

__all__ = [
    "ACTUAL",
    "FULL_BASES",
    "MAX_TRACKED_COMMANDS",
    "REJECTING_ANSWERS",
    "SOURCES",
    "Entry",
    "EntryKey",
    "Inventory",
    "ReportAssembly",
    "ValueUpdate",
    "add_report_part",
    "answer_report",
    "configuration_report",
    "configuration_request_id",
    "apply_report",
    "apply_values",
    "entry_key",
    "report_requested",
    "sort_key",
    "track_command",
]

ACTUAL = "Actual"
# Report bases whose complete report is the station's whole (configuration) inventory.
FULL_BASES = frozenset({"FullInventory", "ConfigurationInventory"})
# Station answers to GetBaseReport / GetReport after which no part will come.
REJECTING_ANSWERS = frozenset({"Rejected", "NotSupported", "EmptyResultSet", "StationOffline"})
_WRITABLE = frozenset({"ReadWrite", "WriteOnly"})
SOURCES = ("report", "get_variables", "set_variables", "get_configuration", "change_configuration", "event")
# Report commands remembered per station (command id -> request id), for results that do
# not carry their request (records of gateways older than `CommandResult.request_json`).
MAX_TRACKED_COMMANDS = 32

# (component, component instance, evse id, connector id, variable, variable instance, attribute type)
EntryKey = tuple[str, str, int | None, int | None, str, str, str]


def entry_key(
    component: str, variable: str, *, component_instance: str = "", evse_id: int | None = None,
    connector_id: int | None = None, variable_instance: str = "", attribute_type: str = ACTUAL,
) -> EntryKey:
    """The key; a connector id 0 (or one without an EVSE) is no connector."""
    connector = connector_id if evse_id is not None and connector_id else None
    return (component, component_instance, evse_id, connector, variable, variable_instance, attribute_type or ACTUAL)


def sort_key(key: EntryKey) -> tuple[str, str, int, int, str, str, str]:
    """A total order of keys (None ids first), for listings and cursors."""
    c, ci, e, k, v, vi, a = key
    return (c, ci, -1 if e is None else e, -1 if k is None else k, v, vi, a)


@dataclass(frozen=True, slots=True)
class Entry:
    key: EntryKey
    value: str | None = None
    mutability: str = ""
    persistent: bool = False
    constant: bool = False
    unit: str = ""
    data_type: str = ""
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: str = ""
    source: str = "report"
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ValueUpdate:
    """One attribute's value as a result or an event told it. `mutability` is set when
    the source says it (1.6 GetConfiguration's `readonly`), else the entry keeps its own."""

    key: EntryKey
    value: str | None
    mutability: str = ""


@dataclass(frozen=True, slots=True)
class Inventory:
    station_id: str
    entries: Mapping[EntryKey, Entry] = field(default_factory=dict)
    commands: Mapping[str, int] = field(default_factory=dict)  # report command id -> request id (newest last)
    version: int = 0
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReportAssembly:
    station_id: str
    request_id: int
    report_base: str = ""            # GetBaseReport's base; "" for GetReport (criteria) or unknown
    command_id: str = ""
    requested_at: datetime | None = None
    station_status: str | None = None  # the station's answer to the request
    parts: Mapping[int, tuple[Entry, ...]] = field(default_factory=dict)  # seq_no -> items, until applied
    seen: frozenset[int] = frozenset()   # every seq_no received
    last_seq: int | None = None          # seq_no of the part with tbc=false
    items: int = 0                       # items over the parts received
    completed_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def complete(self) -> bool:
        return self.completed_at is not None

    @property
    def status(self) -> str:
        if self.complete:
            return "complete"
        if self.station_status in REJECTING_ANSWERS and not self.seen:
            return "rejected"
        return "assembling" if self.seen else "requested"


# -- reports -----------------------------------------------------------------------------
def report_requested(
    current: ReportAssembly | None, station_id: str, request_id: int, *, report_base: str, command_id: str,
    at: datetime,
) -> ReportAssembly:
    """A GetBaseReport / GetReport was sent. The same command again changes nothing; a new
    command reusing the request id starts over (the station answers it afresh)."""
    if current is not None and (current.command_id == command_id or (current.command_id == "" and current.seen)):
        # the same request, or parts that came before their request was seen
        return replace(current, report_base=current.report_base or report_base, command_id=command_id,
                       requested_at=current.requested_at or at)
    return ReportAssembly(station_id, request_id, report_base=report_base, command_id=command_id,
                          requested_at=at, updated_at=at)


def answer_report(report: ReportAssembly, status: str, at: datetime) -> ReportAssembly:
    if report.complete or report.station_status == status:
        return report
    return replace(report, station_status=status, updated_at=at)


def add_report_part(report: ReportAssembly, seq_no: int, tbc: bool, items: Iterable[Entry], at: datetime) -> ReportAssembly:
    """One NotifyReport part. Complete when the last part (tbc=false) and all seq_nos up
    to it are in; a part seen before (or of a complete report) changes nothing."""
    if report.complete or seq_no in report.seen or seq_no < 0:
        return report
    batch = tuple(items)
    parts = {**report.parts, seq_no: batch}
    seen = report.seen | {seq_no}
    last = seq_no if not tbc else report.last_seq
    done = last is not None and all(n in seen for n in range(last + 1))
    return replace(report, parts=parts, seen=seen, last_seq=last, items=report.items + len(batch),
                   completed_at=at if done else None, updated_at=at)


def apply_report(inventory: Inventory, report: ReportAssembly, at: datetime) -> tuple[Inventory, ReportAssembly]:
    """A complete report into the inventory; the report keeps its counts, not its items."""
    if not report.complete or not report.parts:
        return inventory, report
    entries = dict(inventory.entries)
    if report.report_base == "FullInventory":
        entries = {k: e for k, e in entries.items() if e.source != "report"}
    elif report.report_base == "ConfigurationInventory":
        # its scope: the variables with a writable attribute (read-only ones stay as reported)
        configurable = {k[:6] for k, e in entries.items() if e.source == "report" and e.mutability in _WRITABLE}
        entries = {k: e for k, e in entries.items() if not (e.source == "report" and k[:6] in configurable)}
    for seq in sorted(report.parts):
        for item in report.parts[seq]:
            held = entries.get(item.key)
            if held is not None and held.source != "report" and _newer(held.updated_at, item.updated_at):
                continue  # a value read or set after the station generated the report
            entries[item.key] = item
    return replace(inventory, entries=entries, updated_at=at), replace(report, parts={})


def configuration_request_id(command_id: str) -> int:
    """The report request id of a 1.6 GetConfiguration (which has none on the wire): derived
    from its command id, so the API that sent it and this stage name the same report."""
    return int.from_bytes(hashlib.sha256(command_id.encode()).digest()[:4], "big") & 0x7FFFFFFF or 1


def configuration_report(
    current: ReportAssembly | None, station_id: str, command_id: str, status: str, items: int, at: datetime,
) -> ReportAssembly:
    """A 1.6 GetConfiguration answer as a report: complete with its keys when Accepted
    (the answer is the whole report), else rejected."""
    if current is not None and current.command_id == command_id and (current.complete or current.station_status):
        return current
    request_id = configuration_request_id(command_id)
    if status != "Accepted":
        return ReportAssembly(station_id, request_id, command_id=command_id, requested_at=at, station_status=status,
                              updated_at=at)
    return ReportAssembly(station_id, request_id, report_base="ConfigurationInventory", command_id=command_id,
                          requested_at=at, station_status=status, seen=frozenset({0}), last_seq=0, items=items,
                          completed_at=at, updated_at=at)


# -- single values -----------------------------------------------------------------------
def apply_values(
    inventory: Inventory, updates: Iterable[ValueUpdate], *, source: str, at: datetime,
    replace_sources: Iterable[str] = (), component: str | None = None,
) -> Inventory:
    """Set values (newer-wins per entry). `replace_sources` (with `component`): a complete
    listing (1.6 GetConfiguration without keys) first drops the entries of those sources
    (of that component) that the listing does not name."""
    entries = dict(inventory.entries)
    todo = list(updates)
    dropping = frozenset(replace_sources)
    if dropping:
        named = {u.key for u in todo}
        entries = {
            k: e for k, e in entries.items()
            if not (e.source in dropping and (component is None or k[0] == component) and k not in named
                    and not _newer(e.updated_at, at))
        }
    changed = bool(dropping) and len(entries) != len(inventory.entries)
    for u in todo:
        held = entries.get(u.key)
        if held is not None and _newer(held.updated_at, at):
            continue
        if held is None:
            entries[u.key] = Entry(u.key, u.value, mutability=u.mutability, source=source, updated_at=at)
        else:
            entries[u.key] = replace(held, value=u.value, mutability=u.mutability or held.mutability,
                                     source=source, updated_at=at)
        changed = True
    if not changed:
        return inventory
    return replace(inventory, entries=entries, updated_at=at)


def track_command(inventory: Inventory, command_id: str, request_id: int) -> Inventory:
    if inventory.commands.get(command_id) == request_id:
        return inventory
    commands = {k: v for k, v in inventory.commands.items() if k != command_id}
    commands[command_id] = request_id
    while len(commands) > MAX_TRACKED_COMMANDS:
        commands.pop(next(iter(commands)))
    return replace(inventory, commands=commands)


def _newer(held: datetime | None, incoming: datetime | None) -> bool:
    """The held value is strictly newer than the incoming one."""
    return held is not None and incoming is not None and held > incoming

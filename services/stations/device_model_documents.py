"""The device model stage's documents (ADR 016): DEVICE_MODEL and REPORT.

- DEVICE_MODEL (id: station id; versioned): `inventory_to_doc` / `inventory_from_doc`.
  The entries as a list of objects (the key's parts spelled out, defaults left out), and
  `commands`, the recent report commands (command id -> request id).
- REPORT (id: `<station>/<request id>`, parent: station; versioned): a report being
  assembled: `report_to_doc` / `report_from_doc`. The items of parts received stay in
  `parts` until the report is complete and applied; then only the counts remain.

The device model stage is the one writer of both; the API reads them through this module.
Instants are `to_ocpp` strings (UTC, Z, milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from services.common.timeutil import parse_ocpp, to_ocpp
from services.stations.domain.device_model import Entry, EntryKey, Inventory, ReportAssembly

__all__ = [
    "entry_from_dict",
    "entry_to_dict",
    "inventory_from_doc",
    "inventory_to_doc",
    "report_doc_id",
    "report_from_doc",
    "report_to_doc",
]


def report_doc_id(station_id: str, request_id: int) -> str:
    return f"{station_id}/{request_id}"


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else to_ocpp(dt)


def _dt(value: Any) -> datetime | None:
    return None if not value else parse_ocpp(str(value))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def entry_to_dict(e: Entry) -> dict[str, Any]:
    return _entry_dict(e, _iso)


def _entry_dict(e: Entry, iso: Callable[[datetime | None], str | None]) -> dict[str, Any]:
    """The entry as a dict: the key's parts spelled out, defaults (None, "", False) left
    out. Written out field by field: an inventory's every write encodes all its entries."""
    c, ci, evse, conn, v, vi, a = e.key
    out: dict[str, Any] = {"component": c, "variable": v, "attribute_type": a}
    if ci:
        out["component_instance"] = ci
    if evse is not None:
        out["evse_id"] = evse
    if conn is not None:
        out["connector_id"] = conn
    if vi:
        out["variable_instance"] = vi
    if e.value is not None:
        out["value"] = e.value
    if e.mutability:
        out["mutability"] = e.mutability
    if e.persistent:
        out["persistent"] = e.persistent
    if e.constant:
        out["constant"] = e.constant
    if e.unit:
        out["unit"] = e.unit
    if e.data_type:
        out["data_type"] = e.data_type
    if e.min_limit is not None:
        out["min_limit"] = e.min_limit
    if e.max_limit is not None:
        out["max_limit"] = e.max_limit
    if e.values_list:
        out["values_list"] = e.values_list
    out["source"] = e.source
    out["updated_at"] = iso(e.updated_at)
    return out


def _memo_iso() -> Callable[[datetime | None], str | None]:
    """`_iso` remembering its answers: the entries of one document share a few instants
    (a report's entries all carry its time)."""
    memo: dict[datetime, str] = {}

    def iso(dt: datetime | None) -> str | None:
        if dt is None:
            return None
        text = memo.get(dt)
        if text is None:
            text = memo[dt] = to_ocpp(dt)
        return text

    return iso


def _memo_dt() -> Callable[[Any], datetime | None]:
    """`_dt` remembering its answers (the same instant is one shared, immutable object)."""
    memo: dict[Any, datetime | None] = {}

    def dt(value: Any) -> datetime | None:
        try:
            return memo[value]
        except KeyError:
            out = memo[value] = _dt(value)
            return out
        except TypeError:  # unhashable junk: let `_dt` say what is wrong with it
            return _dt(value)

    return dt


def entry_from_dict(d: Mapping[str, Any]) -> Entry:
    return _entry_of(d, _dt)


def _entry_of(d: Mapping[str, Any], dt: Callable[[Any], datetime | None]) -> Entry:
    evse = _opt_int(d.get("evse_id"))
    connector = _opt_int(d.get("connector_id"))
    key: EntryKey = (
        str(d["component"]), str(d.get("component_instance") or ""), evse,
        connector if evse is not None and connector else None,  # as `entry_key` has it
        str(d["variable"]), str(d.get("variable_instance") or ""), str(d.get("attribute_type") or "Actual"),
    )
    value = d.get("value")
    return Entry(
        key, None if value is None else str(value), str(d.get("mutability") or ""),
        bool(d.get("persistent")), bool(d.get("constant")), str(d.get("unit") or ""),
        str(d.get("data_type") or ""), _opt_float(d.get("min_limit")),
        _opt_float(d.get("max_limit")), str(d.get("values_list") or ""),
        str(d.get("source") or "report"), dt(d.get("updated_at")),
    )


def inventory_to_doc(inv: Inventory) -> dict[str, Any]:
    iso = _memo_iso()
    return {
        "station_id": inv.station_id,
        "entries": [_entry_dict(e, iso) for e in inv.entries.values()],
        "commands": dict(inv.commands),
        "version": inv.version,
        "updated_at": _iso(inv.updated_at),
    }


def inventory_from_doc(d: Mapping[str, Any]) -> Inventory:
    dt = _memo_dt()
    entries = [_entry_of(x, dt) for x in d.get("entries") or ()]
    return Inventory(
        station_id=str(d["station_id"]),
        entries={e.key: e for e in entries},
        commands={str(k): int(v) for k, v in (d.get("commands") or {}).items()},
        version=int(d.get("version") or 0),
        updated_at=_dt(d.get("updated_at")),
    )


def report_to_doc(r: ReportAssembly, *, version: int) -> dict[str, Any]:
    iso = _memo_iso()
    return {
        "station_id": r.station_id,
        "request_id": r.request_id,
        "report_base": r.report_base,
        "command_id": r.command_id,
        "status": r.status,
        "station_status": r.station_status,
        "requested_at": _iso(r.requested_at),
        "seen": sorted(r.seen),
        "last_seq": r.last_seq,
        "items": r.items,
        "parts": {str(seq): [_entry_dict(e, iso) for e in part] for seq, part in sorted(r.parts.items())},
        "completed_at": _iso(r.completed_at),
        "updated_at": _iso(r.updated_at),
        "version": version,
    }


def report_from_doc(d: Mapping[str, Any]) -> ReportAssembly:
    dt = _memo_dt()
    station = d.get("station_status")
    return ReportAssembly(
        station_id=str(d["station_id"]),
        request_id=int(d["request_id"]),
        report_base=str(d.get("report_base") or ""),
        command_id=str(d.get("command_id") or ""),
        requested_at=_dt(d.get("requested_at")),
        station_status=None if station is None else str(station),
        parts={int(seq): tuple(_entry_of(x, dt) for x in part) for seq, part in (d.get("parts") or {}).items()},
        seen=frozenset(int(n) for n in d.get("seen") or ()),
        last_seq=_opt_int(d.get("last_seq")),
        items=int(d.get("items") or 0),
        completed_at=_dt(d.get("completed_at")),
        updated_at=_dt(d.get("updated_at")),
    )

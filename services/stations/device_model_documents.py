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

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.common.timeutil import parse_ocpp, to_ocpp
from services.stations.domain.device_model import Entry, EntryKey, Inventory, ReportAssembly, entry_key

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
    c, ci, evse, conn, v, vi, a = e.key
    out: dict[str, Any] = {"component": c, "variable": v, "attribute_type": a}
    optional: dict[str, Any] = {
        "component_instance": ci or None, "evse_id": evse, "connector_id": conn, "variable_instance": vi or None,
        "value": e.value, "mutability": e.mutability or None, "persistent": e.persistent or None,
        "constant": e.constant or None, "unit": e.unit or None, "data_type": e.data_type or None,
        "min_limit": e.min_limit, "max_limit": e.max_limit, "values_list": e.values_list or None,
    }
    out.update({k: val for k, val in optional.items() if val is not None})
    out["source"] = e.source
    out["updated_at"] = _iso(e.updated_at)
    return out


def entry_from_dict(d: Mapping[str, Any]) -> Entry:
    key: EntryKey = entry_key(
        str(d["component"]), str(d["variable"]), component_instance=str(d.get("component_instance") or ""),
        evse_id=_opt_int(d.get("evse_id")), connector_id=_opt_int(d.get("connector_id")),
        variable_instance=str(d.get("variable_instance") or ""), attribute_type=str(d.get("attribute_type") or "Actual"),
    )
    value = d.get("value")
    return Entry(
        key, None if value is None else str(value), mutability=str(d.get("mutability") or ""),
        persistent=bool(d.get("persistent")), constant=bool(d.get("constant")), unit=str(d.get("unit") or ""),
        data_type=str(d.get("data_type") or ""), min_limit=_opt_float(d.get("min_limit")),
        max_limit=_opt_float(d.get("max_limit")), values_list=str(d.get("values_list") or ""),
        source=str(d.get("source") or "report"), updated_at=_dt(d.get("updated_at")),
    )


def inventory_to_doc(inv: Inventory) -> dict[str, Any]:
    return {
        "station_id": inv.station_id,
        "entries": [entry_to_dict(e) for e in inv.entries.values()],
        "commands": dict(inv.commands),
        "version": inv.version,
        "updated_at": _iso(inv.updated_at),
    }


def inventory_from_doc(d: Mapping[str, Any]) -> Inventory:
    entries = [entry_from_dict(x) for x in d.get("entries") or ()]
    return Inventory(
        station_id=str(d["station_id"]),
        entries={e.key: e for e in entries},
        commands={str(k): int(v) for k, v in (d.get("commands") or {}).items()},
        version=int(d.get("version") or 0),
        updated_at=_dt(d.get("updated_at")),
    )


def report_to_doc(r: ReportAssembly, *, version: int) -> dict[str, Any]:
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
        "parts": {str(seq): [entry_to_dict(e) for e in part] for seq, part in sorted(r.parts.items())},
        "completed_at": _iso(r.completed_at),
        "updated_at": _iso(r.updated_at),
        "version": version,
    }


def report_from_doc(d: Mapping[str, Any]) -> ReportAssembly:
    station = d.get("station_status")
    return ReportAssembly(
        station_id=str(d["station_id"]),
        request_id=int(d["request_id"]),
        report_base=str(d.get("report_base") or ""),
        command_id=str(d.get("command_id") or ""),
        requested_at=_dt(d.get("requested_at")),
        station_status=None if station is None else str(station),
        parts={int(seq): tuple(entry_from_dict(x) for x in part) for seq, part in (d.get("parts") or {}).items()},
        seen=frozenset(int(n) for n in d.get("seen") or ()),
        last_seq=_opt_int(d.get("last_seq")),
        items=int(d.get("items") or 0),
        completed_at=_dt(d.get("completed_at")),
        updated_at=_dt(d.get("updated_at")),
    )

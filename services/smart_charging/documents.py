"""The smart-charging processor's documents: its "site_state" (written here) and the
"site" documents it reads (the API writes them).

A site's state document is `state_to_doc(state)` (the pure `SiteState`: limits,
configuration, sessions (with their EV's charging needs), the outside limits the stations
reported (`external_limits`), the stations that do not take profiles (`no_profiles`) and
the needs waiting for their session (`pending_needs`): the last three absent from
documents written before ADR 018, read as empty; the allocation is not stored, it is recomputed on reading)
plus the processor's own fields: `version` (the versioned write that keeps one writer
per site, ADR 006), `site_phases`, `site_version` (the last SiteUpdated version
applied), `outbox` (planned commands not yet known as sent), `issued` (recent TxProfile
commands by id, to correlate the stations' answers) and `updated_at`. Documents written
before the limits became version-neutral also hold `station_versions` (the OCPP version
per station): it is no longer needed and is dropped at the next write; their outbox
entries carry no `command_type` and are sent as they were built (`SetChargingProfile`).

`SiteStates` reads and writes these documents. It keeps the states this consumer last
read or wrote: a state read back unchanged (same version and write time: nobody else
wrote it) is taken from memory instead of being rebuilt from its document, which re-runs
the allocator. `Sites` reads the API's site documents (a dict each, as stored).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.common import kinds
from services.common.store.port import DocumentStore, DocWrite
from services.common.timeutil import parse_ocpp, to_ocpp
from services.smart_charging.commands import LEGACY_COMMAND_TYPE, PlannedCommand
from services.smart_charging.domain import (
    ActiveSession,
    ChargingNeeds,
    NoProfiles,
    PendingNeeds,
    SiteConfig,
    SiteState,
)
from services.smart_charging.domain.site_state import allocate_site

__all__ = [
    "SiteDoc",
    "SiteStates",
    "Sites",
    "planned_from_json",
    "planned_to_json",
    "site_doc_from_json",
    "site_doc_to_json",
    "state_from_doc",
    "state_to_doc",
    "valid_phases",
]


# ------------------------------------------------------------------ the pure state


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else to_ocpp(value)


def _untime(value: str | None) -> datetime | None:
    return None if value is None else parse_ocpp(value)


def state_to_doc(state: SiteState) -> dict[str, Any]:
    """JSON-serializable dict of a `SiteState` (the "site_state" document's core).

    Amps as decimal strings, times as OCPP timestamps (millisecond precision). The
    allocation is not stored: it is recomputed from the rest by :func:`state_from_doc`.
    """
    cfg = state.config
    return {
        "site_id": state.site_id,
        "limit_a": str(state.limit_a),
        "external_cap_a": _dec(state.external_cap_a),
        "config": {
            "step_a": str(cfg.step_a),
            "headroom_a": str(cfg.headroom_a),
            "underuse_margin_a": str(cfg.underuse_margin_a),
            "saturation_margin_a": str(cfg.saturation_margin_a),
            "settle_s": cfg.settle.total_seconds(),
        },
        "sessions": [
            {
                "station_id": s.station_id,
                "evse_id": s.evse_id,
                "transaction_id": s.transaction_id,
                "phases": s.phases,
                "min_a": str(s.min_a),
                "max_a": str(s.max_a),
                "priority": s.priority,
                "started_at": to_ocpp(s.started_at),
                "measured_a": _dec(s.measured_a),
                "controllable": s.controllable,
                "limit_a": _dec(s.limit_a),
                "limit_set_at": _time(s.limit_set_at),
                "ev_cap_a": _dec(s.ev_cap_a),
                "ev_min_a": _dec(s.ev_min_a),
                "ev_max_a": _dec(s.ev_max_a),
                "energy_wh": s.energy_wh,
                "departure_at": _time(s.departure_at),
                "needs_at": _time(s.needs_at),
            }
            for _, s in sorted(state.sessions.items())
        ],
        "external_limits": [
            {"station_id": station_id, "evse_id": evse_id, "source": source, "limit_a": str(limit)}
            for (station_id, evse_id, source), limit in sorted(state.external_limits.items())
        ],
        "no_profiles": [
            {"station_id": station_id, "since": to_ocpp(mark.since), "reason": mark.reason}
            for station_id, mark in sorted(state.no_profiles.items())
        ],
        "pending_needs": [_pending_to_doc(key, p) for key, p in state.pending_needs.items()],
    }


def _pending_to_doc(key: str, pending: PendingNeeds) -> dict[str, Any]:
    n = pending.needs
    return {
        "key": key,
        "station_id": n.station_id,
        "evse_id": n.evse_id,
        "voltage_v": str(n.voltage_v),
        "ev_min_a": _dec(n.ev_min_a),
        "ev_max_a": _dec(n.ev_max_a),
        "energy_wh": n.energy_wh,
        "departure_at": _time(n.departure_at),
        "received_at": to_ocpp(pending.received_at),
    }


def _pending_from_doc(raw: Mapping[str, Any]) -> PendingNeeds:
    needs = ChargingNeeds(
        station_id=str(raw["station_id"]),
        evse_id=int(raw["evse_id"]),
        voltage_v=Decimal(raw["voltage_v"]),
        ev_min_a=_undec(raw.get("ev_min_a")),
        ev_max_a=_undec(raw.get("ev_max_a")),
        energy_wh=raw.get("energy_wh"),
        departure_at=_untime(raw.get("departure_at")),
    )
    return PendingNeeds(needs=needs, received_at=parse_ocpp(raw["received_at"]))


def state_from_doc(doc: Mapping[str, Any]) -> SiteState:
    """Inverse of :func:`state_to_doc` (the allocation is recomputed, deterministically)."""
    raw_cfg = doc.get("config") or {}
    defaults = SiteConfig()
    config = SiteConfig(
        step_a=Decimal(raw_cfg.get("step_a", defaults.step_a)),
        headroom_a=Decimal(raw_cfg.get("headroom_a", defaults.headroom_a)),
        underuse_margin_a=Decimal(raw_cfg.get("underuse_margin_a", defaults.underuse_margin_a)),
        saturation_margin_a=Decimal(raw_cfg.get("saturation_margin_a", defaults.saturation_margin_a)),
        settle=timedelta(seconds=float(raw_cfg.get("settle_s", defaults.settle.total_seconds()))),
    )
    sessions: dict[str, ActiveSession] = {}
    for raw in doc.get("sessions", []):
        session = ActiveSession(
            station_id=raw["station_id"],
            evse_id=int(raw["evse_id"]),
            transaction_id=raw["transaction_id"],
            phases=int(raw["phases"]),
            min_a=Decimal(raw["min_a"]),
            max_a=Decimal(raw["max_a"]),
            priority=int(raw["priority"]),
            started_at=parse_ocpp(raw["started_at"]),
            measured_a=_undec(raw.get("measured_a")),
            controllable=bool(raw.get("controllable", True)),
            limit_a=_undec(raw.get("limit_a")),
            limit_set_at=_untime(raw.get("limit_set_at")),
            ev_cap_a=_undec(raw.get("ev_cap_a")),
            ev_min_a=_undec(raw.get("ev_min_a")),
            ev_max_a=_undec(raw.get("ev_max_a")),
            energy_wh=raw.get("energy_wh"),
            departure_at=_untime(raw.get("departure_at")),
            needs_at=_untime(raw.get("needs_at")),
        )
        sessions[session.key] = session
    # Documents written before ADR 018 have none of the three below.
    external = {
        (str(r["station_id"]), int(r["evse_id"]), str(r.get("source", ""))): Decimal(r["limit_a"])
        for r in doc.get("external_limits") or []
    }
    marks = {
        str(r["station_id"]): NoProfiles(since=parse_ocpp(r["since"]), reason=str(r.get("reason", "")))
        for r in doc.get("no_profiles") or []
    }
    pending = {str(r["key"]): _pending_from_doc(r) for r in doc.get("pending_needs") or []}
    state = SiteState(
        site_id=doc["site_id"],
        limit_a=Decimal(doc["limit_a"]),
        external_cap_a=_undec(doc.get("external_cap_a")),
        sessions=sessions,
        config=config,
        external_limits=external,
        no_profiles=marks,
        pending_needs=pending,
    )
    allocation = allocate_site(state, sessions)
    return replace(state, allocation=allocation)


# ------------------------------------------------------------- the outbox's commands


def planned_to_json(planned: PlannedCommand) -> dict[str, Any]:
    return {
        "command_id": planned.command_id,
        "station_id": planned.station_id,
        "command_type": planned.command_type,
        "params": planned.params,
        "kind": planned.kind,
        "evse_id": planned.evse_id,
        "transaction_id": planned.transaction_id,
        "limit_a": planned.limit_a,
    }


def planned_from_json(raw: Mapping[str, Any]) -> PlannedCommand:
    """An outbox entry; one stored before `command_type` existed holds an OCPP profile
    already built for the station's version (`params.charging_profile`): it is sent as
    it was then, a `SetChargingProfile`."""
    return PlannedCommand(
        command_id=str(raw["command_id"]),
        station_id=str(raw["station_id"]),
        params=dict(raw["params"]),
        kind=str(raw.get("kind", "tx")),
        evse_id=int(raw.get("evse_id", 0)),
        transaction_id=str(raw.get("transaction_id", "")),
        limit_a=str(raw.get("limit_a", "")),
        command_type=str(raw.get("command_type") or LEGACY_COMMAND_TYPE),
    )


# ------------------------------------------------------------------ the site document


def valid_phases(value: Any, default: int = 3) -> int:
    """1 or 3 from a site's or station's `phases` (`default` when absent or invalid)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return 1 if value == 1 else 3
    return default


@dataclass
class SiteDoc:
    """A site's "site_state" document as the processor works on it.

    `stored`: read from (or written to) the store; `updated_at`: the stored document's
    write time (None: not stored yet)."""

    state: SiteState
    version: int = 0
    phases: int = 3
    outbox: list[PlannedCommand] = field(default_factory=list)
    issued: dict[str, dict[str, Any]] = field(default_factory=dict)
    site_version: int = 0
    stored: bool = False
    updated_at: str | None = None


def site_doc_to_json(sd: SiteDoc, updated_at: str) -> dict[str, Any]:
    return {
        **state_to_doc(sd.state),
        "version": sd.version,
        "site_phases": sd.phases,
        "site_version": sd.site_version,
        "outbox": [planned_to_json(c) for c in sd.outbox],
        "issued": sd.issued,
        "updated_at": updated_at,
    }


def site_doc_from_json(doc: Mapping[str, Any]) -> SiteDoc:
    updated_at = doc.get("updated_at")
    return SiteDoc(
        state=state_from_doc(doc),
        version=int(doc.get("version") or 0),
        phases=valid_phases(doc.get("site_phases")),
        outbox=[planned_from_json(raw) for raw in doc.get("outbox") or []],
        issued=dict(doc.get("issued") or {}),
        site_version=int(doc.get("site_version") or 0),
        stored=True,
        updated_at=updated_at if isinstance(updated_at, str) else None,
    )


class SiteStates:
    """The "site_state" documents (kinds.SITE_STATE), with the states last read or
    written kept in memory (bounded, oldest out first; see the module doc).

    Writes are versioned: `sd.version` is the version to write (the caller raised it);
    `put` returns False when the stored document is not at the version before it."""

    def __init__(self, docs: DocumentStore, *, max_entries: int = 10_000) -> None:
        self._docs = docs
        self.max_entries = max_entries
        self._entries: OrderedDict[str, SiteDoc] = OrderedDict()

    def _take(self, site_id: str, doc: Mapping[str, Any]) -> SiteDoc:
        hit = self._entries.get(site_id)
        if hit is not None and hit.version == doc.get("version") and hit.updated_at == doc.get("updated_at"):
            return replace(hit, outbox=list(hit.outbox), issued=dict(hit.issued))
        return site_doc_from_json(doc)

    async def get(self, site_id: str) -> SiteDoc | None:
        doc = await self._docs.get_doc(kinds.SITE_STATE, site_id)
        return None if doc is None else self._take(site_id, doc)

    async def get_many(self, site_ids: Sequence[str]) -> dict[str, SiteDoc]:
        docs = await self._docs.get_docs(kinds.SITE_STATE, list(site_ids))
        return {site_id: self._take(site_id, doc) for site_id, doc in docs.items()}

    async def site_version(self, site_id: str) -> int | None:
        """The last SiteUpdated version the stored state applied (None: no state)."""
        doc = await self._docs.get_doc(kinds.SITE_STATE, site_id)
        return None if doc is None else int(doc.get("site_version") or 0)

    async def put(self, site_id: str, sd: SiteDoc, now: datetime) -> bool:
        stamp = to_ocpp(now)
        if not await self._docs.put_doc(kinds.SITE_STATE, site_id, site_doc_to_json(sd, stamp), version=sd.version):
            return False
        sd.stored, sd.updated_at = True, stamp
        return True

    async def put_many(self, items: Sequence[tuple[str, SiteDoc]], now: datetime) -> None:
        """Versioned writes without a fence: a state already stored at a higher version
        keeps it (an older write changes nothing), and nothing says which landed."""
        if not items:
            return
        stamp = to_ocpp(now)
        await self._docs.put_docs(
            kinds.SITE_STATE, [DocWrite(site_id, site_doc_to_json(sd, stamp), version=sd.version) for site_id, sd in items]
        )
        for _, sd in items:
            sd.stored, sd.updated_at = True, stamp

    def remember(self, site_id: str, sd: SiteDoc) -> None:
        """`sd` as it is stored now (the caller no longer changes it)."""
        self._entries[site_id] = sd
        self._entries.move_to_end(site_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def delete(self, site_id: str) -> None:
        self._entries.pop(site_id, None)
        await self._docs.delete_doc(kinds.SITE_STATE, site_id)


class Sites:
    """The API's site documents (kinds.SITE), as stored: `grid_limit_a`,
    `external_limit_a`, `phases`, `deleted`."""

    def __init__(self, docs: DocumentStore) -> None:
        self._docs = docs

    async def get(self, site_id: str) -> dict[str, Any] | None:
        return await self._docs.get_doc(kinds.SITE, site_id)

    async def get_many(self, site_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await self._docs.get_docs(kinds.SITE, list(site_ids)) if site_ids else {}

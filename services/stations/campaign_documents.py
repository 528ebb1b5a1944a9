"""FIRMWARE_CAMPAIGN documents (ADR 016 §5): a `Campaign`, id = the campaign id.

The API writes a campaign on create and cancel, the campaign controller
(services/stations/campaigns.py) as it moves it on; every write is versioned
(`revision` + 1), so of two writers racing one wins and the other reads again. The parent
is `ACTIVE` while the controller follows the campaign (`is_active`), "done" after: the
controller lists the active ones only. (Cassandra keeps a document's row under a parent it
no longer has, so the controller re-reads the listed documents and skips the inactive.)

A station's state is a short object (about 200 bytes); instants are `to_ocpp` text.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.common.timeutil import parse_ocpp, to_ocpp
from services.stations.domain.campaigns import ACTIVE, Campaign, CampaignStation, is_active

__all__ = ["DONE", "campaign_from_doc", "campaign_parent", "campaign_to_doc"]

DONE = "done"


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else to_ocpp(dt)


def _dt(value: Any) -> datetime | None:
    return None if not value else parse_ocpp(str(value))


def campaign_parent(c: Campaign) -> str:
    return ACTIVE if is_active(c) else DONE


def _station_out(s: CampaignStation) -> dict[str, Any]:
    return {
        "station_id": s.station_id, "status": s.status, "attempts": s.attempts, "command_id": s.command_id,
        "request_id": s.request_id, "firmware_status": s.firmware_status, "version_before": s.version_before,
        "installed_at": _iso(s.installed_at), "started_at": _iso(s.started_at), "progress_at": _iso(s.progress_at),
        "finished_at": _iso(s.finished_at), "reason": s.reason,
    }


def _station_in(d: Mapping[str, Any]) -> CampaignStation:
    rid = d.get("request_id")
    fw = d.get("firmware_status")
    reason = d.get("reason")
    return CampaignStation(
        station_id=str(d["station_id"]), status=str(d.get("status") or "pending"), attempts=int(d.get("attempts") or 0),
        command_id=str(d.get("command_id") or ""), request_id=None if rid is None else int(rid),
        firmware_status=None if fw is None else str(fw), version_before=str(d.get("version_before") or ""),
        installed_at=_dt(d.get("installed_at")), started_at=_dt(d.get("started_at")),
        progress_at=_dt(d.get("progress_at")), finished_at=_dt(d.get("finished_at")),
        reason=None if reason is None else str(reason),
    )


def campaign_to_doc(c: Campaign) -> dict[str, Any]:
    return {
        "id": c.id,
        "status": c.status,
        "location": c.location,
        "version": c.version or None,
        "retrieve_at": _iso(c.retrieve_at),
        "signing_certificate": c.signing_certificate or None,
        "signature": c.signature or None,
        "max_in_flight": c.max_in_flight,
        "stop_on_failure_ratio": c.stop_on_failure_ratio,
        "created_at": _iso(c.created_at),
        "updated_at": _iso(c.updated_at),
        "stations": [_station_out(s) for s in c.stations],
        "revision": c.revision,
    }


def campaign_from_doc(d: Mapping[str, Any]) -> Campaign:
    return Campaign(
        id=str(d["id"]),
        location=str(d.get("location") or ""),
        stations=tuple(_station_in(s) for s in d.get("stations") or ()),
        status=str(d.get("status") or "running"),
        version=str(d.get("version") or ""),
        retrieve_at=_dt(d.get("retrieve_at")),
        signing_certificate=str(d.get("signing_certificate") or ""),
        signature=str(d.get("signature") or ""),
        max_in_flight=int(d.get("max_in_flight") or 10),
        stop_on_failure_ratio=float(d.get("stop_on_failure_ratio", 0.2)),
        created_at=_dt(d.get("created_at")),
        updated_at=_dt(d.get("updated_at")),
        revision=int(d.get("revision") or 0),
    )

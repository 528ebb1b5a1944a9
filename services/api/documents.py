"""The documents the API writes and the values they hold: sites (kind `site`) and log
upload slots (kind `log_upload`).

A site is a grid connection shared by stations. The API is the only writer of site
documents (services/common/kinds.py); smart charging reads them (and gets each change
as a `SiteUpdated` on csms.sites.v1, whose payload is this document). Tariffs are
written by the API too, but their shape is billing's (`services.billing.documents`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Mapping

from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = [
    "LOG_UPLOAD_RECEIVED",
    "LOG_UPLOAD_WAITING",
    "LogUpload",
    "Site",
    "log_file_id",
    "log_upload_from_doc",
    "log_upload_to_doc",
    "site_from_doc",
    "site_to_doc",
]


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    grid_limit_a: float
    phases: int = 3
    tariff_id: str | None = None
    external_limit_a: float | None = None  # an outside cap (grid operator), A per phase
    created_at: str | None = None  # ISO 8601 UTC, as stored
    updated_at: str | None = None


def _amps(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def site_from_doc(doc: Mapping[str, Any]) -> Site:
    """The site a stored document describes (fields it lacks take their defaults)."""
    phases = doc.get("phases")
    tariff_id = doc.get("tariff_id")
    created, updated = doc.get("created_at"), doc.get("updated_at")
    return Site(
        id=str(doc["id"]),
        grid_limit_a=_amps(doc.get("grid_limit_a")) or 0,
        phases=phases if phases in (1, 3) else 3,
        tariff_id=tariff_id if isinstance(tariff_id, str) else None,
        external_limit_a=_amps(doc.get("external_limit_a")),
        created_at=created if isinstance(created, str) else None,
        updated_at=updated if isinstance(updated, str) else None,
    )


def site_to_doc(site: Site) -> dict[str, Any]:
    """The stored document: the site's fields as they are (the REST view shows the same)."""
    return asdict(site)


# -- log upload slots (ADR 016 §4) ---------------------------------------------------

LOG_UPLOAD_WAITING = "waiting"
LOG_UPLOAD_RECEIVED = "received"


def log_file_id(station_id: str, request_id: int) -> str:
    """Where the gateway's upload endpoint stores the file of a slot (FileStore id)."""
    return f"logs/{station_id}/{request_id}"


@dataclass(frozen=True, slots=True)
class LogUpload:
    """A one-time upload slot for a station's log (kind LOG_UPLOAD, id = sha-256 hex of
    the token, parent = the station). The API writes it (version 1, `waiting`); the
    gateway's upload endpoint writes it once more (version 2, `received`) with the file's
    size, hash, content type and name. Only the token's hash is ever stored."""

    station_id: str
    request_id: int
    log_type: str
    token_sha256: str
    max_bytes: int
    created_at: datetime
    expires_at: datetime
    file_id: str
    status: str = LOG_UPLOAD_WAITING
    command_id: str = ""   # the GetLog / GetDiagnostics command that sent the slot's URL
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    name: str | None = None
    received_at: datetime | None = None
    version: int = 1


def _opt_ts(value: Any) -> datetime | None:
    return parse_ocpp(value) if isinstance(value, str) and value else None


def _opt_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def log_upload_to_doc(u: LogUpload) -> dict[str, Any]:
    return {
        "station_id": u.station_id,
        "request_id": u.request_id,
        "log_type": u.log_type,
        "token_sha256": u.token_sha256,
        "max_bytes": u.max_bytes,
        "created_at": to_ocpp(u.created_at),
        "expires_at": to_ocpp(u.expires_at),
        "status": u.status,
        "file_id": u.file_id,
        "command_id": u.command_id,
        "size": u.size,
        "sha256": u.sha256,
        "content_type": u.content_type,
        "name": u.name,
        "received_at": None if u.received_at is None else to_ocpp(u.received_at),
        "version": u.version,
    }


def log_upload_from_doc(doc: Mapping[str, Any]) -> LogUpload:
    """The slot a stored document describes (KeyError/ValueError/TypeError when it is not one)."""
    size = doc.get("size")
    return LogUpload(
        station_id=str(doc["station_id"]),
        request_id=int(doc["request_id"]),
        log_type=str(doc.get("log_type") or ""),
        token_sha256=str(doc.get("token_sha256") or ""),
        max_bytes=int(doc.get("max_bytes") or 0),
        created_at=parse_ocpp(str(doc["created_at"])),
        expires_at=parse_ocpp(str(doc["expires_at"])),
        file_id=str(doc.get("file_id") or log_file_id(str(doc["station_id"]), int(doc["request_id"]))),
        status=str(doc.get("status") or LOG_UPLOAD_WAITING),
        command_id=str(doc.get("command_id") or ""),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        sha256=_opt_text(doc.get("sha256")),
        content_type=_opt_text(doc.get("content_type")),
        name=_opt_text(doc.get("name")),
        received_at=_opt_ts(doc.get("received_at")),
        version=int(doc.get("version") or 1),
    )

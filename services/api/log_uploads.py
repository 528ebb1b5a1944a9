"""Log upload slots (ADR 016 §4): creating one, and finding a station's slots.

A slot is a `log_upload` document (services/api/documents.py) keyed by the sha-256 of a
random token (`secrets.token_urlsafe(32)`): the token itself is only in the URL sent to
the station (`<CSMS_UPLOAD_BASE_URL>/uploads/<token>/`), never stored, so reading the
store gives no way to upload. The gateway's upload endpoint hashes the token of an upload
to find its slot.

A station has few slots (one per log request), so they are found by listing the
station's documents of the kind (parent = the station) rather than by a second index.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from services.api.context import ApiSettings
from services.api.documents import LogUpload, log_file_id, log_upload_from_doc
from services.api.views import log_is_for
from services.common import kinds
from services.common.store.port import DocumentStore
from services.stations.domain.ops import LogState

__all__ = ["MAX_SLOTS_LISTED", "new_slot", "station_uploads", "token_hash", "upload_of_log", "upload_of_request",
           "upload_url"]

log = logging.getLogger("csms.api.logs")

MAX_SLOTS_LISTED = 1000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def upload_url(settings: ApiSettings, token: str) -> str:
    return f"{settings.upload_base_url.rstrip('/')}/uploads/{token}/"


def new_slot(
    settings: ApiSettings, *, station_id: str, request_id: int, log_type: str, command_id: str, now: datetime
) -> tuple[str, LogUpload]:
    """A fresh token and the slot (version 1, waiting) that only its hash opens."""
    token = secrets.token_urlsafe(32)
    slot = LogUpload(
        station_id=station_id,
        request_id=request_id,
        log_type=log_type,
        token_sha256=token_hash(token),
        max_bytes=settings.upload_max_bytes,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.upload_ttl_s),
        file_id=log_file_id(station_id, request_id),
        command_id=command_id,
    )
    return token, slot


async def station_uploads(documents: DocumentStore, station_id: str) -> list[LogUpload]:
    """The station's slots, newest request first (an unreadable document is logged and left out)."""
    docs = await documents.list_docs(kinds.LOG_UPLOAD, parent=station_id, limit=MAX_SLOTS_LISTED)
    slots = []
    for doc in docs:
        try:
            slot = log_upload_from_doc(doc)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("station %s: log_upload document cannot be read: %r", station_id, exc)
            continue
        if slot.station_id == station_id:
            slots.append(slot)
    slots.sort(key=lambda u: u.created_at, reverse=True)
    return slots


async def upload_of_request(documents: DocumentStore, station_id: str, request_id: int) -> LogUpload | None:
    return next((u for u in await station_uploads(documents, station_id) if u.request_id == request_id), None)


async def upload_of_log(documents: DocumentStore, station_id: str, latest: LogState) -> LogUpload | None:
    """The slot of the stations processor's latest log transfer, if the API created one."""
    return next((u for u in await station_uploads(documents, station_id) if log_is_for(latest, u)), None)

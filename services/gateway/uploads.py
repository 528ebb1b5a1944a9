"""The log upload endpoint on the gateway port (ADR 016 §4).

`POST /api/v1/stations/{id}/logs` creates a one-time upload slot (a `log_upload`
document whose id is the SHA-256 of a random token; version 1) and tells the station to
upload to `<CSMS_UPLOAD_BASE_URL>/uploads/<token>/`. Stations reach the gateway, while
the API may be internal, so the gateway serves

    PUT | POST /uploads/{token}            (a 1.6 station may use the location as is)
    PUT | POST /uploads/{token}/{filename} (most append the file name)

with the body raw, or as multipart/form-data (its first file part: one with a file name
or a non-text content type; form fields are skipped). Station Basic auth does not apply: the token is the credential, the slot
bounds the size (`max_bytes`, 413 past it) and the time (`expires_at`, then 410).

Answers: 201 {"size", "sha256"} on success; 404 for a token no slot has; 410 once the
slot expired or took an upload; 413 too large; 503 when the store cannot be reached.

One upload wins. The body streams into a file of its own (`uploads/<slot>/<attempt>`),
then the slot is written back as received with `put_doc(version=2)`, which only one
writer can do; the winner then moves its file to the slot's `file_id`
(`logs/<station>/<request id>`) and the loser gets 410, so a racing second upload never
replaces the winner's bytes. Every attempt's own file is deleted in the end.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Protocol

from aiohttp import BodyPartReader, ClientPayloadError, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import Counter

from services.common import kinds
from services.common.errors import StoreError
from services.common.store.port import DocumentStore, FileInfo, FileStore, FileTooLarge
from services.common.timeutil import Clock, parse_ocpp, to_ocpp

__all__ = ["DocumentSlots", "SlotStore", "Uploads", "slot_id"]

log = logging.getLogger("csms.gateway.uploads")

UPLOADS = Counter(
    "csms_gateway_uploads_total", "Log/diagnostics uploads to the gateway's upload endpoint, by outcome", ["outcome"],
)

_CHUNK = 64 * 1024
# Tokens are URL-safe random strings (the API makes them); anything else is no token of ours.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{16,256}")
_MAX_NAME = 255
_OCTET_STREAM = "application/octet-stream"
_STORE_ERRORS = (StoreError, TimeoutError, OSError)
# ... and what reading a request body raises when the station sends less than it announced
_BODY_ERRORS = (*_STORE_ERRORS, HttpProcessingError, ClientPayloadError)


def slot_id(token: str) -> str:
    """The `log_upload` document id of a token: its SHA-256, hex (only the hash is stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SlotStore(Protocol):
    """The upload slots (kind `log_upload`) as the endpoint uses them."""

    async def get_slot(self, slot: str) -> dict[str, Any] | None: ...

    async def fill_slot(self, slot: str, doc: dict[str, Any], *, parent: str) -> bool:
        """Write the received slot as version 2; False when another upload already did."""
        ...


class DocumentSlots:
    """`SlotStore` on the store's documents (built by services/gateway/wiring.py)."""

    __slots__ = ("_docs",)

    def __init__(self, docs: DocumentStore) -> None:
        self._docs = docs

    async def get_slot(self, slot: str) -> dict[str, Any] | None:
        return await self._docs.get_doc(kinds.LOG_UPLOAD, slot)

    async def fill_slot(self, slot: str, doc: dict[str, Any], *, parent: str) -> bool:
        # compare-and-set from the API's version 1: of two racing uploads exactly one wins
        return await self._docs.put_doc_if(kinds.LOG_UPLOAD, slot, doc, parent=parent, expected_version=1, version=2)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _text(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n")


def _name(value: str | None) -> str:
    """A file name as the station gave it, without any path and bounded."""
    if not value:
        return ""
    return value.replace("\\", "/").rsplit("/", 1)[-1][:_MAX_NAME]


class Uploads:
    """The endpoint's handlers; `register(app)` adds its routes to the gateway's app."""

    def __init__(self, *, slots: SlotStore, files: FileStore, clock: Clock,
                 source: Callable[[web.BaseRequest], str] | None = None) -> None:
        """`source`: the client's address for the logs (the gateway's: a trusted proxy's
        X-Forwarded-For, services/gateway/proxies.py); default the TCP peer."""
        self._slots = slots
        self._files = files
        self._clock = clock
        self._source = source or (lambda request: request.remote or "")

    def register(self, app: web.Application) -> None:
        for method in ("PUT", "POST"):
            app.router.add_route(method, "/uploads/{token}", self.handle)
            app.router.add_route(method, "/uploads/{token}/{filename:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        remote = self._source(request)
        if not _TOKEN.fullmatch(token):
            return self._refuse(404, "unknown_token", "not a token", remote)
        slot = slot_id(token)
        try:
            doc = await self._slots.get_slot(slot)
        except _STORE_ERRORS as exc:
            log.warning("upload slot %.12s…: store unavailable (%s); answered 503", slot, exc)
            UPLOADS.labels(outcome="store_unavailable").inc()
            return web.Response(status=503, text="try again later\n", headers={"Retry-After": "5"})
        if doc is None:
            return self._refuse(404, "unknown_token", "no slot has this token", remote)
        station = str(doc.get("station_id") or "")
        request_id = doc.get("request_id")
        what = f"station={station} request_id={request_id}"
        try:
            max_bytes, file_id = self._check(doc, station, request_id)
            info = await self._receive(request, slot, max_bytes, _name(request.match_info.get("filename")))
        except _Refused as refused:
            return self._refuse(refused.status, refused.reason, what, remote)
        except _BODY_ERRORS as exc:  # the file store failed, or the station went away mid-upload
            log.warning("%s upload from %s failed: %s: %s", what, remote, type(exc).__name__, exc)
            UPLOADS.labels(outcome="failed").inc()
            return web.Response(status=503, text="try again later\n", headers={"Retry-After": "5"})
        attempt = info.file_id
        try:
            received = dict(doc)
            received.update(
                status="received", file_id=file_id, size=info.size, sha256=info.sha256, content_type=info.content_type,
                name=info.name, received_at=to_ocpp(self._clock()), version=2,
            )
            if not await self._slots.fill_slot(slot, received, parent=station):
                return self._refuse(410, "already_received", f"{what}: another upload won", remote)
            # Ours is the slot's upload: now (and only now) its bytes become the slot's file.
            await self._files.write_file(
                file_id, self._files.read_file(attempt), max_bytes=info.size, content_type=info.content_type,
                name=info.name,
            )
        except _STORE_ERRORS as exc:
            log.error("%s upload of %d bytes from %s not kept: %s", what, info.size, remote, exc)
            UPLOADS.labels(outcome="store_unavailable").inc()
            return web.Response(status=503, text="try again later\n", headers={"Retry-After": "5"})
        finally:
            await self._discard(attempt)
        log.info("%s uploaded %d bytes (%s, %r, sha256 %s) from %s", what, info.size, info.content_type, info.name,
                 info.sha256, remote)
        UPLOADS.labels(outcome="received").inc()
        return web.json_response({"size": info.size, "sha256": info.sha256}, status=201)

    def _check(self, doc: dict[str, Any], station: str, request_id: Any) -> tuple[int, str]:
        """(max bytes, file id) of a slot that can take an upload now; else _Refused."""
        if doc.get("status") == "received" or (isinstance(doc.get("version"), int) and doc["version"] >= 2):
            raise _Refused(410, "already_received")
        try:
            expires_at: datetime = parse_ocpp(str(doc["expires_at"]))
            max_bytes = int(doc["max_bytes"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("station=%s request_id=%s: malformed upload slot (%s)", station, request_id, exc)
            raise _Refused(404, "unusable_slot") from None
        if not station or max_bytes < 0:
            raise _Refused(404, "unusable_slot")
        if self._clock() >= expires_at:
            raise _Refused(410, "expired")
        file_id = str(doc.get("file_id") or f"logs/{station}/{request_id}")
        return max_bytes, file_id

    async def _receive(self, request: web.Request, slot: str, max_bytes: int, path_name: str) -> FileInfo:
        """Stream the upload into a file of this attempt's own; refuses 413 past max_bytes."""
        attempt = f"uploads/{slot}/{uuid.uuid4().hex}"
        chunks: AsyncIterator[bytes]
        multipart = request.content_type.lower() == "multipart/form-data"
        if multipart:
            try:
                part = await _file_part(await request.multipart())
            except (ValueError, AssertionError):  # aiohttp's word for a malformed multipart body
                raise _Refused(400, "bad_multipart") from None
            if part is None:
                raise _Refused(400, "no_file_part")
            chunks = _part_chunks(part)
            content_type = part.headers.get("Content-Type") or _OCTET_STREAM
            name = _name(part.filename) or path_name
        else:
            length = request.content_length
            if length is not None and length > max_bytes:
                raise _Refused(413, "too_large")
            chunks = request.content.iter_chunked(_CHUNK)
            content_type = request.headers.get("Content-Type") or _OCTET_STREAM
            name = path_name
        try:
            return await self._files.write_file(attempt, chunks, max_bytes=max_bytes, content_type=content_type, name=name)
        except FileTooLarge:
            raise _Refused(413, "too_large") from None
        except (ValueError, AssertionError):
            if not multipart:
                raise
            raise _Refused(400, "bad_multipart") from None

    async def _discard(self, file_id: str) -> None:
        try:
            await self._files.delete_file(file_id)
        except Exception as exc:  # a leftover temporary file is harmless; say so
            log.warning("upload attempt file %s not deleted: %s", file_id, exc)

    @staticmethod
    def _refuse(status: int, reason: str, what: str, remote: str) -> web.Response:
        log.info("upload refused %d %s: %s (from %s)", status, reason, what, remote)
        UPLOADS.labels(outcome=reason).inc()
        return _text(status, reason.replace("_", " "))


async def _file_part(reader: MultipartReader) -> BodyPartReader | None:
    """The first part that is a file: it has a file name, or a Content-Type other than
    text/plain (the type of a form field). Form fields before it are skipped; None when
    there is no file part (the upload is refused rather than keeping a field as the log)."""
    while True:
        part = await reader.next()
        if part is None:
            return None
        if not isinstance(part, BodyPartReader):  # a nested multipart: not a file
            continue
        content_type = part.headers.get("Content-Type", "")
        if part.filename or (content_type and not content_type.lower().startswith("text/plain")):
            return part
        await part.release()


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await part.read_chunk(_CHUNK)
        if not chunk:
            return
        yield chunk

"""The `certificate` document: one per certificate the CA issued (docs/security.md).

Kind `CERTIFICATE`, id = the serial (`pki.serial_hex`), parent = the station id. The
certificates processor writes it (issued, the station's answer, superseded, expired,
renewal asked); the API writes only revocation. Both write with `put_doc_if` on the
document's `revision` (compare-and-set), so a revocation is never undone by the processor
recording a late answer, and two processors never both record a renewal request.
`Certificates` is that repository; `from_doc` / `to_doc` the mapper, `to_api` the REST
view, `revoked` the revocation, `ocsp_status` what GetCertificateStatus answers for it.
Importable by the API and the gateway (tests/architecture: `documents` modules).

Fields beyond the contract's: `chain_pem` (what CertificateSigned carried), `event_id`
(the SignCertificate event it answers: a redelivered event signs nothing new),
`renew_requested_at` (the last TriggerMessage asking for a new CSR), `revision`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.common import kinds
from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = [
    "CERTIFICATE_STATUSES",
    "EXPIRED",
    "INSTALLED",
    "ISSUED",
    "REJECTED",
    "REVOKED",
    "SUPERSEDED",
    "CHARGING_STATION_CERTIFICATE",
    "Certificate",
    "Certificates",
    "from_doc",
    "ocsp_status",
    "revoked",
    "to_api",
    "to_doc",
]

CHARGING_STATION_CERTIFICATE = "ChargingStationCertificate"
ISSUED, INSTALLED, REJECTED, REVOKED, EXPIRED, SUPERSEDED = "issued", "installed", "rejected", "revoked", "expired", "superseded"
CERTIFICATE_STATUSES = (ISSUED, INSTALLED, REJECTED, REVOKED, EXPIRED, SUPERSEDED)


@dataclass(frozen=True, slots=True)
class Certificate:
    serial: str
    station_id: str
    certificate_type: str
    status: str
    subject: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    pem: str
    issued_at: datetime
    command_id: str = ""
    command_status: str = ""
    revoked_at: datetime | None = None
    revocation_reason: str = ""
    chain_pem: str = ""
    event_id: str = ""
    renew_requested_at: datetime | None = None
    revision: int = 0


def _time(value: datetime | None) -> str | None:
    return None if value is None else to_ocpp(value)


def _parse(value: Any) -> datetime | None:
    return parse_ocpp(value) if isinstance(value, str) and value else None


def to_doc(c: Certificate) -> dict[str, Any]:
    return {
        "serial": c.serial,
        "station_id": c.station_id,
        "certificate_type": c.certificate_type,
        "status": c.status,
        "subject": c.subject,
        "not_before": to_ocpp(c.not_before),
        "not_after": to_ocpp(c.not_after),
        "fingerprint_sha256": c.fingerprint_sha256,
        "pem": c.pem,
        "issued_at": to_ocpp(c.issued_at),
        "command_id": c.command_id,
        "command_status": c.command_status,
        "revoked_at": _time(c.revoked_at),
        "revocation_reason": c.revocation_reason,
        "chain_pem": c.chain_pem,
        "event_id": c.event_id,
        "renew_requested_at": _time(c.renew_requested_at),
        "revision": c.revision,
    }


def from_doc(doc: dict[str, Any]) -> Certificate:
    not_before = _parse(doc.get("not_before"))
    not_after = _parse(doc.get("not_after"))
    issued_at = _parse(doc.get("issued_at"))
    if not_before is None or not_after is None or issued_at is None:
        raise ValueError(f"certificate document {doc.get('serial')!r} lacks its validity or issue time")
    return Certificate(
        serial=str(doc["serial"]),
        station_id=str(doc.get("station_id", "")),
        certificate_type=str(doc.get("certificate_type", "")),
        status=str(doc.get("status", ISSUED)),
        subject=str(doc.get("subject", "")),
        not_before=not_before,
        not_after=not_after,
        fingerprint_sha256=str(doc.get("fingerprint_sha256", "")),
        pem=str(doc.get("pem", "")),
        issued_at=issued_at,
        command_id=str(doc.get("command_id") or ""),
        command_status=str(doc.get("command_status") or ""),
        revoked_at=_parse(doc.get("revoked_at")),
        revocation_reason=str(doc.get("revocation_reason") or ""),
        chain_pem=str(doc.get("chain_pem") or ""),
        event_id=str(doc.get("event_id") or ""),
        renew_requested_at=_parse(doc.get("renew_requested_at")),
        revision=int(doc.get("revision") or 0),
    )


def to_api(c: Certificate) -> dict[str, Any]:
    """The REST `Certificate` (docs/security.md): no PEM, no bookkeeping."""
    return {
        "serial": c.serial,
        "certificate_type": c.certificate_type,
        "status": c.status,
        "subject": c.subject,
        "not_before": to_ocpp(c.not_before),
        "not_after": to_ocpp(c.not_after),
        "fingerprint_sha256": c.fingerprint_sha256,
        "issued_at": to_ocpp(c.issued_at),
        "revoked_at": _time(c.revoked_at),
        "revocation_reason": c.revocation_reason or None,
        "command_status": c.command_status or None,
    }


def revoked(c: Certificate, *, reason: str, now: datetime) -> Certificate:
    """The certificate revoked at `now` (already revoked: unchanged)."""
    if c.status == REVOKED:
        return c
    return dataclasses.replace(c, status=REVOKED, revoked_at=now, revocation_reason=reason)


def ocsp_status(c: Certificate | None) -> str:
    """GetCertificateStatus for a serial of this CA: `revoked`, `good` (known, not
    revoked), `unknown` (never issued here)."""
    if c is None:
        return "unknown"
    return "revoked" if c.status == REVOKED else "good"


class _Docs(Protocol):
    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...

    async def list_docs(self, kind: str, *, parent: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...

    async def put_doc_if(
        self, kind: str, doc_id: str, doc: dict[str, Any], *, parent: str = "", expected_version: int | None, version: int
    ) -> bool: ...

    async def list_docs_page(
        self, kind: str, *, parent: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]: ...


class Certificates:
    """The `certificate` documents of a document store (compare-and-set writes only)."""

    def __init__(self, docs: _Docs) -> None:
        self._docs = docs

    async def get(self, serial: str) -> Certificate | None:
        doc = await self._docs.get_doc(kinds.CERTIFICATE, serial)
        return None if doc is None else from_doc(doc)

    async def of_station(self, station_id: str, *, limit: int = 1000) -> list[Certificate]:
        """The station's certificates, newest issue first."""
        docs = await self._docs.list_docs(kinds.CERTIFICATE, parent=station_id, limit=limit)
        found = [from_doc(d) for d in docs]
        found.sort(key=lambda c: (c.issued_at, c.serial), reverse=True)
        return found

    async def page(self, *, limit: int = 200, cursor: str | None = None) -> tuple[list[Certificate], str | None]:
        docs, nxt = await self._docs.list_docs_page(kinds.CERTIFICATE, limit=limit, cursor=cursor)
        return [from_doc(d) for d in docs], nxt

    async def put(self, c: Certificate) -> Certificate | None:
        """Write `c` over the revision it was read at (`c.revision`; 0 = new). The stored
        certificate (revision + 1) when written, None when someone wrote first."""
        stored = dataclasses.replace(c, revision=c.revision + 1)
        ok = await self._docs.put_doc_if(
            kinds.CERTIFICATE, c.serial, to_doc(stored), parent=c.station_id,
            expected_version=c.revision or None, version=stored.revision,
        )
        return stored if ok else None

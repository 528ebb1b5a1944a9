"""Customer information (OCPP 2.0.1 block N, ADR 018): the `customer_information`
document of one request (id = `<station>/<request id>`, parent = station) and the pure
rules that assemble it. The `stations-drivers` fold (customer_information.py) writes it
from the CustomerInformation result (what was asked, the station's answer) and the
NotifyCustomerInformation parts; the API (services/api/routes_customer_information.py)
reads it.

Parts may arrive in any order and more than once: they are kept by seqNo (0 first; the
first copy of a seqNo wins), and `data` is their data concatenated in seqNo order. The
request is `complete` once the part with `tbc` false and every seqNo below it are there.
The data kept is bounded (`MAX_DATA_CHARS` characters in all, `MAX_PARTS` parts): a part
beyond the bound is counted as received with its data dropped, and `truncated` says so.

Status: `rejected` (the station answered anything but Accepted), `complete`,
`assembling` (some parts), `requested` (Accepted, no part yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = [
    "ASSEMBLING",
    "COMPLETE",
    "MAX_DATA_CHARS",
    "MAX_PARTS",
    "REJECTED",
    "REQUESTED",
    "STATUSES",
    "CustomerInformation",
    "add_part",
    "answer",
    "data_of",
    "doc_id",
    "from_doc",
    "identifier_of_request",
    "status_of",
    "summary_view",
    "to_doc",
    "view",
]

REQUESTED, ASSEMBLING, COMPLETE, REJECTED = "requested", "assembling", "complete", "rejected"
STATUSES = (REQUESTED, ASSEMBLING, COMPLETE, REJECTED)
MAX_DATA_CHARS = 1_000_000   # characters of data kept per request (the station sends at most 512 per part)
MAX_PARTS = 10_000           # parts kept per request


@dataclass(frozen=True, slots=True)
class CustomerInformation:
    station_id: str
    request_id: int
    command_id: str = ""
    station_status: str = ""          # the CustomerInformation answer ("" = not seen yet)
    report: bool | None = None
    clear: bool | None = None
    identifier_type: str = ""         # id_token | customer_identifier | customer_certificate
    identifier: str = ""              # the token, the identifier, or the certificate's serial number
    requested_at: datetime | None = None
    parts: Mapping[int, str] = field(default_factory=dict)   # seqNo -> data
    last_seq: int | None = None       # seqNo of the part with tbc false
    truncated: bool = False
    generated_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0

    @property
    def data_chars(self) -> int:
        return sum(len(d) for d in self.parts.values())


def doc_id(station_id: str, request_id: int) -> str:
    return f"{station_id}/{request_id}"


def _ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def identifier_of_request(request: Mapping[str, Any]) -> tuple[str, str]:
    """(type, value) of the customer a CustomerInformation request (camelCase) names."""
    token = request.get("idToken")
    if isinstance(token, Mapping) and isinstance(token.get("idToken"), str):
        return "id_token", str(token["idToken"])
    if isinstance(request.get("customerIdentifier"), str):
        return "customer_identifier", str(request["customerIdentifier"])
    cert = request.get("customerCertificate")
    if isinstance(cert, Mapping):
        return "customer_certificate", str(cert.get("serialNumber") or "")
    return "", ""


def answer(ci: CustomerInformation, status: str, command_id: str, request: Mapping[str, Any],
           at: datetime) -> CustomerInformation:
    """The station's answer to the request `request` (the CustomerInformation sent)."""
    kind, value = identifier_of_request(request)
    report, clear = request.get("report"), request.get("clear")
    updated = replace(
        ci, command_id=command_id, station_status=status,
        report=report if isinstance(report, bool) else ci.report,
        clear=clear if isinstance(clear, bool) else ci.clear,
        identifier_type=kind or ci.identifier_type, identifier=value or ci.identifier,
        requested_at=ci.requested_at or _ms(at),
    )
    if replace(updated, updated_at=ci.updated_at) == ci:
        return ci
    return replace(updated, updated_at=_ms(at))


def add_part(ci: CustomerInformation, seq_no: int, data: str, tbc: bool, generated_at: datetime | None,
             at: datetime) -> CustomerInformation:
    """One NotifyCustomerInformation part; a seqNo seen before changes nothing. ValueError
    for a negative seqNo."""
    if seq_no < 0:
        raise ValueError(f"seqNo {seq_no} is negative")
    if seq_no in ci.parts:
        return ci
    truncated = ci.truncated
    if len(ci.parts) >= MAX_PARTS:
        # beyond the bound: only the end of the request is still worth knowing
        return ci if tbc or ci.last_seq is not None else replace(ci, last_seq=seq_no, truncated=True, updated_at=_ms(at))
    if ci.data_chars + len(data) > MAX_DATA_CHARS:
        data, truncated = "", True
    parts = dict(ci.parts)
    parts[seq_no] = data
    generated = ci.generated_at
    if generated_at is not None and (seq_no == min(parts) or generated is None):
        generated = _ms(generated_at)
    last = ci.last_seq if tbc else seq_no
    return replace(ci, parts=parts, last_seq=last, truncated=truncated, generated_at=generated, updated_at=_ms(at))


def status_of(ci: CustomerInformation) -> str:
    if ci.station_status and ci.station_status != "Accepted":
        return REJECTED
    if ci.last_seq is not None and (ci.truncated or all(s in ci.parts for s in range(ci.last_seq + 1))):
        return COMPLETE
    return ASSEMBLING if ci.parts else REQUESTED


def data_of(ci: CustomerInformation) -> str:
    return "".join(ci.parts[s] for s in sorted(ci.parts))


# -- documents -----------------------------------------------------------------------------

def _ts(value: datetime | None) -> str | None:
    return None if value is None else to_ocpp(value)


def _instant(value: Any) -> datetime | None:
    return parse_ocpp(value) if isinstance(value, str) and value else None


def to_doc(ci: CustomerInformation) -> dict[str, Any]:
    return {
        "station_id": ci.station_id, "request_id": ci.request_id, "command_id": ci.command_id,
        "station_status": ci.station_status, "report": ci.report, "clear": ci.clear,
        "identifier_type": ci.identifier_type, "identifier": ci.identifier,
        "requested_at": _ts(ci.requested_at),
        "parts": {str(s): d for s, d in sorted(ci.parts.items())},
        "last_seq": ci.last_seq, "truncated": ci.truncated, "generated_at": _ts(ci.generated_at),
        "updated_at": _ts(ci.updated_at), "status": status_of(ci), "version": ci.version,
    }


def _opt_bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def from_doc(doc: Mapping[str, Any]) -> CustomerInformation:
    last = doc.get("last_seq")
    return CustomerInformation(
        station_id=str(doc["station_id"]), request_id=int(doc["request_id"]),
        command_id=str(doc.get("command_id") or ""), station_status=str(doc.get("station_status") or ""),
        report=_opt_bool(doc.get("report")), clear=_opt_bool(doc.get("clear")),
        identifier_type=str(doc.get("identifier_type") or ""), identifier=str(doc.get("identifier") or ""),
        requested_at=_instant(doc.get("requested_at")),
        parts={int(s): str(d) for s, d in (doc.get("parts") or {}).items()},
        last_seq=int(last) if isinstance(last, int) else None, truncated=bool(doc.get("truncated")),
        generated_at=_instant(doc.get("generated_at")), updated_at=_instant(doc.get("updated_at")),
        version=int(doc.get("version") or 0),
    )


# -- REST views ----------------------------------------------------------------------------

def summary_view(ci: CustomerInformation) -> dict[str, Any]:
    """A request without its data (the list)."""
    return {
        "request_id": ci.request_id,
        "command_id": ci.command_id or None,
        "status": status_of(ci),
        "station_status": ci.station_status or None,
        "report": ci.report,
        "clear": ci.clear,
        "identifier_type": ci.identifier_type or None,
        "identifier": ci.identifier or None,
        "parts": len(ci.parts),
        "data_length": ci.data_chars,
        "truncated": ci.truncated,
        "requested_at": _ts(ci.requested_at),
        "generated_at": _ts(ci.generated_at),
        "updated_at": _ts(ci.updated_at),
    }


def view(ci: CustomerInformation) -> dict[str, Any]:
    """A request with its data (parts in seqNo order)."""
    return {**summary_view(ci), "data": data_of(ci)}

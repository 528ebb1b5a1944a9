"""Wire formats of the billing processor: session snapshots in, CDRs out.

`csms.sessions.v1` (protobuf `csms.sessions.v1.Session`) is decoded here into a
plain `SessionSnapshot`, without depending on the sessions processor's code: the
published schema is the contract. Fields billing decides on: `status` (completed /
abandoned are billed), `authorization` (a refused token is never billed),
`hold` / `hold_reasons` / `clock_suspect` (the CDR is held from export), and each
sample's `excluded` flag (implausible readings never count). `csms.cdrs.v1` records (protobuf
`csms.billing.v1.Cdr`) are encoded from the stored CDR document, so a CDR that is
re-published after a crash carries exactly the bytes of the first attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from services.common.codec import cdrs_pb2, cloudevent_headers, get_timestamp, sessions_pb2, set_timestamp
from services.common.timeutil import parse_ocpp, to_ocpp

__all__ = [
    "SESSION_CE_TYPE",
    "CDR_CE_TYPE",
    "CDR_CE_SOURCE",
    "SnapshotSample",
    "SessionSnapshot",
    "decode_session",
    "encode_session",
    "encode_cdr",
    "decode_cdr",
    "cdr_headers",
]

SESSION_CE_TYPE = "csms.sessions.v1.Session"
CDR_CE_TYPE = "csms.billing.v1.Cdr"
CDR_CE_SOURCE = "/csms/billing"

UTC = timezone.utc


@dataclass(frozen=True, slots=True)
class SnapshotSample:
    timestamp: datetime | None
    measurand: str
    value: float
    unit: str = "Wh"
    phase: str = ""
    excluded: bool = False  # implausible: kept as sent, never counted
    raw_value: str = ""  # the value as sent when it was not a usable number (value is then 0)


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """One `csms.sessions.v1.Session` message: the full state of a session."""

    id: str
    station_id: str
    status: str  # "active" | "completed" | "abandoned"
    version: int
    transaction_id: str = ""
    id_token: str = ""
    energy_wh: int = 0
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    received_at: datetime | None = None
    charging_ended_at: datetime | None = None
    updated_at: datetime | None = None
    evse_id: int = 0
    connector_id: int = 0
    meter_start_wh: int = 0
    meter_stop_wh: int = 0  # proto3: 0 also means "not known"
    stop_reason: str = ""
    orphan: bool = False
    suspect: bool = False
    ocpp_version: str = ""
    site_id: str = ""
    samples: tuple[SnapshotSample, ...] = ()
    authorization: str = ""  # token status answered at the start; "" unknown
    clock_suspect: bool = False
    suspect_reasons: tuple[str, ...] = ()
    hold: bool = False
    hold_reasons: tuple[str, ...] = ()
    abandoned_at: datetime | None = None
    abandon_reason: str = ""
    station_started_at: datetime | None = None
    station_stopped_at: datetime | None = None
    remote_start_id: int = 0
    issued_by: str = ""

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def abandoned(self) -> bool:
        return self.status == "abandoned"


def decode_session(data: bytes) -> SessionSnapshot:
    """Raises `ValueError` for bytes that are not a session snapshot."""
    pb = sessions_pb2.Session()
    try:
        pb.ParseFromString(data)
    except Exception as exc:  # google.protobuf.message.DecodeError
        raise ValueError(f"not a csms.sessions.v1.Session: {exc}") from None
    if not pb.id or not pb.station_id:
        raise ValueError("session snapshot without id or station_id")
    return SessionSnapshot(
        id=pb.id,
        station_id=pb.station_id,
        status=pb.status,
        version=int(pb.version),
        transaction_id=pb.transaction_id,
        id_token=pb.id_token,
        energy_wh=int(pb.energy_wh),
        started_at=get_timestamp(pb, "started_at"),
        stopped_at=get_timestamp(pb, "stopped_at"),
        received_at=get_timestamp(pb, "received_at"),
        charging_ended_at=get_timestamp(pb, "charging_ended_at"),
        updated_at=get_timestamp(pb, "updated_at"),
        evse_id=int(pb.evse_id),
        connector_id=int(pb.connector_id),
        meter_start_wh=int(pb.meter_start_wh),
        meter_stop_wh=int(pb.meter_stop_wh),
        stop_reason=pb.stop_reason,
        orphan=pb.orphan,
        suspect=pb.suspect,
        ocpp_version=pb.ocpp_version,
        site_id=pb.site_id,
        samples=tuple(
            SnapshotSample(
                timestamp=get_timestamp(s, "timestamp"),
                measurand=s.measurand,
                value=s.value,
                unit=s.unit,
                phase=s.phase,
                excluded=s.excluded,
                raw_value=s.raw_value,
            )
            for s in pb.samples
        ),
        authorization=pb.authorization,
        clock_suspect=pb.clock_suspect,
        suspect_reasons=tuple(pb.suspect_reasons),
        hold=pb.hold,
        hold_reasons=tuple(pb.hold_reasons),
        abandoned_at=get_timestamp(pb, "abandoned_at"),
        abandon_reason=pb.abandon_reason,
        station_started_at=get_timestamp(pb, "station_started_at"),
        station_stopped_at=get_timestamp(pb, "station_stopped_at"),
        remote_start_id=int(pb.remote_start_id),
        issued_by=pb.issued_by,
    )


def encode_session(snap: SessionSnapshot) -> bytes:
    """The inverse of `decode_session` (tools and tests; the sessions processor has its own)."""
    pb = sessions_pb2.Session(
        id=snap.id,
        station_id=snap.station_id,
        transaction_id=snap.transaction_id,
        id_token=snap.id_token,
        status=snap.status,
        energy_wh=snap.energy_wh,
        evse_id=snap.evse_id,
        connector_id=snap.connector_id,
        meter_start_wh=snap.meter_start_wh,
        meter_stop_wh=snap.meter_stop_wh,
        stop_reason=snap.stop_reason,
        orphan=snap.orphan,
        suspect=snap.suspect,
        version=snap.version,
        ocpp_version=snap.ocpp_version,
        site_id=snap.site_id,
        authorization=snap.authorization,
        clock_suspect=snap.clock_suspect,
        suspect_reasons=list(snap.suspect_reasons),
        hold=snap.hold,
        hold_reasons=list(snap.hold_reasons),
        abandon_reason=snap.abandon_reason,
        remote_start_id=snap.remote_start_id,
        issued_by=snap.issued_by,
    )
    for name in (
        "started_at", "stopped_at", "received_at", "charging_ended_at", "updated_at",
        "abandoned_at", "station_started_at", "station_stopped_at",
    ):
        value = getattr(snap, name)
        if value is not None:
            getattr(pb, name).SetInParent()
            set_timestamp(getattr(pb, name), value)
    for s in snap.samples:
        spb = pb.samples.add(
            measurand=s.measurand, value=s.value, unit=s.unit, phase=s.phase, excluded=s.excluded, raw_value=s.raw_value
        )
        if s.timestamp is not None:
            spb.timestamp.SetInParent()
            set_timestamp(spb.timestamp, s.timestamp)
    return pb.SerializeToString()  # type: ignore[no-any-return]


# --- CDRs ------------------------------------------------------------------------------


def _exact_time(doc: Mapping[str, Any], name: str) -> datetime:
    """Full-precision instant from the document (falls back to the millisecond form)."""
    exact = doc.get("exact") or {}
    return parse_ocpp(str(exact.get(name) or doc[name]))


def _money_pb(value: Mapping[str, Any], msg: Any) -> None:
    msg.amount = str(value["amount"])
    msg.currency = str(value["currency"])


def encode_cdr(doc: Mapping[str, Any]) -> bytes:
    """`csms.billing.v1.Cdr` bytes for a stored CDR document (see adapters.cdr_to_doc)."""
    pb = cdrs_pb2.Cdr(
        id=str(doc["id"]),
        session_id=str(doc["session_id"]),
        station_id=str(doc.get("station_id") or ""),
        version=int(doc["version"]),
        reason=str(doc.get("reason") or ""),
        energy_wh=int(doc.get("energy_wh") or 0),
        tariff_id=str(doc.get("tariff_id") or ""),
        breakdown_json=json.dumps(doc.get("breakdown") or {}, sort_keys=True, separators=(",", ":")),
        inputs_fingerprint=str(doc.get("inputs_fingerprint") or ""),
        currency=str(doc.get("currency") or doc["total_cost"]["currency"]),
        session_version=int(doc.get("session_version") or 0),
        clock_suspect=bool(doc.get("clock_suspect", False)),
        hold_reasons=[str(r) for r in doc.get("hold_reasons") or ()],
    )
    _money_pb(doc["total_cost"], pb.total_cost)
    _money_pb(doc["total_cost_incl_tax"], pb.total_cost_incl_tax)
    for name in ("started_at", "stopped_at", "created_at"):
        getattr(pb, name).SetInParent()
        set_timestamp(getattr(pb, name), _exact_time(doc, name))
    return pb.SerializeToString()  # type: ignore[no-any-return]


def decode_cdr(data: bytes) -> dict[str, Any]:
    """A `csms.cdrs.v1` record as a dict (for consumers and tests)."""
    pb = cdrs_pb2.Cdr()
    pb.ParseFromString(data)

    def ts(name: str) -> str | None:
        value = get_timestamp(pb, name)
        return None if value is None else to_ocpp(value)

    return {
        "id": pb.id,
        "session_id": pb.session_id,
        "station_id": pb.station_id,
        "version": int(pb.version),
        "reason": pb.reason,
        "energy_wh": int(pb.energy_wh),
        "started_at": ts("started_at"),
        "stopped_at": ts("stopped_at"),
        "tariff_id": pb.tariff_id,
        "total_cost": {"amount": pb.total_cost.amount, "currency": pb.total_cost.currency},
        "total_cost_incl_tax": {"amount": pb.total_cost_incl_tax.amount, "currency": pb.total_cost_incl_tax.currency},
        "breakdown": json.loads(pb.breakdown_json) if pb.breakdown_json else {},
        "created_at": ts("created_at"),
        "inputs_fingerprint": pb.inputs_fingerprint,
        "currency": pb.currency,
        "session_version": int(pb.session_version),
        "clock_suspect": pb.clock_suspect,
        "hold_reasons": list(pb.hold_reasons),
    }


def cdr_headers(doc: Mapping[str, Any], *, traceparent: str | None = None) -> Sequence[tuple[str, bytes]]:
    """CloudEvents attributes (binary content mode) of a `csms.cdrs.v1` record."""
    return cloudevent_headers(
        str(doc["id"]), CDR_CE_TYPE, CDR_CE_SOURCE, _exact_time(doc, "created_at"), str(doc.get("station_id") or ""),
        traceparent=traceparent,
    )

"""Session snapshots on csms.sessions.v1: `Session` <-> protobuf `csms.sessions.v1.Session`.

Each record is the full current state of one session (key = station id); consumers
dedupe and compact by (id, version) — the CloudEvents id is f"{id}:{version}".
Unknown meter readings (None) travel as 0 (proto3 has no presence on int64 here).
The plausibility and lifecycle fields (docs/plausibility.md) travel with the same names
as in the session document; samples carry `excluded` and `raw_value`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.common.codec import cloudevent_headers, get_timestamp, sessions_pb2, set_timestamp
from services.common.timeutil import to_ocpp
from services.sessions.domain.session import Session

__all__ = ["CE_TYPE", "session_to_pb", "encode_session", "decode_session", "session_headers"]

CE_TYPE = "csms.sessions.v1.Session"
CE_SOURCE = "/csms/sessions"
UTC = timezone.utc


def session_to_pb(s: Session) -> Any:
    pb = sessions_pb2.Session(
        id=s.id,
        station_id=s.station_id,
        transaction_id=s.transaction_id,
        id_token=s.id_token,
        status=s.status,
        energy_wh=s.energy_wh,
        evse_id=s.evse_id,
        connector_id=s.connector_id,
        meter_start_wh=s.meter_start_wh or 0,
        meter_stop_wh=s.meter_stop_wh or 0,
        stop_reason=s.stop_reason,
        orphan=s.orphan,
        suspect=s.suspect,
        version=s.version,
        ocpp_version=s.ocpp_version,
        authorization=s.authorization,
        clock_suspect=s.clock_suspect,
        suspect_reasons=sorted(s.suspect_reasons),
        hold=s.hold,
        hold_reasons=sorted(s.hold_reasons),
        abandon_reason=s.abandon_reason,
        remote_start_id=s.remote_start_id,
        issued_by=s.issued_by,
    )
    set_timestamp(pb.started_at, s.started_at)
    set_timestamp(pb.stopped_at, s.stopped_at)
    set_timestamp(pb.received_at, s.received_at)
    set_timestamp(pb.charging_ended_at, s.charging_ended_at)
    set_timestamp(pb.updated_at, s.updated_at)
    set_timestamp(pb.abandoned_at, s.abandoned_at)
    set_timestamp(pb.station_started_at, s.station_started_at)
    set_timestamp(pb.station_stopped_at, s.station_stopped_at)
    for x in s.samples:
        sp = pb.samples.add(
            measurand=x.measurand, value=x.value, unit=x.unit, phase=x.phase, excluded=x.excluded, raw_value=x.raw_value
        )
        set_timestamp(sp.timestamp, x.timestamp)
    return pb


def encode_session(s: Session) -> bytes:
    return session_to_pb(s).SerializeToString()  # type: ignore[no-any-return]


def decode_session(data: bytes) -> dict[str, Any]:
    """A snapshot as a plain dict (same keys and formats as the session document's
    public part), for consumers and tests."""
    pb = sessions_pb2.Session()
    pb.ParseFromString(data)

    def iso(field: str) -> str | None:
        dt = get_timestamp(pb, field)
        return None if dt is None else to_ocpp(dt)

    return {
        "id": pb.id,
        "station_id": pb.station_id,
        "transaction_id": pb.transaction_id,
        "id_token": pb.id_token,
        "status": pb.status,
        "energy_wh": pb.energy_wh,
        "started_at": iso("started_at"),
        "stopped_at": iso("stopped_at"),
        "received_at": iso("received_at"),
        "charging_ended_at": iso("charging_ended_at"),
        "updated_at": iso("updated_at"),
        "evse_id": pb.evse_id,
        "connector_id": pb.connector_id,
        "meter_start_wh": pb.meter_start_wh,
        "meter_stop_wh": pb.meter_stop_wh,
        "stop_reason": pb.stop_reason,
        "orphan": pb.orphan,
        "suspect": pb.suspect,
        "version": pb.version,
        "ocpp_version": pb.ocpp_version,
        "site_id": pb.site_id,
        "authorization": pb.authorization,
        "clock_suspect": pb.clock_suspect,
        "suspect_reasons": list(pb.suspect_reasons),
        "hold": pb.hold,
        "hold_reasons": list(pb.hold_reasons),
        "abandoned_at": iso("abandoned_at"),
        "abandon_reason": pb.abandon_reason,
        "station_started_at": iso("station_started_at"),
        "station_stopped_at": iso("station_stopped_at"),
        "remote_start_id": pb.remote_start_id,
        "issued_by": pb.issued_by,
        "meter_samples": [
            {
                "timestamp": to_ocpp(get_timestamp(x, "timestamp") or datetime(1970, 1, 1, tzinfo=UTC)),
                "measurand": x.measurand,
                "value": x.value,
                "unit": x.unit,
                "phase": x.phase,
                "excluded": x.excluded,
                "raw_value": x.raw_value,
            }
            for x in pb.samples
        ],
    }


def session_headers(s: Session, *, traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """CloudEvents attributes (binary content mode), like `codec.event_headers`."""
    return cloudevent_headers(f"{s.id}:{s.version}", CE_TYPE, CE_SOURCE, s.updated_at, s.station_id, traceparent=traceparent)

"""What the sessions processor publishes, and the decoders its consumers and tests use.

- csms.sessions.v1 (`encode_session` / `decode_session`): the compact snapshot of one
  session (key = station id): its facts and bounded aggregates (sample count, first/last
  kept register reading, peak power, the running price accumulator), never its samples
  (ADR 015; field 19 is reserved). Consumers dedupe and compact by (id, version) — the
  CloudEvents id is f"{id}:{version}". Numbers the CSMS does not know (meterStart of a
  2.0.1 transaction, peak power before any power reading, ...) are absent, never 0.
- csms.meter-values.v1 (`encode_meter_values` / `decode_meter_values`): the samples one
  station message carried for one session, with their effective times and the
  `excluded` judgement as of publishing (a later rebuild may judge again; the REST API's
  /sessions/{id}/meter-values judges over the stored samples). The CloudEvents id is
  f"{event id}:{session id}": a redelivered event publishes the same id again.

The plausibility and lifecycle fields (docs/plausibility.md) travel with the same names
as in the session document, and so does `reservation_id` (0 on the wire, None decoded:
none). What an ISO 15118 EV said (`ev_charging_needs`, `ev_charging_schedule`) is on
the session document and the REST API only, not in the snapshot.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

from services.billing.codec import accumulator_to_pb
from services.common.codec import cloudevent_headers, get_timestamp, meter_values_pb2, sessions_pb2, set_timestamp
from services.common.timeutil import to_ocpp
from services.sessions.domain.session import Reading, Sample, Session

__all__ = [
    "CE_TYPE",
    "METER_VALUES_CE_TYPE",
    "session_to_pb",
    "encode_session",
    "decode_session",
    "session_headers",
    "encode_meter_values",
    "decode_meter_values",
    "meter_values_headers",
]

CE_TYPE = "csms.sessions.v1.Session"
METER_VALUES_CE_TYPE = "csms.meter_values.v1.SessionMeterValues"
CE_SOURCE = "/csms/sessions"
UTC = timezone.utc


# -- csms.sessions.v1 ----------------------------------------------------------------
def session_to_pb(s: Session, *, site_id: str = "", running_total: str = "") -> sessions_pb2.Session:
    """`site_id`: the station's site (the session does not keep it); `running_total`: the
    accumulator's price so far incl. tax (decimal text) when the tariff it names still
    applies, else "" (consumers then price it themselves)."""
    pb = sessions_pb2.Session(
        id=s.id,
        station_id=s.station_id,
        transaction_id=s.transaction_id,
        id_token=s.id_token,
        status=s.status,
        energy_wh=s.energy_wh,
        evse_id=s.evse_id,
        connector_id=s.connector_id,
        stop_reason=s.stop_reason,
        orphan=s.orphan,
        suspect=s.suspect,
        version=s.version,
        ocpp_version=s.ocpp_version,
        site_id=site_id,
        authorization=s.authorization,
        clock_suspect=s.clock_suspect,
        suspect_reasons=sorted(s.suspect_reasons),
        hold=s.hold,
        hold_reasons=sorted(s.hold_reasons),
        abandon_reason=s.abandon_reason,
        remote_start_id=s.remote_start_id,
        issued_by=s.issued_by,
        reservation_id=s.reservation_id,
        sample_count=s.sample_count,
        excluded_count=s.excluded_count,
    )
    if s.meter_start_wh is not None:
        pb.meter_start_wh = s.meter_start_wh
    if s.meter_stop_wh is not None:
        pb.meter_stop_wh = s.meter_stop_wh
    set_timestamp(pb.started_at, s.started_at)
    set_timestamp(pb.stopped_at, s.stopped_at)
    set_timestamp(pb.received_at, s.received_at)
    set_timestamp(pb.charging_ended_at, s.charging_ended_at)
    set_timestamp(pb.updated_at, s.updated_at)
    set_timestamp(pb.abandoned_at, s.abandoned_at)
    set_timestamp(pb.station_started_at, s.station_started_at)
    set_timestamp(pb.station_stopped_at, s.station_stopped_at)
    set_timestamp(pb.first_sample_at, s.first_sample_at)
    set_timestamp(pb.last_sample_at, s.last_sample_at)
    _register_to_pb(pb.first_register, s.first_register)
    _register_to_pb(pb.last_register, s.last_register)
    peak = s.peak_power_w
    if peak is not None:
        pb.peak_power_w = float(peak)
    if s.energy_anchor_wh is not None:
        pb.energy_anchor_wh = int(s.energy_anchor_wh)
    if s.price is not None:
        # one encoding of the accumulator for billing, the gateway and us
        accumulator_to_pb(s.price, pb.price)
        if running_total:
            pb.price.running_total_incl_tax = running_total
    return pb


def _register_to_pb(msg: Any, reading: Reading | None) -> None:
    """`reading`: (time, Wh as read); the message carries whole Wh."""
    if reading is None:
        return
    at, wh = reading
    set_timestamp(msg.at, at)
    msg.wh = int(wh)


def encode_session(s: Session, *, site_id: str = "", running_total: str = "") -> bytes:
    return session_to_pb(s, site_id=site_id, running_total=running_total).SerializeToString()


def decode_session(data: bytes) -> dict[str, Any]:
    """A snapshot as a plain dict (same keys and formats as the session document's
    public part; unknown numbers are None), for consumers and tests."""
    pb = sessions_pb2.Session()
    pb.ParseFromString(data)

    def iso(parent: Any, field: str) -> str | None:
        dt = get_timestamp(parent, field)
        return None if dt is None else to_ocpp(dt)

    def register(field: str) -> dict[str, Any] | None:
        if not pb.HasField(field):
            return None
        msg = getattr(pb, field)
        return {"at": iso(msg, "at"), "wh": msg.wh}

    return {
        "id": pb.id,
        "station_id": pb.station_id,
        "transaction_id": pb.transaction_id,
        "id_token": pb.id_token,
        "status": pb.status,
        "energy_wh": pb.energy_wh,
        "started_at": iso(pb, "started_at"),
        "stopped_at": iso(pb, "stopped_at"),
        "received_at": iso(pb, "received_at"),
        "charging_ended_at": iso(pb, "charging_ended_at"),
        "updated_at": iso(pb, "updated_at"),
        "evse_id": pb.evse_id,
        "connector_id": pb.connector_id,
        "meter_start_wh": pb.meter_start_wh if pb.HasField("meter_start_wh") else None,
        "meter_stop_wh": pb.meter_stop_wh if pb.HasField("meter_stop_wh") else None,
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
        "abandoned_at": iso(pb, "abandoned_at"),
        "abandon_reason": pb.abandon_reason,
        "station_started_at": iso(pb, "station_started_at"),
        "station_stopped_at": iso(pb, "station_stopped_at"),
        "remote_start_id": pb.remote_start_id,
        "issued_by": pb.issued_by,
        "reservation_id": pb.reservation_id or None,
        "sample_count": pb.sample_count,
        "excluded_count": pb.excluded_count,
        "first_sample_at": iso(pb, "first_sample_at"),
        "last_sample_at": iso(pb, "last_sample_at"),
        "first_register": register("first_register"),
        "last_register": register("last_register"),
        "peak_power_w": pb.peak_power_w if pb.HasField("peak_power_w") else None,
        "energy_anchor_wh": pb.energy_anchor_wh if pb.HasField("energy_anchor_wh") else None,
        "price": _price_from_pb(pb.price) if pb.HasField("price") else None,
    }


def _price_from_pb(msg: Any) -> dict[str, Any]:
    def iso(field: str) -> str | None:
        dt = get_timestamp(msg, field)
        return None if dt is None else to_ocpp(dt)

    return {
        "tariff_id": msg.tariff_id,
        "tariff_fingerprint": msg.tariff_fingerprint,
        "opened_at": iso("opened_at"),
        "open_wh": msg.open_wh,
        "last_at": iso("last_at"),
        "last_wh": msg.last_wh,
        "marks": [
            {"at": to_ocpp(get_timestamp(m, "at") or datetime(1970, 1, 1, tzinfo=UTC)), "wh": m.wh} for m in msg.marks
        ],
        "running_total_incl_tax": msg.running_total_incl_tax or None,
        "currency": msg.currency,
    }


def session_headers(s: Session, *, traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """CloudEvents attributes (binary content mode), like `codec.event_headers`."""
    return cloudevent_headers(f"{s.id}:{s.version}", CE_TYPE, CE_SOURCE, s.updated_at, s.station_id, traceparent=traceparent)


# -- csms.meter-values.v1 ------------------------------------------------------------
def encode_meter_values(
    *,
    session_id: str,
    station_id: str,
    transaction_id: str,
    event_id: str,
    received_at: datetime,
    samples: Iterable[Sample],
) -> bytes:
    pb = meter_values_pb2.SessionMeterValues(
        session_id=session_id, station_id=station_id, transaction_id=transaction_id, event_id=event_id
    )
    set_timestamp(pb.received_at, received_at)
    for x in samples:
        sp = pb.samples.add(
            measurand=x.measurand, value=x.value, unit=x.unit, phase=x.phase, excluded=x.excluded, raw_value=x.raw_value
        )
        set_timestamp(sp.timestamp, x.timestamp)
        set_timestamp(sp.station_time, x.station_time)
    return pb.SerializeToString()


def decode_meter_values(data: bytes) -> dict[str, Any]:
    """A csms.meter-values.v1 record as a plain dict (samples as the REST API shows them)."""
    pb = meter_values_pb2.SessionMeterValues()
    pb.ParseFromString(data)
    received = get_timestamp(pb, "received_at")
    return {
        "session_id": pb.session_id,
        "station_id": pb.station_id,
        "transaction_id": pb.transaction_id,
        "event_id": pb.event_id,
        "received_at": None if received is None else to_ocpp(received),
        "samples": [_sample_dict(x) for x in pb.samples],
    }


def _sample_dict(x: Any) -> dict[str, Any]:
    station_time = get_timestamp(x, "station_time")
    out: dict[str, Any] = {
        "timestamp": to_ocpp(get_timestamp(x, "timestamp") or datetime(1970, 1, 1, tzinfo=UTC)),
        "measurand": x.measurand,
        "value": x.value,
        "unit": x.unit,
        "phase": x.phase,
        "excluded": x.excluded,
        "raw_value": x.raw_value,
    }
    if station_time is not None:
        out["station_time"] = to_ocpp(station_time)
    return out


def meter_values_headers(
    session_id: str, station_id: str, event_id: str, received_at: datetime, *, traceparent: str | None = None
) -> list[tuple[str, bytes]]:
    return cloudevent_headers(
        f"{event_id}:{session_id}", METER_VALUES_CE_TYPE, CE_SOURCE, received_at, station_id, traceparent=traceparent
    )

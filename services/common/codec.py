"""Encode/decode bus payloads: domain dataclasses <-> protobuf bytes, plus CloudEvents headers.

The in-memory bus and Kafka carry exactly the same bytes and headers.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from services.common import events as ev
from services.common.protogen import ensure_generated
from services.common.timeutil import to_ocpp

ensure_generated()

from services.common.gen.csms.commands.v1 import commands_pb2  # noqa: E402
from services.common.gen.csms.events.v1 import events_pb2  # noqa: E402
from services.common.gen.csms.sessions.v1 import sessions_pb2  # noqa: E402
from services.common.gen.csms.meter_values.v1 import meter_values_pb2  # noqa: E402
from services.common.gen.csms.sites.v1 import sites_pb2  # noqa: E402
from services.common.gen.csms.billing.v1 import cdrs_pb2  # noqa: E402

__all__ = [
    "encode_event",
    "decode_event",
    "event_headers",
    "Command",
    "encode_command",
    "decode_command",
    "headers_dict",
    "command_headers",
    "cloudevent_headers",
    "set_timestamp",
    "get_timestamp",
    "events_pb2",
    "commands_pb2",
    "sessions_pb2",
    "meter_values_pb2",
    "sites_pb2",
    "cdrs_pb2",
    "CONTENT_TYPE",
]

CONTENT_TYPE = "application/protobuf"
UTC = timezone.utc

# body dataclass -> name of the oneof field in events.proto
_BODY_FIELD: dict[type, str] = {
    ev.StationConnected: "station_connected",
    ev.StationDisconnected: "station_disconnected",
    ev.StationBooted: "station_booted",
    ev.ConnectorStatus: "connector_status",
    ev.Authorization: "authorization",
    ev.TransactionStarted: "transaction_started",
    ev.TransactionUpdated: "transaction_updated",
    ev.TransactionEnded: "transaction_ended",
    ev.MeterValues: "meter_values",
    ev.Heartbeat: "heartbeat",
    ev.CommandIssued: "command_issued",
    ev.CommandResult: "command_result",
    ev.Notification: "notification",
    ev.SessionAbandoned: "session_abandoned",
}
_FIELD_BODY = {v: k for k, v in _BODY_FIELD.items()}
# optional ints carried as has_x + x in proto3
_OPTIONAL_INTS = {"meter_start_wh": "has_meter_start", "meter_stop_wh": "has_meter_stop"}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def set_timestamp(msg: Any, dt: datetime | None) -> None:
    """Fill a google.protobuf.Timestamp from an aware datetime (None leaves it unset)."""
    if dt is not None:
        delta = dt - _EPOCH  # exact integer arithmetic, no float rounding
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        msg.seconds, rem = divmod(us, 1_000_000)
        msg.nanos = rem * 1000


def get_timestamp(parent: Any, field: str) -> datetime | None:
    """The aware UTC datetime of `parent.<field>`, or None when the field is unset."""
    if not parent.HasField(field):
        return None
    return _ts_value(getattr(parent, field))


def _ts_value(msg: Any) -> datetime:
    return _EPOCH + timedelta(seconds=msg.seconds, microseconds=msg.nanos // 1000)


def cloudevent_headers(
    ce_id: str, ce_type: str, source: str, time: datetime, subject: str, *, traceparent: str | None = None
) -> list[tuple[str, bytes]]:
    """CloudEvents attributes (binary content mode, Kafka protocol binding)."""
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", ce_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", to_ocpp(time).encode()),
        ("ce_subject", subject.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers


def _sample_to_pb(s: ev.MeterSample, pb: Any) -> None:
    set_timestamp(pb.timestamp, s.timestamp)
    pb.measurand = s.measurand
    pb.value = s.value
    pb.unit = s.unit
    pb.phase = s.phase
    pb.context = s.context
    pb.location = s.location
    if s.raw_value:
        pb.raw_value = s.raw_value


def _sample_from_pb(pb: Any) -> ev.MeterSample:
    return ev.MeterSample(
        timestamp=_ts_value(pb.timestamp),
        value=pb.value,
        unit=pb.unit,
        measurand=pb.measurand,
        phase=pb.phase,
        context=pb.context,
        location=pb.location,
        raw_value=pb.raw_value,
    )


def _body_to_pb(body: ev.Body, pb: Any) -> None:
    for f in dataclasses.fields(body):  # type: ignore[arg-type]
        value = getattr(body, f.name)
        if f.name == "samples":
            for s in value:
                _sample_to_pb(s, pb.samples.add())
        elif f.name in _OPTIONAL_INTS:
            if value is not None:
                setattr(pb, _OPTIONAL_INTS[f.name], True)
                setattr(pb, f.name, int(value))
        else:
            setattr(pb, f.name, value)


def _body_from_pb(cls: type, pb: Any) -> ev.Body:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "samples":
            kwargs[f.name] = tuple(_sample_from_pb(s) for s in pb.samples)
        elif f.name in _OPTIONAL_INTS:
            kwargs[f.name] = getattr(pb, f.name) if getattr(pb, _OPTIONAL_INTS[f.name]) else None
        else:
            kwargs[f.name] = getattr(pb, f.name)
    return cls(**kwargs)  # type: ignore[no-any-return]


def encode_event(env: ev.Envelope) -> bytes:
    pb = events_pb2.Event(
        event_id=env.event_id,
        station_id=env.station_id,
        gateway_id=env.gateway_id,
        ocpp_version=env.ocpp_version,
        message_id=env.message_id,
        action=env.action,
    )
    set_timestamp(pb.received_at, env.received_at)
    set_timestamp(pb.station_time, env.station_time)
    field = _BODY_FIELD[type(env.body)]
    body_pb = getattr(pb, field)
    body_pb.SetInParent()
    _body_to_pb(env.body, body_pb)
    return pb.SerializeToString()  # type: ignore[no-any-return]


def decode_event(data: bytes, headers: dict[str, str] | None = None) -> ev.Envelope:
    pb = events_pb2.Event()
    pb.ParseFromString(data)
    field = pb.WhichOneof("body")
    if field is None:
        raise ValueError("event without a body")
    body = _body_from_pb(_FIELD_BODY[field], getattr(pb, field))
    received = _ts_value(pb.received_at)
    return ev.Envelope(
        event_id=pb.event_id,
        station_id=pb.station_id,
        received_at=received,
        body=body,
        gateway_id=pb.gateway_id,
        ocpp_version=pb.ocpp_version,
        station_time=get_timestamp(pb, "station_time"),
        message_id=pb.message_id,
        action=pb.action,
        headers=headers or {},
    )


def event_headers(env: ev.Envelope, *, traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """CloudEvents attributes for an event on csms.events.v1."""
    return cloudevent_headers(
        env.event_id, f"csms.events.v1.{env.type_name}", f"/csms/gateway/{env.gateway_id or 'unknown'}",
        env.received_at, env.station_id, traceparent=traceparent,
    )


def headers_dict(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in headers}


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """A command for a station, as carried on csms.commands.v1."""

    command_id: str
    station_id: str
    command_type: str
    params_json: str
    issued_at: datetime
    expires_at: datetime
    target_gateway_id: str = ""
    target_epoch: int = 0
    hops: int = 0
    issuer: str = "api"


def encode_command(cmd: Command) -> bytes:
    pb = commands_pb2.Command(
        command_id=cmd.command_id,
        station_id=cmd.station_id,
        command_type=cmd.command_type,
        params_json=cmd.params_json,
        target_gateway_id=cmd.target_gateway_id,
        target_epoch=cmd.target_epoch,
        hops=cmd.hops,
        issuer=cmd.issuer,
    )
    set_timestamp(pb.issued_at, cmd.issued_at)
    set_timestamp(pb.expires_at, cmd.expires_at)
    return pb.SerializeToString()  # type: ignore[no-any-return]


def decode_command(data: bytes) -> Command:
    pb = commands_pb2.Command()
    pb.ParseFromString(data)
    issued, expires = _ts_value(pb.issued_at), _ts_value(pb.expires_at)
    return Command(
        command_id=pb.command_id,
        station_id=pb.station_id,
        command_type=pb.command_type,
        params_json=pb.params_json,
        issued_at=issued,
        expires_at=expires,
        target_gateway_id=pb.target_gateway_id,
        target_epoch=pb.target_epoch,
        hops=pb.hops,
        issuer=pb.issuer,
    )


def command_headers(cmd: Command) -> list[tuple[str, bytes]]:
    return cloudevent_headers(cmd.command_id, f"csms.commands.v1.{cmd.command_type}", f"/csms/{cmd.issuer}", cmd.issued_at, cmd.station_id)

"""Encode/decode bus payloads: domain dataclasses <-> protobuf bytes, plus CloudEvents headers.

The in-memory bus and Kafka carry exactly the same bytes and headers.
"""

from __future__ import annotations

import dataclasses
import re
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
from services.common.gen.csms.datatransfer.v1 import datatransfer_pb2  # noqa: E402

__all__ = [
    "encode_event",
    "decode_event",
    "event_headers",
    "timestamp_value",
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
    "datatransfer_pb2",
    "encode_station_data_transfer",
    "CONTENT_TYPE",
]

CONTENT_TYPE = "application/protobuf"
UTC = timezone.utc

_CAMEL_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# body dataclass -> name of the oneof field in events.proto (DataTransfer -> data_transfer)
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
    **{cls: _CAMEL_WORD.sub("_", cls.__name__).lower() for cls in ev.OPERATION_BODIES},
}
_FIELD_BODY = {v: k for k, v in _BODY_FIELD.items()}
# optional ints carried as has_x + x in proto3
_OPTIONAL_INTS = {"meter_start_wh": "has_meter_start", "meter_stop_wh": "has_meter_stop"}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def set_timestamp(msg: Any, dt: datetime | None) -> None:
    """Fill a google.protobuf.Timestamp from an aware datetime (None leaves it unset)."""
    if dt is not None:
        # exact integer arithmetic, no float rounding; a timedelta is already normalised to
        # 0 <= seconds < 86,400 and 0 <= microseconds < 10**6, which is Timestamp's own
        # normal form (nanos >= 0, also before 1970)
        delta = dt - _EPOCH
        msg.seconds = delta.days * 86_400 + delta.seconds
        msg.nanos = delta.microseconds * 1000


def get_timestamp(parent: Any, field: str) -> datetime | None:
    """The aware UTC datetime of `parent.<field>`, or None when the field is unset."""
    if not parent.HasField(field):
        return None
    return timestamp_value(getattr(parent, field))


def timestamp_value(msg: Any) -> datetime:
    return _EPOCH + timedelta(seconds=msg.seconds, microseconds=msg.nanos // 1000)


# The constant CloudEvents headers, shared (tuples are immutable; every call gets its own list).
_H_SPEC = ("ce_specversion", b"1.0")
_H_CONTENT_TYPE = ("content-type", CONTENT_TYPE.encode())


def _ce_time(dt: datetime) -> bytes:
    """`timeutil.to_ocpp(dt)` as bytes (its fast path covers every UTC `received_at`)."""
    return to_ocpp(dt).encode()


def cloudevent_headers(
    ce_id: str, ce_type: str, source: str, time: datetime, subject: str, *, traceparent: str | None = None
) -> list[tuple[str, bytes]]:
    """CloudEvents attributes (binary content mode, Kafka protocol binding)."""
    headers = [
        _H_SPEC,
        ("ce_id", ce_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", _ce_time(time)),
        ("ce_subject", subject.encode()),
        _H_CONTENT_TYPE,
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers


def _add_samples(samples: Sequence[ev.MeterSample], repeated: Any) -> None:
    """Append the samples to a repeated MeterSample field, each built by one
    `add(**fields)` (fewer attribute writes on the protobuf object than one per field;
    the same bytes: proto3 does not serialise a string left at its default "")."""
    add = repeated.add
    for s in samples:
        set_timestamp(add(measurand=s.measurand, value=s.value, unit=s.unit, phase=s.phase, context=s.context,
                          location=s.location, raw_value=s.raw_value).timestamp, s.timestamp)


def _sample_from_pb(pb: Any) -> ev.MeterSample:
    return ev.MeterSample(
        timestamp=timestamp_value(pb.timestamp),
        value=pb.value,
        unit=pb.unit,
        measurand=pb.measurand,
        phase=pb.phase,
        context=pb.context,
        location=pb.location,
        raw_value=pb.raw_value,
    )


# How each body type is encoded, worked out once per type (the gateway encodes every CALL's
# event; `dataclasses.fields` and the per-field branching were a visible share of it):
# (oneof field of events.proto, ((field name, has-field name for an optional int or "",
# is the samples list), ...)).
_Plan = tuple[str, tuple[tuple[str, str, bool], ...]]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        fields = tuple((f.name, _OPTIONAL_INTS.get(f.name, ""), f.name == "samples") for f in dataclasses.fields(cls))
        plan = _PLANS[cls] = (_BODY_FIELD[cls], fields)
    return plan


def _body_to_pb(body: ev.Body, pb: Any) -> None:
    for name, has, samples in _plan(type(body))[1]:
        value = getattr(body, name)
        if samples:
            _add_samples(value, pb.samples)
        elif has:
            if value is not None:
                setattr(pb, has, True)
                setattr(pb, name, int(value))
        else:
            setattr(pb, name, value)


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


# -- station operation bodies (ADR 016): nested messages, converted generically ------------
# The dataclasses in services/common/events.py mirror events.proto by name, so one walk over
# the dataclass fields and the message descriptor covers them all: `X | None` is unset (no
# has_ flag, no Timestamp, no message) when None; tuples are repeated fields.
_TIMESTAMP = "google.protobuf.Timestamp"
_NESTED: dict[str, type] = {
    cls.__name__: cls
    for cls in vars(ev).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == ev.__name__
}
_OPERATIONS = frozenset(ev.OPERATION_BODIES)


def _ops_to_pb(obj: Any, pb: Any) -> None:
    names = pb.DESCRIPTOR.fields_by_name
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        desc = names[f.name]
        target = desc.message_type
        if target is not None and target.full_name == _TIMESTAMP:
            set_timestamp(getattr(pb, f.name), value)
        elif target is not None and desc.is_repeated:
            repeated = getattr(pb, f.name)
            for item in value:
                _ops_to_pb(item, repeated.add())
        elif target is not None:
            sub = getattr(pb, f.name)
            sub.SetInParent()
            _ops_to_pb(value, sub)
        elif desc.is_repeated:
            getattr(pb, f.name).extend(value)
        else:
            setattr(pb, f.name, value)
        has = "has_" + f.name
        if has in names:
            setattr(pb, has, True)


def _ops_from_pb(cls: type, pb: Any) -> Any:
    names = pb.DESCRIPTOR.fields_by_name
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        desc = names[f.name]
        target = desc.message_type
        optional = f.default is None
        if target is not None and target.full_name == _TIMESTAMP:
            kwargs[f.name] = get_timestamp(pb, f.name)
        elif target is not None and desc.is_repeated:
            kwargs[f.name] = tuple(_ops_from_pb(_NESTED[target.name], x) for x in getattr(pb, f.name))
        elif target is not None:
            present = pb.HasField(f.name) or not optional
            kwargs[f.name] = _ops_from_pb(_NESTED[target.name], getattr(pb, f.name)) if present else None
        elif desc.is_repeated:
            kwargs[f.name] = tuple(getattr(pb, f.name))
        elif "has_" + f.name in names and not getattr(pb, "has_" + f.name):
            kwargs[f.name] = None
        else:
            kwargs[f.name] = getattr(pb, f.name)
    return cls(**kwargs)


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
    body_type = type(env.body)
    body_pb = getattr(pb, _BODY_FIELD[body_type])
    body_pb.SetInParent()
    if body_type in _OPERATIONS:
        _ops_to_pb(env.body, body_pb)
    else:
        _body_to_pb(env.body, body_pb)
    return pb.SerializeToString()


def decode_event(data: bytes, headers: dict[str, str] | None = None) -> ev.Envelope:
    pb = events_pb2.Event()
    pb.ParseFromString(data)
    field = pb.WhichOneof("body")
    if field is None:
        raise ValueError("event without a body")
    cls = _FIELD_BODY[field]
    body = _ops_from_pb(cls, getattr(pb, field)) if cls in _OPERATIONS else _body_from_pb(cls, getattr(pb, field))
    received = timestamp_value(pb.received_at)
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


# ce_type per body type and ce_source per gateway id, encoded once (a process has one
# gateway id; the bound only guards a caller that publishes for many).
_CE_TYPE_HEADERS: dict[type, tuple[str, bytes]] = {}
_CE_SOURCE_HEADERS: dict[str, tuple[str, bytes]] = {}
_CE_SOURCE_MAX = 1024


def event_headers(env: ev.Envelope, *, traceparent: str | None = None) -> list[tuple[str, bytes]]:
    """CloudEvents attributes for an event on csms.events.v1: the same list, in the same
    order, as `cloudevent_headers` gives (tests/unit/common/test_codec.py compares them)."""
    cls = type(env.body)
    ce_type = _CE_TYPE_HEADERS.get(cls)
    if ce_type is None:
        ce_type = _CE_TYPE_HEADERS[cls] = ("ce_type", f"csms.events.v1.{cls.__name__}".encode())
    gateway_id = env.gateway_id
    source = _CE_SOURCE_HEADERS.get(gateway_id)
    if source is None:
        if len(_CE_SOURCE_HEADERS) >= _CE_SOURCE_MAX:
            _CE_SOURCE_HEADERS.clear()
        source = _CE_SOURCE_HEADERS[gateway_id] = ("ce_source", f"/csms/gateway/{gateway_id or 'unknown'}".encode())
    headers = [
        _H_SPEC,
        ("ce_id", env.event_id.encode()),
        source,
        ce_type,
        ("ce_time", _ce_time(env.received_at)),
        ("ce_subject", env.station_id.encode()),
        _H_CONTENT_TYPE,
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers


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
    fence_epoch: int | None = None  # a fence (commands.proto `Fence`): close sockets older than this


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
    if cmd.fence_epoch is not None:
        pb.fence.epoch = cmd.fence_epoch
    set_timestamp(pb.issued_at, cmd.issued_at)
    set_timestamp(pb.expires_at, cmd.expires_at)
    return pb.SerializeToString()


def decode_command(data: bytes) -> Command:
    pb = commands_pb2.Command()
    pb.ParseFromString(data)
    issued, expires = timestamp_value(pb.issued_at), timestamp_value(pb.expires_at)
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
        fence_epoch=pb.fence.epoch if pb.HasField("fence") else None,
    )


def command_headers(cmd: Command) -> list[tuple[str, bytes]]:
    return cloudevent_headers(cmd.command_id, f"csms.commands.v1.{cmd.command_type}", f"/csms/{cmd.issuer}", cmd.issued_at, cmd.station_id)


def encode_station_data_transfer(env: ev.Envelope) -> bytes:
    """A DataTransfer event as its csms.datatransfer.v1 `StationDataTransfer` record
    (proto/csms/datatransfer/v1/datatransfer.proto; ADR 016)."""
    body = env.body
    if not isinstance(body, ev.DataTransfer):
        raise TypeError(f"not a DataTransfer event: {type(body).__name__}")
    pb = datatransfer_pb2.StationDataTransfer(
        event_id=env.event_id,
        station_id=env.station_id,
        vendor_id=body.vendor_id,
        message_id=body.message_id,
        data_json=body.data_json,
        ocpp_version=env.ocpp_version,
        gateway_id=env.gateway_id,
    )
    set_timestamp(pb.received_at, env.received_at)
    return pb.SerializeToString()

"""What the stations processor writes to the history log and publishes (ADR 016 §1, §3).

- `history_row(env)`: the station's history row of an event (`StationEventRow`, type = the
  body's class name), or None for what history does not keep: transaction events,
  MeterValues of a transaction (those live in sessions), heartbeats (in the status
  document) and SessionAbandoned (the sessions processor's decision, not the station's).
  The row's `body` is the REST item of GET /stations/{id}/events: {"event_id", "type",
  "action", "received_at", "station_time", "gateway_id", "data"}, `data` being the event
  body in snake_case JSON (its dataclass fields; instants as `to_ocpp` text, absent
  optionals null, repeated fields lists).
- `outage_row(station_id, outage)`: the `Outage` row of a closed outage (at = its end;
  data {cause, start, end, duration_s}). Its event id is derived from the outage, so the
  row of a batch handled again is the same row.
- `datatransfer_record(env)`: a DataTransfer as its csms.datatransfer.v1 record (key =
  station id, ce_id = the event id, so a redelivery is recognisable).
- `transaction_meter_values(data)`: whether an encoded event is MeterValues of a
  transaction, read from the protobuf without building the event (its samples are what
  decoding costs): the bulk of the topic, which the stations-state stage skips.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from services.common import codec, topics
from services.common import events as ev
from services.common.bus.port import Outgoing
from services.common.store.port import StationEventRow
from services.common.timeutil import to_ocpp
from services.stations.domain.ops import Outage

__all__ = [
    "NOT_IN_HISTORY",
    "OUTAGE",
    "DATATRANSFER_CE_TYPE",
    "history_row",
    "outage_row",
    "event_json",
    "datatransfer_record",
    "transaction_meter_values",
    "METER_VALUES_CE_TYPE",
]

# Body names history never keeps (MeterValues is kept when it has no transaction id).
NOT_IN_HISTORY = frozenset({"TransactionStarted", "TransactionUpdated", "TransactionEnded", "Heartbeat", "SessionAbandoned"})
OUTAGE = "Outage"
DATATRANSFER_CE_TYPE = "csms.datatransfer.v1.StationDataTransfer"
METER_VALUES_CE_TYPE = "csms.events.v1.MeterValues"


_NOT_KNOWN: Any = object()
# per type: its dataclass field names, or None for a type that is no dataclass (the event
# classes are few; `dataclasses.fields` per value was the row's main cost)
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None


def _plain(value: Any) -> Any:
    """A dataclass value as JSON-able data: dataclasses as dicts, tuples as lists,
    instants as `to_ocpp` text."""
    cls = type(value)
    names = _FIELD_NAMES.get(cls, _NOT_KNOWN)
    if names is _NOT_KNOWN:
        names = _FIELD_NAMES[cls] = _field_names(cls)
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, datetime):
        return to_ocpp(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def event_json(env: ev.Envelope) -> dict[str, Any]:
    """The REST item of an event (see the module docstring)."""
    return {
        "event_id": env.event_id,
        "type": env.type_name,
        "action": env.action,
        "received_at": to_ocpp(env.received_at),
        "station_time": None if env.station_time is None else to_ocpp(env.station_time),
        "gateway_id": env.gateway_id,
        "data": _plain(env.body),
    }


def history_row(env: ev.Envelope) -> StationEventRow | None:
    name = env.type_name
    if name in NOT_IN_HISTORY:
        return None
    if isinstance(env.body, ev.MeterValues) and env.body.transaction_id:
        return None
    return StationEventRow(env.station_id, env.received_at, env.event_id, name, event_json(env))


def outage_row(station_id: str, outage: Outage) -> StationEventRow:
    start, end = to_ocpp(outage.start), to_ocpp(outage.end)
    event_id = f"outage:{outage.cause}:{start}"
    return StationEventRow(station_id, outage.end, event_id, OUTAGE, {
        "event_id": event_id,
        "type": OUTAGE,
        "action": "",
        "received_at": end,
        "station_time": None,
        "gateway_id": "",
        "data": {
            "cause": outage.cause,
            "start": start,
            "end": end,
            "duration_s": (outage.end - outage.start).total_seconds(),
        },
    })


def datatransfer_record(env: ev.Envelope) -> Outgoing:
    headers = codec.cloudevent_headers(
        env.event_id, DATATRANSFER_CE_TYPE, f"/csms/gateway/{env.gateway_id or 'unknown'}", env.received_at,
        env.station_id,
    )
    return (topics.DATATRANSFER, env.station_id, codec.encode_station_data_transfer(env), headers)


def transaction_meter_values(data: bytes) -> bool:
    """Whether `data` (an encoded csms.events.v1 event) is MeterValues with a transaction
    id. Parsing the protobuf is cheap; building the envelope and its samples is not.
    Raises (protobuf's DecodeError) on bytes that do not parse, as `decode_event` would."""
    pb = codec.events_pb2.Event()
    pb.ParseFromString(data)
    return pb.WhichOneof("body") == "meter_values" and bool(pb.meter_values.transaction_id)

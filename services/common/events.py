"""Normalized station events: the domain-side model of `proto/csms/events/v1/events.proto`.

Domain code (sessions, billing, smart charging) works on these dataclasses; only
`services.common.codec` knows the generated protobuf classes. One `Envelope` per
OCPP message, with one body; 1.6 and 2.0.1 map onto the same bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

__all__ = [
    "MeterSample",
    "StationConnected",
    "StationDisconnected",
    "StationBooted",
    "ConnectorStatus",
    "Authorization",
    "TransactionStarted",
    "TransactionUpdated",
    "TransactionEnded",
    "MeterValues",
    "Heartbeat",
    "CommandIssued",
    "CommandResult",
    "Notification",
    "SessionAbandoned",
    "Body",
    "Envelope",
    "ENERGY_REGISTER",
    "SEQ_NO_LAST_16",
]

ENERGY_REGISTER = "Energy.Active.Import.Register"
# SessionAbandoned.reason values
ABANDONED_NEW_TRANSACTION = "new_transaction"
ABANDONED_BOOT = "boot"
ABANDONED_CONNECTOR_AVAILABLE = "connector_available"
ABANDONED_IDLE_TIMEOUT = "idle_timeout"
# 1.6 has no seqNo; its StopTransaction is always the last message of a transaction.
SEQ_NO_LAST_16 = 2**31 - 1


@dataclass(frozen=True, slots=True)
class MeterSample:
    timestamp: datetime
    value: float          # normalized: Wh, W, A, V, varh, var, VA, Hz, Percent, Celsius
    unit: str = "Wh"
    measurand: str = ENERGY_REGISTER
    phase: str = ""
    context: str = ""
    location: str = ""
    raw_value: str = ""   # set when the value as sent was not a usable number; value is then 0


@dataclass(frozen=True, slots=True)
class StationConnected:
    epoch: int
    remote_addr: str = ""
    subprotocol: str = ""


@dataclass(frozen=True, slots=True)
class StationDisconnected:
    epoch: int
    close_code: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StationBooted:
    vendor: str
    model: str
    serial_number: str = ""
    firmware_version: str = ""
    reason: str = ""
    registration_status: str = "Accepted"
    interval: int = 0
    iccid: str = ""
    imsi: str = ""
    meter_type: str = ""
    meter_serial_number: str = ""


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    evse_id: int
    connector_id: int
    status: str
    error_code: str = ""
    info: str = ""
    vendor_error_code: str = ""


@dataclass(frozen=True, slots=True)
class Authorization:
    id_token: str
    status: str
    token_type: str = ""


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    transaction_id: str
    evse_id: int = 0
    connector_id: int = 0
    id_token: str = ""
    meter_start_wh: int | None = None
    seq_no: int = 0
    trigger_reason: str = ""
    charging_state: str = ""
    reservation_id: int = 0
    samples: tuple[MeterSample, ...] = ()
    id_token_status: str = ""
    remote_start_id: int = 0


@dataclass(frozen=True, slots=True)
class TransactionUpdated:
    transaction_id: str
    evse_id: int = 0
    connector_id: int = 0
    seq_no: int = 0
    trigger_reason: str = ""
    charging_state: str = ""
    id_token: str = ""
    samples: tuple[MeterSample, ...] = ()
    offline: bool = False


@dataclass(frozen=True, slots=True)
class TransactionEnded:
    transaction_id: str
    evse_id: int = 0
    connector_id: int = 0
    seq_no: int = SEQ_NO_LAST_16
    meter_stop_wh: int | None = None
    stop_reason: str = ""
    id_token: str = ""
    trigger_reason: str = ""
    samples: tuple[MeterSample, ...] = ()
    offline: bool = False


@dataclass(frozen=True, slots=True)
class MeterValues:
    transaction_id: str = ""
    evse_id: int = 0
    connector_id: int = 0
    samples: tuple[MeterSample, ...] = ()


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


@dataclass(frozen=True, slots=True)
class CommandIssued:
    command_id: str
    command_type: str
    ocpp_action: str = ""
    payload_json: str = "{}"
    issuer: str = ""


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: str
    command_type: str
    status: str
    response_json: str = "{}"
    error_code: str = ""
    error_description: str = ""


@dataclass(frozen=True, slots=True)
class Notification:
    payload_json: str = "{}"


@dataclass(frozen=True, slots=True)
class SessionAbandoned:
    """Decided by the sessions processor (not sent by a station); see events.proto."""

    transaction_id: str
    session_id: str
    evse_id: int = 0
    connector_id: int = 0
    reason: str = ""
    energy_wh: int = 0


Body = Union[
    StationConnected,
    StationDisconnected,
    StationBooted,
    ConnectorStatus,
    Authorization,
    TransactionStarted,
    TransactionUpdated,
    TransactionEnded,
    MeterValues,
    Heartbeat,
    CommandIssued,
    CommandResult,
    Notification,
    SessionAbandoned,
]


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    station_id: str
    received_at: datetime
    body: Body
    gateway_id: str = ""
    ocpp_version: str = ""
    station_time: datetime | None = None
    message_id: str = ""
    action: str = ""
    headers: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def type_name(self) -> str:
        return type(self.body).__name__

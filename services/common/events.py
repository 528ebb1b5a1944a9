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
    "DataTransfer",
    "FirmwareStatus",
    "LogStatus",
    "SecurityEvent",
    "Component",
    "Variable",
    "VariableAttribute",
    "VariableCharacteristics",
    "ReportDatum",
    "ReportPart",
    "EventDatum",
    "EventReport",
    "VariableMonitor",
    "MonitoringDatum",
    "MonitoringReportPart",
    "ReservationStatus",
    "SchedulePeriod",
    "Cost",
    "ConsumptionCost",
    "SalesTariffEntry",
    "SalesTariff",
    "ChargingSchedule",
    "ChargingProfile",
    "ChargingLimitSet",
    "ChargingLimitCleared",
    "ChargingProfilesReport",
    "AcChargingParameters",
    "DcChargingParameters",
    "EvChargingNeeds",
    "EvChargingSchedule",
    "DisplayMessage",
    "DisplayMessagesReport",
    "CustomerInformationPart",
    "PublishFirmwareStatus",
    "CertificateSigningRequest",
    "CertificateStatusRequest",
    "EvCertificateRequest",
    "OPERATION_BODIES",
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
    security_profile: int = 0  # 1 basic auth over ws, 2 basic auth over TLS, 3 client certificate; 0 unknown


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
    ocpp_action: str = ""         # the OCPP action the command was sent as
    request_json: str = ""        # the OCPP request payload the station was sent (camelCase JSON)


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


# -- station operations (ADR 016) -------------------------------------------------------
# Mirror events.proto one to one (same names); `X | None` is a field with a has_ flag or an
# unset Timestamp/message there; repeated fields are tuples. services/common/codec.py
# converts them generically (these are not on the hot path).


@dataclass(frozen=True, slots=True)
class DataTransfer:
    vendor_id: str
    message_id: str = ""
    data_json: str = ""       # `data` as sent, as JSON text ("" when absent)
    status: str = ""          # what the CSMS answered


@dataclass(frozen=True, slots=True)
class FirmwareStatus:
    status: str
    request_id: int | None = None


@dataclass(frozen=True, slots=True)
class LogStatus:
    status: str
    request_id: int | None = None
    diagnostics: bool = False  # 1.6 DiagnosticsStatusNotification


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    type: str
    timestamp: datetime | None = None
    tech_info: str = ""


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    instance: str = ""
    evse_id: int | None = None
    connector_id: int = 0


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    instance: str = ""


@dataclass(frozen=True, slots=True)
class VariableAttribute:
    type: str = "Actual"
    value: str | None = None
    mutability: str = "ReadWrite"
    persistent: bool = False
    constant: bool = False


@dataclass(frozen=True, slots=True)
class VariableCharacteristics:
    data_type: str
    unit: str = ""
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: str = ""
    supports_monitoring: bool = False


@dataclass(frozen=True, slots=True)
class ReportDatum:
    component: Component
    variable: Variable
    attributes: tuple[VariableAttribute, ...] = ()
    characteristics: VariableCharacteristics | None = None


@dataclass(frozen=True, slots=True)
class ReportPart:
    request_id: int
    seq_no: int
    tbc: bool = False
    generated_at: datetime | None = None
    data: tuple[ReportDatum, ...] = ()


@dataclass(frozen=True, slots=True)
class EventDatum:
    event_id: int
    trigger: str
    component: Component
    variable: Variable
    timestamp: datetime | None = None
    cause: int | None = None
    actual_value: str = ""
    tech_code: str = ""
    tech_info: str = ""
    cleared: bool = False
    transaction_id: str = ""
    variable_monitoring_id: int | None = None
    event_notification_type: str = ""


@dataclass(frozen=True, slots=True)
class EventReport:
    seq_no: int
    tbc: bool = False
    generated_at: datetime | None = None
    events: tuple[EventDatum, ...] = ()


@dataclass(frozen=True, slots=True)
class VariableMonitor:
    id: int
    value: float
    type: str
    severity: int
    transaction: bool = False


@dataclass(frozen=True, slots=True)
class MonitoringDatum:
    component: Component
    variable: Variable
    monitors: tuple[VariableMonitor, ...] = ()


@dataclass(frozen=True, slots=True)
class MonitoringReportPart:
    request_id: int
    seq_no: int
    tbc: bool = False
    generated_at: datetime | None = None
    data: tuple[MonitoringDatum, ...] = ()


@dataclass(frozen=True, slots=True)
class ReservationStatus:
    reservation_id: int
    status: str


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    start_period: int
    limit: float
    number_phases: int = 0
    phase_to_use: int = 0


@dataclass(frozen=True, slots=True)
class Cost:
    cost_kind: str
    amount: int
    amount_multiplier: int = 0


@dataclass(frozen=True, slots=True)
class ConsumptionCost:
    start_value: float
    costs: tuple[Cost, ...] = ()


@dataclass(frozen=True, slots=True)
class SalesTariffEntry:
    start: int
    duration: int = 0
    e_price_level: int = 0
    consumption_costs: tuple[ConsumptionCost, ...] = ()


@dataclass(frozen=True, slots=True)
class SalesTariff:
    id: int
    description: str = ""
    num_e_price_levels: int = 0
    entries: tuple[SalesTariffEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class ChargingSchedule:
    charging_rate_unit: str
    id: int = 0
    start_schedule: datetime | None = None
    duration: int = 0
    periods: tuple[SchedulePeriod, ...] = ()
    min_charging_rate: float | None = None
    sales_tariff: SalesTariff | None = None


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    id: int
    stack_level: int
    purpose: str
    kind: str
    recurrency_kind: str = ""
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str = ""
    schedules: tuple[ChargingSchedule, ...] = ()


@dataclass(frozen=True, slots=True)
class ChargingLimitSet:
    source: str
    is_grid_critical: bool | None = None
    evse_id: int = 0
    schedules: tuple[ChargingSchedule, ...] = ()


@dataclass(frozen=True, slots=True)
class ChargingLimitCleared:
    source: str
    evse_id: int = 0


@dataclass(frozen=True, slots=True)
class ChargingProfilesReport:
    request_id: int
    source: str
    evse_id: int
    tbc: bool = False
    profiles: tuple[ChargingProfile, ...] = ()


@dataclass(frozen=True, slots=True)
class AcChargingParameters:
    energy_amount: int
    ev_min_current: int
    ev_max_current: int
    ev_max_voltage: int


@dataclass(frozen=True, slots=True)
class DcChargingParameters:
    ev_max_current: int
    ev_max_voltage: int
    energy_amount: int = 0
    ev_max_power: int = 0
    state_of_charge: int = 0
    ev_energy_capacity: int = 0
    full_soc: int = 0
    bulk_soc: int = 0


@dataclass(frozen=True, slots=True)
class EvChargingNeeds:
    evse_id: int
    requested_energy_transfer: str
    max_schedule_tuples: int = 0
    departure_time: datetime | None = None
    ac: AcChargingParameters | None = None
    dc: DcChargingParameters | None = None
    status: str = ""


@dataclass(frozen=True, slots=True)
class EvChargingSchedule:
    evse_id: int
    time_base: datetime | None = None
    schedule: ChargingSchedule | None = None
    status: str = ""


@dataclass(frozen=True, slots=True)
class DisplayMessage:
    id: int
    priority: str
    format: str
    content: str
    state: str = ""
    start: datetime | None = None
    end: datetime | None = None
    transaction_id: str = ""
    language: str = ""
    display: Component | None = None


@dataclass(frozen=True, slots=True)
class DisplayMessagesReport:
    request_id: int
    tbc: bool = False
    messages: tuple[DisplayMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class CustomerInformationPart:
    request_id: int
    seq_no: int
    data: str = ""
    tbc: bool = False
    generated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PublishFirmwareStatus:
    status: str
    locations: tuple[str, ...] = ()
    request_id: int | None = None


@dataclass(frozen=True, slots=True)
class CertificateSigningRequest:
    csr: str
    certificate_type: str = ""
    status: str = ""


@dataclass(frozen=True, slots=True)
class CertificateStatusRequest:
    hash_algorithm: str
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    responder_url: str
    status: str = ""


@dataclass(frozen=True, slots=True)
class EvCertificateRequest:
    iso15118_schema_version: str
    action: str
    exi_request: str
    status: str = ""


# Bodies of station operations, in events.proto order (codec: generic conversion).
OPERATION_BODIES: tuple[type, ...] = (
    DataTransfer, FirmwareStatus, LogStatus, SecurityEvent, ReportPart, EventReport, MonitoringReportPart,
    ReservationStatus, ChargingLimitSet, ChargingLimitCleared, ChargingProfilesReport, EvChargingNeeds,
    EvChargingSchedule, DisplayMessagesReport, CustomerInformationPart, PublishFirmwareStatus,
    CertificateSigningRequest, CertificateStatusRequest, EvCertificateRequest,
)


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
    DataTransfer,
    FirmwareStatus,
    LogStatus,
    SecurityEvent,
    ReportPart,
    EventReport,
    MonitoringReportPart,
    ReservationStatus,
    ChargingLimitSet,
    ChargingLimitCleared,
    ChargingProfilesReport,
    EvChargingNeeds,
    EvChargingSchedule,
    DisplayMessagesReport,
    CustomerInformationPart,
    PublishFirmwareStatus,
    CertificateSigningRequest,
    CertificateStatusRequest,
    EvCertificateRequest,
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

"""Station operations (ADR 016 §1): OCPP payloads -> their typed event bodies.

One pure function per body of `events.proto`'s station operations, shared by the 1.6 and
2.0.1 handlers: a schema-validated payload dict in, a `services.common.events` body out.
OCPP's camelCase becomes the proto's snake_case; what the payload leaves out becomes the
body's "absent" (None for a field with a has_ flag, an unset instant or nested message,
0 / "" otherwise) and the schema's defaults are applied (attribute type "Actual",
mutability "ReadWrite", persistent/constant/tbc false), so consumers need not know them.

These messages are validated strictly, so a value the event cannot carry is the
station's error: an integer beyond the field's int32 (`strict_int`) or a number that is
not finite raises PropertyConstraintViolation, which the core answers as the CALLERROR.
An instant that passes the schema's pattern yet is no date (month 13) only loses that
instant (None, logged: `station_time`), never the message. Fields are read with `.get`
where the 2.0.1 schema requires them too: OCPP 2.1 reuses these handlers, and a 2.1
payload shaped differently maps to what it has rather than failing.

Where the CSMS's answer is part of the record (DataTransfer, the ISO 15118 and
certificate requests), the caller passes the `status` it answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from ocpp.exceptions import PropertyConstraintViolationError

from services.common.events import (
    AcChargingParameters,
    CertificateSigningRequest,
    CertificateStatusRequest,
    ChargingLimitCleared,
    ChargingLimitSet,
    ChargingProfile,
    ChargingProfilesReport,
    ChargingSchedule,
    Component,
    ConsumptionCost,
    Cost,
    CustomerInformationPart,
    DataTransfer,
    DcChargingParameters,
    DisplayMessage,
    DisplayMessagesReport,
    EvCertificateRequest,
    EvChargingNeeds,
    EvChargingSchedule,
    EventDatum,
    EventReport,
    FirmwareStatus,
    LogStatus,
    MonitoringDatum,
    MonitoringReportPart,
    PublishFirmwareStatus,
    ReportDatum,
    ReportPart,
    ReservationStatus,
    SalesTariff,
    SalesTariffEntry,
    SchedulePeriod,
    SecurityEvent,
    Variable,
    VariableAttribute,
    VariableCharacteristics,
    VariableMonitor,
)
from services.common import pki
from services.common.ocpp.wire import json_default
from services.gateway.actions.common import strict_int
from services.gateway.meter import station_time

__all__ = [
    "certificate_signing_request",
    "certificate_status_request",
    "charging_limit_cleared",
    "charging_limit_set",
    "charging_profiles_report",
    "component",
    "customer_information_part",
    "data_transfer",
    "datatransfer_status",
    "display_messages_report",
    "ev_certificate_request",
    "ev_charging_needs",
    "ev_charging_schedule",
    "event_report",
    "firmware_status",
    "log_status",
    "monitoring_report_part",
    "publish_firmware_status",
    "report_part",
    "reservation_status",
    "schedule",
    "security_event",
    "sign_certificate_decision",
    "station_time_of",
    "variable",
]

_32 = 32


# -- scalars -------------------------------------------------------------------------

def _int(field: str, value: Any) -> int:
    """A required int32 (absent: 0)."""
    return 0 if value is None else strict_int(field, value, bits=_32)


def _opt_int(field: str, value: Any) -> int | None:
    """An optional int32 with a has_ flag: None when absent."""
    return None if value is None else strict_int(field, value, bits=_32)


def _float(field: str, value: Any) -> float:
    if value is None:
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise PropertyConstraintViolationError(f"{field} must be a finite number") from None
    if not math.isfinite(number):
        raise PropertyConstraintViolationError(f"{field} must be a finite number")
    return number


def _opt_float(field: str, value: Any) -> float | None:
    return None if value is None else _float(field, value)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _bool(value: Any) -> bool:
    return value is True


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _instant(value: Any) -> datetime | None:
    return station_time(value)


def station_time_of(p: dict[str, Any]) -> datetime | None:
    """The envelope's station time: the message's `timestamp` or `generatedAt`, if any."""
    return station_time(p.get("timestamp") or p.get("generatedAt"))


# -- device model references -----------------------------------------------------------

def component(c: Any, field: str = "component") -> Component:
    """2.0.1 ComponentType; its `evse` {id, connectorId} becomes evse_id / connector_id."""
    c = _obj(c)
    evse = c.get("evse")
    evse_id = connector_id = None
    if isinstance(evse, dict):
        evse_id = _int(f"{field}.evse.id", evse.get("id"))
        connector_id = _opt_int(f"{field}.evse.connectorId", evse.get("connectorId"))
    return Component(
        name=_str(c.get("name")), instance=_str(c.get("instance")), evse_id=evse_id, connector_id=connector_id or 0,
    )


def variable(v: Any) -> Variable:
    v = _obj(v)
    return Variable(name=_str(v.get("name")), instance=_str(v.get("instance")))


def _attribute(a: Any) -> VariableAttribute:
    a = _obj(a)
    value = a.get("value")
    return VariableAttribute(
        type=_str(a.get("type")) or "Actual",
        value=value if isinstance(value, str) else None,
        mutability=_str(a.get("mutability")) or "ReadWrite",
        persistent=_bool(a.get("persistent")),
        constant=_bool(a.get("constant")),
    )


def _characteristics(c: Any) -> VariableCharacteristics | None:
    if not isinstance(c, dict):
        return None
    return VariableCharacteristics(
        data_type=_str(c.get("dataType")),
        unit=_str(c.get("unit")),
        min_limit=_opt_float("variableCharacteristics.minLimit", c.get("minLimit")),
        max_limit=_opt_float("variableCharacteristics.maxLimit", c.get("maxLimit")),
        values_list=_str(c.get("valuesList")),
        supports_monitoring=_bool(c.get("supportsMonitoring")),
    )


# -- 1.6 + 2.0.1 -----------------------------------------------------------------------

def datatransfer_status(vendors: frozenset[str]) -> Callable[[dict[str, Any]], str]:
    """The answer to a station's DataTransfer (ADR 016 §1): "Accepted" only for a vendor id
    in `vendors` (CSMS_DATATRANSFER_VENDORS, casefolded: vendorId is case-insensitive),
    whose messages the stations processor republishes for the team that implements them;
    "UnknownVendorId" for any other, the spec's answer for a vendor extension we lack."""

    def status(p: dict[str, Any]) -> str:
        vendor = p.get("vendorId")
        return "Accepted" if isinstance(vendor, str) and vendor.casefold() in vendors else "UnknownVendorId"

    return status


def data_transfer(p: dict[str, Any], status: str) -> DataTransfer:
    """`data` is kept as JSON text of the value as sent (1.6: a JSON string literal; 2.0.1:
    any JSON value), "" when absent, so a consumer reads it back with one json.loads."""
    data = p.get("data")
    return DataTransfer(
        vendor_id=_str(p.get("vendorId")),
        message_id=_str(p.get("messageId")),
        data_json="" if data is None else orjson.dumps(data, default=json_default).decode(),
        status=status,
    )


def firmware_status(p: dict[str, Any]) -> FirmwareStatus:
    """1.6 FirmwareStatusNotification (no requestId), 1.6 SignedFirmwareStatusNotification
    and 2.0.1 FirmwareStatusNotification."""
    return FirmwareStatus(status=_str(p.get("status")), request_id=_opt_int("requestId", p.get("requestId")))


def log_status(p: dict[str, Any], *, diagnostics: bool = False) -> LogStatus:
    """1.6 DiagnosticsStatusNotification (`diagnostics`, no requestId), 1.6 and 2.0.1
    LogStatusNotification."""
    return LogStatus(
        status=_str(p.get("status")), request_id=_opt_int("requestId", p.get("requestId")), diagnostics=diagnostics,
    )


def security_event(p: dict[str, Any]) -> SecurityEvent:
    return SecurityEvent(type=_str(p.get("type")), timestamp=_instant(p.get("timestamp")), tech_info=_str(p.get("techInfo")))


# The certificate types the CSMS CA signs: the station's own (1.6 sends no type). A V2G
# certificate belongs to the ISO 15118 PKI, not to the CSMS's CA.
SIGNABLE_TYPES = frozenset({"ChargingStationCertificate"})


def sign_certificate_decision(p: dict[str, Any], station_id: str, *, ca_configured: bool,
                              min_rsa_bits: int) -> tuple[str, str | None, str | None]:
    """SignCertificate's answer: ("Accepted", None, None), or ("Rejected", reasonCode,
    additionalInfo) with reasonCode `UnsupportedType`, `NoCA` or `InvalidCSR` (the
    `pki.check_csr` reason as the info), checked in that order."""
    kind = p.get("certificateType")
    if kind is not None and kind not in SIGNABLE_TYPES:
        return "Rejected", "UnsupportedType", f"the CSMS CA does not sign {kind}"
    if not ca_configured:
        return "Rejected", "NoCA", "no certificate authority is configured"
    problem = pki.check_csr(_str(p.get("csr")), station_id, min_rsa_bits=min_rsa_bits)
    if problem is not None:
        return "Rejected", "InvalidCSR", problem
    return "Accepted", None, None


def certificate_signing_request(p: dict[str, Any], status: str) -> CertificateSigningRequest:
    """SignCertificate; 1.6 (security whitepaper) has no certificateType."""
    return CertificateSigningRequest(csr=_str(p.get("csr")), certificate_type=_str(p.get("certificateType")), status=status)


# -- 2.0.1 -----------------------------------------------------------------------------

def report_part(p: dict[str, Any]) -> ReportPart:
    """NotifyReport: one part of the report for `requestId`."""
    return ReportPart(
        request_id=_int("requestId", p.get("requestId")),
        seq_no=_int("seqNo", p.get("seqNo")),
        tbc=_bool(p.get("tbc")),
        generated_at=_instant(p.get("generatedAt")),
        data=tuple(
            ReportDatum(
                component=component(d.get("component")),
                variable=variable(d.get("variable")),
                attributes=tuple(_attribute(a) for a in _list(d.get("variableAttribute"))),
                characteristics=_characteristics(d.get("variableCharacteristics")),
            )
            for d in map(_obj, _list(p.get("reportData")))
        ),
    )


def event_report(p: dict[str, Any]) -> EventReport:
    """NotifyEvent."""
    return EventReport(
        seq_no=_int("seqNo", p.get("seqNo")),
        tbc=_bool(p.get("tbc")),
        generated_at=_instant(p.get("generatedAt")),
        events=tuple(
            EventDatum(
                event_id=_int("eventData.eventId", e.get("eventId")),
                trigger=_str(e.get("trigger")),
                component=component(e.get("component")),
                variable=variable(e.get("variable")),
                timestamp=_instant(e.get("timestamp")),
                cause=_opt_int("eventData.cause", e.get("cause")),
                actual_value=_str(e.get("actualValue")),
                tech_code=_str(e.get("techCode")),
                tech_info=_str(e.get("techInfo")),
                cleared=_bool(e.get("cleared")),
                transaction_id=_str(e.get("transactionId")),
                variable_monitoring_id=_opt_int("eventData.variableMonitoringId", e.get("variableMonitoringId")),
                event_notification_type=_str(e.get("eventNotificationType")),
            )
            for e in map(_obj, _list(p.get("eventData")))
        ),
    )


def monitoring_report_part(p: dict[str, Any]) -> MonitoringReportPart:
    """NotifyMonitoringReport."""
    return MonitoringReportPart(
        request_id=_int("requestId", p.get("requestId")),
        seq_no=_int("seqNo", p.get("seqNo")),
        tbc=_bool(p.get("tbc")),
        generated_at=_instant(p.get("generatedAt")),
        data=tuple(
            MonitoringDatum(
                component=component(m.get("component")),
                variable=variable(m.get("variable")),
                monitors=tuple(
                    VariableMonitor(
                        id=_int("monitor.variableMonitoring.id", v.get("id")),
                        value=_float("monitor.variableMonitoring.value", v.get("value")),
                        type=_str(v.get("type")),
                        severity=_int("monitor.variableMonitoring.severity", v.get("severity")),
                        transaction=_bool(v.get("transaction")),
                    )
                    for v in map(_obj, _list(m.get("variableMonitoring")))
                ),
            )
            for m in map(_obj, _list(p.get("monitor")))
        ),
    )


def reservation_status(p: dict[str, Any]) -> ReservationStatus:
    """ReservationStatusUpdate."""
    return ReservationStatus(
        reservation_id=_int("reservationId", p.get("reservationId")), status=_str(p.get("reservationUpdateStatus")),
    )


def _sales_tariff(t: Any, field: str) -> SalesTariff | None:
    if not isinstance(t, dict):
        return None
    entries = []
    for e in map(_obj, _list(t.get("salesTariffEntry"))):
        interval = _obj(e.get("relativeTimeInterval"))
        entries.append(SalesTariffEntry(
            start=_int(f"{field}.relativeTimeInterval.start", interval.get("start")),
            duration=_int(f"{field}.relativeTimeInterval.duration", interval.get("duration")),
            e_price_level=_int(f"{field}.ePriceLevel", e.get("ePriceLevel")),
            consumption_costs=tuple(
                ConsumptionCost(
                    start_value=_float(f"{field}.consumptionCost.startValue", c.get("startValue")),
                    costs=tuple(
                        Cost(
                            cost_kind=_str(k.get("costKind")),
                            amount=_int(f"{field}.consumptionCost.cost.amount", k.get("amount")),
                            amount_multiplier=_int(f"{field}.consumptionCost.cost.amountMultiplier", k.get("amountMultiplier")),
                        )
                        for k in map(_obj, _list(c.get("cost")))
                    ),
                )
                for c in map(_obj, _list(e.get("consumptionCost")))
            ),
        ))
    return SalesTariff(
        id=_int(f"{field}.id", t.get("id")),
        description=_str(t.get("salesTariffDescription")),
        num_e_price_levels=_int(f"{field}.numEPriceLevels", t.get("numEPriceLevels")),
        entries=tuple(entries),
    )


def schedule(s: Any, field: str = "chargingSchedule") -> ChargingSchedule:
    """2.0.1 ChargingScheduleType."""
    s = _obj(s)
    return ChargingSchedule(
        charging_rate_unit=_str(s.get("chargingRateUnit")),
        id=_int(f"{field}.id", s.get("id")),
        start_schedule=_instant(s.get("startSchedule")),
        duration=_int(f"{field}.duration", s.get("duration")),
        periods=tuple(
            SchedulePeriod(
                start_period=_int(f"{field}.chargingSchedulePeriod.startPeriod", period.get("startPeriod")),
                limit=_float(f"{field}.chargingSchedulePeriod.limit", period.get("limit")),
                number_phases=_int(f"{field}.chargingSchedulePeriod.numberPhases", period.get("numberPhases")),
                phase_to_use=_int(f"{field}.chargingSchedulePeriod.phaseToUse", period.get("phaseToUse")),
            )
            for period in map(_obj, _list(s.get("chargingSchedulePeriod")))
        ),
        min_charging_rate=_opt_float(f"{field}.minChargingRate", s.get("minChargingRate")),
        sales_tariff=_sales_tariff(s.get("salesTariff"), f"{field}.salesTariff"),
    )


def charging_limit_set(p: dict[str, Any]) -> ChargingLimitSet:
    """NotifyChargingLimit."""
    limit = _obj(p.get("chargingLimit"))
    critical = limit.get("isGridCritical")
    return ChargingLimitSet(
        source=_str(limit.get("chargingLimitSource")),
        is_grid_critical=critical if isinstance(critical, bool) else None,
        evse_id=_int("evseId", p.get("evseId")),
        schedules=tuple(schedule(s) for s in _list(p.get("chargingSchedule"))),
    )


def charging_limit_cleared(p: dict[str, Any]) -> ChargingLimitCleared:
    """ClearedChargingLimit."""
    return ChargingLimitCleared(source=_str(p.get("chargingLimitSource")), evse_id=_int("evseId", p.get("evseId")))


def charging_profiles_report(p: dict[str, Any]) -> ChargingProfilesReport:
    """ReportChargingProfiles."""
    return ChargingProfilesReport(
        request_id=_int("requestId", p.get("requestId")),
        source=_str(p.get("chargingLimitSource")),
        evse_id=_int("evseId", p.get("evseId")),
        tbc=_bool(p.get("tbc")),
        profiles=tuple(
            ChargingProfile(
                id=_int("chargingProfile.id", c.get("id")),
                stack_level=_int("chargingProfile.stackLevel", c.get("stackLevel")),
                purpose=_str(c.get("chargingProfilePurpose")),
                kind=_str(c.get("chargingProfileKind")),
                recurrency_kind=_str(c.get("recurrencyKind")),
                valid_from=_instant(c.get("validFrom")),
                valid_to=_instant(c.get("validTo")),
                transaction_id=_str(c.get("transactionId")),
                schedules=tuple(schedule(s, "chargingProfile.chargingSchedule") for s in _list(c.get("chargingSchedule"))),
            )
            for c in map(_obj, _list(p.get("chargingProfile")))
        ),
    )


def ev_charging_needs(p: dict[str, Any], status: str) -> EvChargingNeeds:
    """NotifyEVChargingNeeds (ISO 15118)."""
    needs = _obj(p.get("chargingNeeds"))
    ac = needs.get("acChargingParameters")
    dc = needs.get("dcChargingParameters")
    f = "chargingNeeds.acChargingParameters."
    g = "chargingNeeds.dcChargingParameters."
    return EvChargingNeeds(
        evse_id=_int("evseId", p.get("evseId")),
        requested_energy_transfer=_str(needs.get("requestedEnergyTransfer")),
        max_schedule_tuples=_int("maxScheduleTuples", p.get("maxScheduleTuples")),
        departure_time=_instant(needs.get("departureTime")),
        ac=None if not isinstance(ac, dict) else AcChargingParameters(
            energy_amount=_int(f + "energyAmount", ac.get("energyAmount")),
            ev_min_current=_int(f + "evMinCurrent", ac.get("evMinCurrent")),
            ev_max_current=_int(f + "evMaxCurrent", ac.get("evMaxCurrent")),
            ev_max_voltage=_int(f + "evMaxVoltage", ac.get("evMaxVoltage")),
        ),
        dc=None if not isinstance(dc, dict) else DcChargingParameters(
            ev_max_current=_int(g + "evMaxCurrent", dc.get("evMaxCurrent")),
            ev_max_voltage=_int(g + "evMaxVoltage", dc.get("evMaxVoltage")),
            energy_amount=_int(g + "energyAmount", dc.get("energyAmount")),
            ev_max_power=_int(g + "evMaxPower", dc.get("evMaxPower")),
            state_of_charge=_int(g + "stateOfCharge", dc.get("stateOfCharge")),
            ev_energy_capacity=_int(g + "evEnergyCapacity", dc.get("evEnergyCapacity")),
            full_soc=_int(g + "fullSoC", dc.get("fullSoC")),
            bulk_soc=_int(g + "bulkSoC", dc.get("bulkSoC")),
        ),
        status=status,
    )


def ev_charging_schedule(p: dict[str, Any], status: str) -> EvChargingSchedule:
    """NotifyEVChargingSchedule: the schedule the EV chose."""
    s = p.get("chargingSchedule")
    return EvChargingSchedule(
        evse_id=_int("evseId", p.get("evseId")),
        time_base=_instant(p.get("timeBase")),
        schedule=schedule(s) if isinstance(s, dict) else None,
        status=status,
    )


def display_messages_report(p: dict[str, Any]) -> DisplayMessagesReport:
    """NotifyDisplayMessages."""
    messages = []
    for m in map(_obj, _list(p.get("messageInfo"))):
        content = _obj(m.get("message"))
        display = m.get("display")
        messages.append(DisplayMessage(
            id=_int("messageInfo.id", m.get("id")),
            priority=_str(m.get("priority")),
            format=_str(content.get("format")),
            content=_str(content.get("content")),
            state=_str(m.get("state")),
            start=_instant(m.get("startDateTime")),
            end=_instant(m.get("endDateTime")),
            transaction_id=_str(m.get("transactionId")),
            language=_str(content.get("language")),
            display=component(display, "messageInfo.display") if isinstance(display, dict) else None,
        ))
    return DisplayMessagesReport(
        request_id=_int("requestId", p.get("requestId")), tbc=_bool(p.get("tbc")), messages=tuple(messages),
    )


def customer_information_part(p: dict[str, Any]) -> CustomerInformationPart:
    """NotifyCustomerInformation."""
    return CustomerInformationPart(
        request_id=_int("requestId", p.get("requestId")),
        seq_no=_int("seqNo", p.get("seqNo")),
        data=_str(p.get("data")),
        tbc=_bool(p.get("tbc")),
        generated_at=_instant(p.get("generatedAt")),
    )


def publish_firmware_status(p: dict[str, Any]) -> PublishFirmwareStatus:
    """PublishFirmwareStatusNotification."""
    return PublishFirmwareStatus(
        status=_str(p.get("status")),
        locations=tuple(loc for loc in _list(p.get("location")) if isinstance(loc, str)),
        request_id=_opt_int("requestId", p.get("requestId")),
    )


def certificate_status_request(p: dict[str, Any], status: str) -> CertificateStatusRequest:
    """GetCertificateStatus: the OCSP request data the station relays."""
    ocsp = _obj(p.get("ocspRequestData"))
    return CertificateStatusRequest(
        hash_algorithm=_str(ocsp.get("hashAlgorithm")),
        issuer_name_hash=_str(ocsp.get("issuerNameHash")),
        issuer_key_hash=_str(ocsp.get("issuerKeyHash")),
        serial_number=_str(ocsp.get("serialNumber")),
        responder_url=_str(ocsp.get("responderURL")),
        status=status,
    )


def ev_certificate_request(p: dict[str, Any], status: str) -> EvCertificateRequest:
    """Get15118EVCertificate."""
    return EvCertificateRequest(
        iso15118_schema_version=_str(p.get("iso15118SchemaVersion")),
        action=_str(p.get("action")),
        exi_request=_str(p.get("exiRequest")),
        status=status,
    )

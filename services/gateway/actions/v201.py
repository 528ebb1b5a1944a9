"""OCPP 2.0.1 station -> CSMS handlers; OCPP 2.1 reuses them and adds its new actions.

Each handler gets a schema-validated payload, publishes exactly one normalized event
(returning only once it is durable) and returns the CALLRESULT payload. TransactionEvent
and MeterValues arrive leniently validated (validation.check); integers go through
`fit_int`/`clamp_int` so that none can make the event fail to encode. Handlers that need
more than their call are built by a factory taking the ports they use (see v16).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import services.gateway.actions.ev_needs as ev_needs
import services.gateway.actions.operations as ops
import services.gateway.actions.security as security
from services.common.events import (
    Authorization,
    ConnectorStatus,
    Heartbeat,
    MeterValues,
    StationBooted,
    TransactionEnded,
    TransactionStarted,
    TransactionUpdated,
)
from services.common.timeutil import Clock
from services.gateway.actions.common import (
    BootDecider,
    Factory,
    Handler,
    RunningCost,
    TokenStatus,
    answered,
    clamp_int,
    fit_int,
    fixed,
    notification,
    now_ocpp,
    recorded,
    strict_int,
    token_status,
    track_fault,
)
from services.gateway.context import CallContext
from services.gateway.meter import first_register_wh, last_register_wh, samples_201, station_time
from services.gateway.running_cost import RunningCosts

__all__ = ["HANDLERS", "HANDLERS_21_ONLY", "transaction_event_response"]


def boot_notification(boot: BootDecider, clock: Clock) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        status, interval = await boot.decide(ctx)
        await ctx.publish(_booted(p, status, interval), None)
        return {"currentTime": now_ocpp(clock), "interval": interval, "status": status}

    return handle


def _booted(p: dict[str, Any], status: str, interval: int) -> StationBooted:
    cs = p["chargingStation"]
    modem = cs.get("modem") or {}
    return StationBooted(
        vendor=cs["vendorName"],
        model=cs["model"],
        serial_number=cs.get("serialNumber", ""),
        firmware_version=cs.get("firmwareVersion", ""),
        reason=p["reason"],
        registration_status=status,
        interval=interval,
        iccid=modem.get("iccid", ""),
        imsi=modem.get("imsi", ""),
    )


def heartbeat(clock: Clock) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        await ctx.publish(Heartbeat(), None)
        return {"currentTime": now_ocpp(clock)}

    return handle


async def status_notification(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    body = ConnectorStatus(
        evse_id=strict_int("evseId", p["evseId"], bits=32),
        connector_id=strict_int("connectorId", p["connectorId"], bits=32),
        status=p["connectorStatus"],
    )
    await ctx.publish(body, station_time(p["timestamp"]))
    track_fault(ctx, body.evse_id, body.connector_id, body.status)
    return {}


async def _id_token_status(tokens: TokenStatus, ctx: CallContext, id_token: dict[str, Any], *, fail_open: bool) -> str:
    # NoAuthorization is the station saying no identification was needed (free vend);
    # its idToken is empty, and looking "" up would answer Invalid and stop the session.
    if id_token.get("type") == "NoAuthorization":
        return "Accepted"
    return await token_status(tokens, ctx, id_token["idToken"], fail_open=fail_open)


def authorize(tokens: TokenStatus) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        id_token = p["idToken"]
        status = await _id_token_status(tokens, ctx, id_token, fail_open=False)
        body = Authorization(id_token=id_token["idToken"], status=status, token_type=id_token.get("type", ""))
        await ctx.publish(body, None)
        return {"idTokenInfo": {"status": status}}

    return handle


def transaction_event_response(id_token_status: str | None, total_cost: Decimal | None = None) -> dict[str, Any]:
    """The TransactionEventResponse, built in one place (idTokenInfo, running totalCost)."""
    response: dict[str, Any] = {}
    if total_cost is not None:
        response["totalCost"] = float(total_cost)  # a JSON number; already rounded to the minor unit
    if id_token_status is not None:
        response["idTokenInfo"] = {"status": id_token_status}
    return response


def transaction_event(tokens: TokenStatus, running_cost: RunningCost | None) -> Handler:
    """`running_cost`: None when the gateway does not estimate totalCost."""

    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        info = p["transactionInfo"]
        evse = p.get("evse") or {}
        id_token = p.get("idToken")
        status = await _id_token_status(tokens, ctx, id_token, fail_open=True) if id_token else None
        common: dict[str, Any] = {
            "transaction_id": info["transactionId"],
            "evse_id": fit_int(ctx, "evse.id", evse.get("id", 0), bits=32, default=0),
            "connector_id": fit_int(ctx, "evse.connectorId", evse.get("connectorId", 0), bits=32, default=0),
            "id_token": id_token["idToken"] if id_token else "",
            # Idempotency downstream is by (transactionId, seqNo), never by message id.
            "seq_no": clamp_int(ctx, "seqNo", p["seqNo"], bits=64),
            "trigger_reason": p["triggerReason"],
            "samples": samples_201(p.get("meterValue"), ctx.received_at, ctx.lenient),
        }
        event_type = p["eventType"]
        body: TransactionStarted | TransactionUpdated | TransactionEnded
        if event_type == "Started":
            body = TransactionStarted(
                **common,
                charging_state=info.get("chargingState", ""),
                meter_start_wh=first_register_wh(common["samples"]),
                reservation_id=fit_int(ctx, "reservationId", p.get("reservationId"), bits=64, default=0),
                id_token_status=status or "",
                remote_start_id=fit_int(ctx, "transactionInfo.remoteStartId", info.get("remoteStartId"), bits=32, default=0),
            )
        elif event_type == "Updated":
            body = TransactionUpdated(
                **common, charging_state=info.get("chargingState", ""), offline=p.get("offline", False)
            )
        else:  # "Ended" (the schema admits nothing else)
            body = TransactionEnded(
                **common,
                meter_stop_wh=last_register_wh(common["samples"]),
                stop_reason=info.get("stoppedReason") or "Local",
                offline=p.get("offline", False),
            )
        at = station_time(p["timestamp"])
        await ctx.publish(body, at)
        cost = None
        if running_cost is not None and at is not None:
            # This connection's price accumulators; after a reconnect the sessions document seeds them.
            costs = ctx.state.tx_costs
            if costs is None:
                costs = ctx.state.tx_costs = RunningCosts()
            cost = await running_cost.total_cost(
                ctx.station_id, info["transactionId"], event_type, common["samples"], at, costs,
            )
        return transaction_event_response(status, cost)

    return handle


async def meter_values(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    samples = samples_201(p.get("meterValue"), ctx.received_at, ctx.lenient)
    evse_id = fit_int(ctx, "evseId", p["evseId"], bits=32, default=0)
    await ctx.publish(MeterValues(evse_id=evse_id, samples=samples), samples[0].timestamp if samples else None)
    return {}


# Station operations (ADR 016 §1): each message is published as its typed body
# (actions/operations.py); the answers promise only what the CSMS does, and where the
# answer matters the body records it in `status`.
_RECORDED: dict[str, Factory] = {
    "ClearedChargingLimit": fixed(recorded(ops.charging_limit_cleared)),
    # Accepted only for a configured vendor (CSMS_DATATRANSFER_VENDORS), else UnknownVendorId.
    "DataTransfer": lambda ports: answered(ops.data_transfer, ops.datatransfer_status(ports.datatransfer_vendors)),
    "FirmwareStatusNotification": fixed(recorded(ops.firmware_status)),
    # The contract-certificate provider answers (CSMS_CONTRACT_CERT_PROVIDER; none: Failed).
    "Get15118EVCertificate": lambda ports: security.ev_certificate(ports.contract_certs),
    # An OCSP responder or the built-in CA's records answer (services/gateway/ocsp.py).
    "GetCertificateStatus": lambda ports: security.certificate_status(ports.certificate_status),
    "LogStatusNotification": fixed(recorded(ops.log_status)),
    "NotifyChargingLimit": fixed(recorded(ops.charging_limit_set)),
    "NotifyCustomerInformation": fixed(recorded(ops.customer_information_part)),
    "NotifyDisplayMessages": fixed(recorded(ops.display_messages_report)),
    # Accepted only when smart charging will send a schedule (the station is in a site and
    # takes profiles, ADR 018 §5), else Rejected: actions/ev_needs.py.
    "NotifyEVChargingNeeds": lambda ports: ev_needs.ev_charging_needs(ports.ev_needs),
    # The EV's chosen schedule is recorded (nothing to object to): Accepted.
    "NotifyEVChargingSchedule": fixed(answered(ops.ev_charging_schedule, "Accepted")),
    "NotifyEvent": fixed(recorded(ops.event_report)),
    "NotifyMonitoringReport": fixed(recorded(ops.monitoring_report_part)),
    "NotifyReport": fixed(recorded(ops.report_part)),
    "PublishFirmwareStatusNotification": fixed(recorded(ops.publish_firmware_status)),
    "ReportChargingProfiles": fixed(recorded(ops.charging_profiles_report)),
    "ReservationStatusUpdate": fixed(recorded(ops.reservation_status)),
    "SecurityEventNotification": fixed(recorded(ops.security_event)),
    # Accepted only with a CA and a CSR it may sign (actions/security.py); the record says which.
    "SignCertificate": lambda ports: security.sign_certificate(ports.signing),
}

HANDLERS: dict[str, Factory] = {
    "Authorize": lambda ports: authorize(ports.tokens),
    "BootNotification": lambda ports: boot_notification(ports.boot, ports.clock),
    "Heartbeat": lambda ports: heartbeat(ports.clock),
    "MeterValues": fixed(meter_values),
    "StatusNotification": fixed(status_notification),
    "TransactionEvent": lambda ports: transaction_event(ports.tokens, ports.running_cost),
    **_RECORDED,
}

# Station -> CSMS actions new in 2.1 that have a simple valid answer. Features we do not
# run (DER control, periodic event streams, dynamic schedules, VAT checks) are declined.
# (Built on top of the 2.0.1 handlers: `actions.Actions` shares those between the versions.)
HANDLERS_21_ONLY: dict[str, Factory] = {
    "BatterySwap": fixed(notification({})),
    "ClosePeriodicEventStream": fixed(notification({})),
    "NotifyDERAlarm": fixed(notification({})),
    "NotifyDERStartStop": fixed(notification({})),
    "NotifyPriorityCharging": fixed(notification({})),
    "NotifySettlement": fixed(notification({})),
    "OpenPeriodicEventStream": fixed(notification({"status": "Rejected"})),
    "PullDynamicScheduleUpdate": fixed(notification({"status": "Rejected"})),
    "ReportDERControl": fixed(notification({})),
    "VatNumberValidation": fixed(notification(lambda p: {"vatNumber": p["vatNumber"], "status": "Rejected"})),
}

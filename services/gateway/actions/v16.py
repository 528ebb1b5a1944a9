"""OCPP 1.6J station -> CSMS handlers (core profile + the security whitepaper extension).

Each handler gets a schema-validated payload, publishes exactly one normalized event
(returning only once it is durable) and returns the CALLRESULT payload. Handlers that
need more than their call are built by a factory taking the ports they use; `HANDLERS`
maps each action to its factory (given `ActionPorts`, it picks the handler's own). Transaction
messages (StartTransaction, StopTransaction, MeterValues) arrive leniently validated
(validation.check): integers may be beyond the event's int32/int64 fields, so they go
through `fit_int` (absent or 0, counted) rather than failing to encode.
"""

from __future__ import annotations

from typing import Any

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
)
from services.common.store.port import TransactionIdAllocator
from services.common.timeutil import Clock
from services.gateway.actions.common import (
    BootDecider,
    Factory,
    Handler,
    TokenStatus,
    answered,
    as_int,
    fit_int,
    fixed,
    now_ocpp,
    recorded,
    strict_int,
    token_status,
    track_fault,
)
from services.gateway.meter import samples_16, station_time
from services.gateway.context import CallContext

__all__ = ["HANDLERS", "business_key"]


def boot_notification(boot: BootDecider, clock: Clock) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        status, interval = await boot.decide(ctx)
        await ctx.publish(_booted(p, status, interval), None)
        return {"status": status, "currentTime": now_ocpp(clock), "interval": interval}

    return handle


def _booted(p: dict[str, Any], status: str, interval: int) -> StationBooted:
    return StationBooted(
        vendor=p["chargePointVendor"],
        model=p["chargePointModel"],
        # chargeBoxSerialNumber is deprecated in favour of chargePointSerialNumber.
        serial_number=p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber") or "",
        firmware_version=p.get("firmwareVersion", ""),
        registration_status=status,
        interval=interval,
        iccid=p.get("iccid", ""),
        imsi=p.get("imsi", ""),
        meter_type=p.get("meterType", ""),
        meter_serial_number=p.get("meterSerialNumber", ""),
    )


def heartbeat(clock: Clock) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        await ctx.publish(Heartbeat(), None)
        return {"currentTime": now_ocpp(clock)}

    return handle


async def status_notification(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    # 1.6 has no EVSE level: connector N is EVSE N (connector 0 = the whole station).
    connector = strict_int("connectorId", p["connectorId"], bits=32)
    body = ConnectorStatus(
        evse_id=connector,
        connector_id=connector,
        status=p["status"],
        error_code=p.get("errorCode", ""),
        info=p.get("info", ""),
        vendor_error_code=p.get("vendorErrorCode", ""),
    )
    await ctx.publish(body, station_time(p.get("timestamp")))
    track_fault(ctx, connector, connector, body.status)
    return {}


def authorize(tokens: TokenStatus) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        status = await token_status(tokens, ctx, p["idTag"], fail_open=False)
        await ctx.publish(Authorization(id_token=p["idTag"], status=status), None)
        return {"idTagInfo": {"status": status}}

    return handle


def business_key(station_id: str, p: dict[str, Any]) -> str:
    """The replay identity of a StartTransaction (RELIABILITY rows 35, 41): a station that
    retries after a lost answer sends the same fields and must get the same id back,
    while two connectors starting in the same millisecond differ by connectorId."""
    return f"{station_id}|{p['connectorId']}|{p['idTag']}|{p['meterStart']}|{p['timestamp']}"


def start_transaction(tx_ids: TransactionIdAllocator, tokens: TokenStatus) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        # Old (offline-queued) timestamps are accepted like any other (row 36).
        transaction_id = await tx_ids.allocate_transaction_id(business_key(ctx.station_id, p))
        status = await token_status(tokens, ctx, p["idTag"], fail_open=True)
        connector = fit_int(ctx, "connectorId", p["connectorId"], bits=32, default=0)
        body = TransactionStarted(
            transaction_id=str(transaction_id),
            evse_id=connector,
            connector_id=connector,
            id_token=p["idTag"],
            meter_start_wh=fit_int(ctx, "meterStart", p["meterStart"], bits=64, default=None),
            reservation_id=fit_int(ctx, "reservationId", p.get("reservationId"), bits=64, default=0),
            id_token_status=status,
        )
        await ctx.publish(body, station_time(p["timestamp"]))
        return {"transactionId": transaction_id, "idTagInfo": {"status": status}}

    return handle


def stop_transaction(tokens: TokenStatus) -> Handler:
    async def handle(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
        # Always acknowledged, also for an unknown id or -1: the sessions processor keeps it
        # as an orphan; an error would make the station retry it forever (row 37).
        id_tag = p.get("idTag")
        body = TransactionEnded(
            transaction_id=str(as_int(p["transactionId"])),
            meter_stop_wh=fit_int(ctx, "meterStop", p["meterStop"], bits=64, default=None),
            stop_reason=p.get("reason") or "Local",
            id_token=id_tag or "",
            samples=samples_16(p.get("transactionData"), ctx.received_at, ctx.lenient, "transactionData"),
        )
        await ctx.publish(body, station_time(p["timestamp"]))
        if not id_tag:
            return {}
        return {"idTagInfo": {"status": await token_status(tokens, ctx, id_tag, fail_open=True)}}

    return handle


async def meter_values(ctx: CallContext, p: dict[str, Any]) -> dict[str, Any]:
    samples = samples_16(p.get("meterValue"), ctx.received_at, ctx.lenient)
    tx = as_int(p.get("transactionId"))
    connector = fit_int(ctx, "connectorId", p["connectorId"], bits=32, default=0)
    body = MeterValues(
        transaction_id="" if tx is None else str(tx),
        evse_id=connector,
        connector_id=connector,
        samples=samples,
    )
    # The message has no timestamp of its own; its first sample's time is the best guess.
    await ctx.publish(body, samples[0].timestamp if samples else None)
    return {}


# Station operations (ADR 016 §1): each message is published as its typed body
# (actions/operations.py); the answers promise only what the CSMS does.
_RECORDED: dict[str, Factory] = {
    # Accepted only for a configured vendor (CSMS_DATATRANSFER_VENDORS), else UnknownVendorId.
    "DataTransfer": lambda ports: answered(ops.data_transfer, ops.datatransfer_status(ports.datatransfer_vendors)),
    "DiagnosticsStatusNotification": fixed(recorded(lambda p: ops.log_status(p, diagnostics=True))),
    "FirmwareStatusNotification": fixed(recorded(ops.firmware_status)),
    "SecurityEventNotification": fixed(recorded(ops.security_event)),
    "LogStatusNotification": fixed(recorded(ops.log_status)),
    "SignedFirmwareStatusNotification": fixed(recorded(ops.firmware_status)),
    # Accepted only with a CA and a CSR it may sign (actions/security.py); the record says which.
    "SignCertificate": lambda ports: security.sign_certificate(ports.signing),
}

HANDLERS: dict[str, Factory] = {
    "Authorize": lambda ports: authorize(ports.tokens),
    "BootNotification": lambda ports: boot_notification(ports.boot, ports.clock),
    "Heartbeat": lambda ports: heartbeat(ports.clock),
    "MeterValues": fixed(meter_values),
    "StartTransaction": lambda ports: start_transaction(ports.tx_ids, ports.tokens),
    "StatusNotification": fixed(status_notification),
    "StopTransaction": lambda ports: stop_transaction(ports.tokens),
    **_RECORDED,
}

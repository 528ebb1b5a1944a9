"""Helpers shared by the 1.6 and 2.x handlers, and the ports handlers are built with.

A handler is built once per gateway by a factory that takes the ports it uses (a
`Clock`, the `TokenStatus` lookup, the `TransactionIdAllocator`, the `BootDecider`, the
running-cost port, the DataTransfer vendors); the certificate ports (CSR
signing rules, the OCSP answerer, the contract-certificate provider); `ActionPorts` bundles them for the tables
in `actions/__init__.py`, which pick each handler's own. `recorded` and `answered` build
the handlers of station operations from their pure mappings (`actions/operations.py`);
`track_fault` keeps the connection's faulted connectors for the gateway's gauge.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson
from ocpp.exceptions import PropertyConstraintViolationError

from services.common.errors import StoreError
from services.common.events import Body, MeterSample, Notification
from services.common.ocpp.wire import json_default
from services.common.store.port import Station, TransactionIdAllocator
from services.common.timeutil import Clock, to_ocpp
from services.gateway import metrics
from services.gateway.context import CallContext
from services.gateway.contract_certs import ContractCertificateProvider
from services.gateway.meter import station_time
from services.gateway.ocsp import CertificateStatus
from services.gateway.running_cost import RunningCosts

__all__ = [
    "ActionPorts",
    "BootDecider",
    "BootGate",
    "CsrSigning",
    "EvNeedsStatus",
    "Factory",
    "Handler",
    "PENDING_INTERVAL_S",
    "RunningCost",
    "StationLookup",
    "TokenStatus",
    "answered",
    "as_int",
    "clamp_int",
    "fit_int",
    "fixed",
    "notification",
    "now_ocpp",
    "payload_json",
    "recorded",
    "strict_int",
    "token_status",
    "track_fault",
]

log = logging.getLogger("csms.gateway.actions")

Handler = Callable[[CallContext, dict[str, Any]], Awaitable[dict[str, Any]]]
# cached token lookup: "Accepted" / "Blocked" / "Expired" / "Invalid" (unknown -> "Invalid")
TokenStatus = Callable[[str], Awaitable[str]]


class StationLookup(Protocol):
    async def get_station(self, station_id: str) -> Station | None: ...


class EvNeedsStatus(Protocol):
    """NotifyEVChargingNeeds' answer for a station (actions/ev_needs.py)."""

    async def status(self, station_id: str) -> str: ...


class BootGate(Protocol):
    """Admission control for boots (services/gateway/admission.py `BootAdmission`)."""

    def admit_boot(self) -> bool: ...

    def pending_interval(self) -> int | None: ...


class RunningCost(Protocol):
    """2.0.1 TransactionEventResponse.totalCost (services/gateway/running_cost.py)."""

    async def total_cost(
        self, station_id: str, transaction_id: str, event_type: str, samples: tuple[MeterSample, ...],
        station_time: datetime, costs: RunningCosts,
    ) -> Decimal | None: ...


# Pending boots come back after a random 10-60 s so a reconnect storm spreads out
# instead of returning as one wave.
_ENABLED_FRESH_S = 60.0
PENDING_INTERVAL_S = (10, 60)

_STATUSES_16 = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})
_STATUSES_2X = _STATUSES_16 | {
    "NoCredit", "NotAllowedTypeEVSE", "NotAtThisLocation", "NotAtThisTime", "Unknown",
}
# Failures of the token/station lookup that must not turn into a CALLERROR on a
# transaction message (the store being down is our problem, not the station's).
_LOOKUP_ERRORS = (StoreError, TimeoutError, OSError)


class BootDecider:
    """(registrationStatus, interval) for a BootNotification; records it on the connection.

    The station is already authenticated. A station an operator disabled is Rejected;
    otherwise admission control decides between Accepted and Pending (only while the
    gateway is overloaded, with an interval from its backlog; or past CSMS_BOOT_RATE if set)."""

    __slots__ = ("_stations", "_gate", "_heartbeat_interval", "_jitter", "_monotonic")

    def __init__(self, stations: StationLookup, gate: BootGate, heartbeat_interval: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._stations = stations
        self._gate = gate
        self._heartbeat_interval = heartbeat_interval
        self._jitter = random.Random()
        self._monotonic = monotonic

    async def decide(self, ctx: CallContext) -> tuple[str, int]:
        enabled = True
        checked = ctx.state.enabled_checked_at
        # The handshake found the station enabled moments ago: skip one store round trip per
        # boot (it matters in a reconnect storm). A boot on a long-lived socket re-reads.
        if not (checked is not None and self._monotonic() - checked < _ENABLED_FRESH_S):
            try:
                station = await self._stations.get_station(ctx.station_id)
                enabled = station is None or station.enabled
            except _LOOKUP_ERRORS as exc:
                # The store answered moments ago for authentication; do not bounce the whole
                # fleet back to boot retries because it blipped now (RELIABILITY row 44).
                log.warning("station=%s boot: station lookup failed (%s); treating as enabled", ctx.station_id, exc)
        if not enabled:
            status, interval = "Rejected", self._heartbeat_interval
        elif not self._gate.admit_boot():
            # overload: the interval admission computed from its backlog; a fixed cap: jittered
            status, interval = "Pending", self._gate.pending_interval() or self._jitter.randint(*PENDING_INTERVAL_S)
        else:
            status, interval = "Accepted", self._heartbeat_interval
        ctx.state.boot_status = status
        return status, interval


@dataclass(frozen=True, slots=True)
class CsrSigning:
    """SignCertificate's rules (actions/security.py): whether a CA will sign (asked per
    call, so a CA created after the gateway started counts: `ca.pem` in CSMS_CA_DIR, or
    CSMS_CA_URL) and the smallest RSA key a CSR may carry (CSMS_CSR_MIN_RSA_BITS)."""

    ca_configured: Callable[[], bool]
    min_rsa_bits: int = 2048


@dataclass(frozen=True, slots=True)
class ActionPorts:
    """Everything the station -> CSMS handlers use beyond their call, built once (wiring)."""

    clock: Clock
    boot: BootDecider
    tokens: TokenStatus
    tx_ids: TransactionIdAllocator
    running_cost: RunningCost | None = None  # None: no 2.0.1 totalCost
    # DataTransfer vendor ids answered Accepted (CSMS_DATATRANSFER_VENDORS), casefolded:
    # vendorId is a CiString (case-insensitive). Every other vendor: UnknownVendorId.
    datatransfer_vendors: frozenset[str] = frozenset()
    # Certificates (ADR 017 §3). None: no CA (SignCertificate Rejected, NoCA), no OCSP
    # (GetCertificateStatus Failed), no contract certificate provider (Get15118EVCertificate Failed).
    signing: CsrSigning | None = None
    certificate_status: CertificateStatus | None = None
    contract_certs: ContractCertificateProvider | None = None
    # NotifyEVChargingNeeds' answer (actions/ev_needs.py `EvNeedsDecider`); None: Rejected.
    ev_needs: EvNeedsStatus | None = None


# A handler's factory: picks the ports the handler uses from `ActionPorts`.
Factory = Callable[[ActionPorts], Handler]


def fixed(handler: Handler) -> Factory:
    """The factory of a handler that needs nothing beyond its call."""
    return lambda ports: handler


# Protobuf integer widths of the event fields the handlers fill (events.proto).
_INT_BOUNDS = {32: (-(2**31), 2**31 - 1), 64: (-(2**63), 2**63 - 1)}


def as_int(value: Any) -> int | None:
    """A JSON integer as int, else None. Integral floats count: JSON has one number type,
    orjson reads integers beyond 64 bits as floats, and draft-6 schemas accept 1.0."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _in(n: int | None, bits: int) -> bool:
    lo, hi = _INT_BOUNDS[bits]
    return n is not None and lo <= n <= hi


def fit_int(ctx: CallContext, field: str, value: Any, *, bits: int, default: Any) -> Any:
    """`value` as an int that fits the event's int32/int64 field; otherwise `default`
    (0, or None for a meter reading: "absent"), counted as a lenient field. Encoding an
    event must never fail on a station's integer."""
    n = as_int(value)
    if _in(n, bits):
        return n
    if value is not None:
        ctx.lenient(field, f"{str(value)[:64]} does not fit int{bits}; forwarded as {default!r}")
    return default


def clamp_int(ctx: CallContext, field: str, value: Any, *, bits: int, default: int = 0) -> int:
    """`value` clamped into int32/int64 (an ordering counter keeps its direction); counted."""
    n = as_int(value)
    if n is None:
        return default
    lo, hi = _INT_BOUNDS[bits]
    if lo <= n <= hi:
        return n
    clamped = hi if n > hi else lo
    ctx.lenient(field, f"{str(value)[:64]} does not fit int{bits}; clamped to {clamped}")
    return clamped


def strict_int(field: str, value: Any, *, bits: int) -> int:
    """For strict actions: an integer the event cannot carry is the station's error."""
    n = as_int(value)
    if not _in(n, bits):
        raise PropertyConstraintViolationError(f"{field} must fit a {bits}-bit integer")
    return n  # type: ignore[return-value]


def now_ocpp(clock: Clock) -> str:
    """currentTime as chargers accept it: UTC, `Z`, milliseconds."""
    return to_ocpp(clock())


async def token_status(tokens: TokenStatus, ctx: CallContext, id_token: str, *, fail_open: bool) -> str:
    """The token's status, restricted to values the answer's schema allows.

    `fail_open=True` is for transaction messages: the station already started (or is
    ending) charging, so when the token store is unreachable we answer Accepted rather
    than Invalid (which would make the station cut a running session) or a CALLERROR
    (which loses billing data). Authorize passes False and lets the error surface."""
    allowed = _STATUSES_16 if ctx.ocpp_version.is_16 else _STATUSES_2X
    try:
        status = await tokens(id_token)
    except _LOOKUP_ERRORS as exc:
        if not fail_open:
            raise
        log.warning("station=%s token lookup failed (%s); answering Accepted", ctx.station_id, exc)
        return "Accepted"
    return status if status in allowed else "Invalid"


def payload_json(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload, default=json_default).decode()


def notification(response: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
    """A handler for messages we record but do not act on: publish the payload as a
    `Notification` (station time from `timestamp`/`generatedAt` when present) and
    answer the fixed, schema-valid `response` (or `response(payload)`)."""

    async def handle(ctx: CallContext, payload: dict[str, Any]) -> dict[str, Any]:
        when = station_time(payload.get("timestamp") or payload.get("generatedAt"))
        await ctx.publish(Notification(payload_json=payload_json(payload)), when)
        return dict(response(payload) if callable(response) else response)

    return handle


def _station_time_of(payload: dict[str, Any]) -> datetime | None:
    return station_time(payload.get("timestamp") or payload.get("generatedAt"))


def recorded(body: Callable[[dict[str, Any]], Body], response: dict[str, Any] | None = None) -> Handler:
    """A handler for a message the CSMS records (a typed body, `actions/operations.py`) and
    acknowledges with the schema's fixed answer (`{}` unless given). The station time is
    the message's `timestamp`/`generatedAt` when it has one."""
    answer = response or {}

    async def handle(ctx: CallContext, payload: dict[str, Any]) -> dict[str, Any]:
        await ctx.publish(body(payload), _station_time_of(payload))
        return dict(answer)

    return handle


def answered(body: Callable[[dict[str, Any], str], Body], status: str | Callable[[dict[str, Any]], str],
             extra: dict[str, Any] | None = None) -> Handler:
    """A handler for a message whose answer is a `status` the record keeps: the body is
    built with the status answered (`status(payload)` when it depends on the message), and
    the answer is {"status": ..., **extra}."""
    more = extra or {}

    async def handle(ctx: CallContext, payload: dict[str, Any]) -> dict[str, Any]:
        answer = status(payload) if callable(status) else status
        await ctx.publish(body(payload, answer), _station_time_of(payload))
        return {"status": answer, **more}

    return handle


def track_fault(ctx: CallContext, evse_id: int, connector_id: int, status: str) -> None:
    """Keep the connection's faulted connectors (csms_gateway_stations_faulted) current
    after a StatusNotification was published."""
    changed = ctx.state.connector_status(evse_id, connector_id, status == "Faulted")
    if changed is not None:
        metrics.station_faulted(changed)

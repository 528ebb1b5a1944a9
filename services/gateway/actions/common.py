"""Helpers shared by the 1.6 and 2.x handlers: boot admission, token status, notifications."""

from __future__ import annotations

import logging
import time
import random
from datetime import datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable

import orjson

from services.common.errors import StoreError
from services.common.events import Notification
from services.common.timeutil import to_ocpp
from services.gateway.actions.meter import station_time
from services.gateway.context import CallContext

__all__ = [
    "Handler",
    "PENDING_INTERVAL_S",
    "decide_boot",
    "token_status",
    "payload_json",
    "notification",
    "now_ocpp",
]

log = logging.getLogger("csms.gateway.actions")

Handler = Callable[[CallContext, dict], Awaitable[dict]]

# Pending boots come back after a random 10-60 s so a reconnect storm spreads out
# instead of returning as one wave.
_ENABLED_FRESH_S = 60.0
PENDING_INTERVAL_S = (10, 60)
_jitter = random.Random()

_STATUSES_16 = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})
_STATUSES_2X = _STATUSES_16 | {
    "NoCredit", "NotAllowedTypeEVSE", "NotAtThisLocation", "NotAtThisTime", "Unknown",
}
# Failures of the token/station lookup that must not turn into a CALLERROR on a
# transaction message (the store being down is our problem, not the station's).
_LOOKUP_ERRORS = (StoreError, TimeoutError, OSError)


def now_ocpp(ctx: CallContext) -> str:
    """currentTime as chargers accept it: UTC, `Z`, milliseconds."""
    return to_ocpp(ctx.clock())


async def decide_boot(ctx: CallContext) -> tuple[str, int]:
    """(registrationStatus, interval) for a BootNotification; records it on the connection.

    The station is already authenticated. A station an operator disabled is Rejected;
    otherwise admission control decides between Accepted and a jittered Pending."""
    enabled = True
    checked = ctx.state.attributes.get("enabled_checked_at")
    # The handshake found the station enabled moments ago: skip one store round trip per
    # boot (it matters in a reconnect storm). A boot on a long-lived socket re-reads.
    if not (isinstance(checked, float) and time.monotonic() - checked < _ENABLED_FRESH_S):
        try:
            station = await ctx.store.get_station(ctx.station_id)
            enabled = station is None or station.enabled
        except _LOOKUP_ERRORS as exc:
            # The store answered moments ago for authentication; do not bounce the whole
            # fleet back to boot retries because it blipped now (RELIABILITY row 44).
            log.warning("station=%s boot: station lookup failed (%s); treating as enabled", ctx.station_id, exc)
    if not enabled:
        status, interval = "Rejected", ctx.settings.heartbeat_interval
    elif not ctx.admit_boot():
        status, interval = "Pending", _jitter.randint(*PENDING_INTERVAL_S)
    else:
        status, interval = "Accepted", ctx.settings.heartbeat_interval
    ctx.state.boot_status = status
    return status, interval


async def token_status(ctx: CallContext, id_token: str, *, fail_open: bool) -> str:
    """The token's status, restricted to values the answer's schema allows.

    `fail_open=True` is for transaction messages: the station already started (or is
    ending) charging, so when the token store is unreachable we answer Accepted rather
    than Invalid (which would make the station cut a running session) or a CALLERROR
    (which loses billing data). Authorize passes False and lets the error surface."""
    allowed = _STATUSES_16 if ctx.ocpp_version == "1.6" else _STATUSES_2X
    try:
        status = await ctx.token_status(id_token)
    except _LOOKUP_ERRORS as exc:
        if not fail_open:
            raise
        log.warning("station=%s token lookup failed (%s); answering Accepted", ctx.station_id, exc)
        return "Accepted"
    return status if status in allowed else "Invalid"


def json_default(obj: Any) -> Any:
    """orjson `default` for frames the gateway writes: Decimal as a number, datetimes as
    OCPP timestamps (UTC, Z, milliseconds)."""
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, datetime):
        return to_ocpp(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def payload_json(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload, default=json_default).decode()


def notification(response: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
    """A handler for messages we record but do not act on: publish the payload as a
    `Notification` (station time from `timestamp`/`generatedAt` when present) and
    answer the fixed, schema-valid `response` (or `response(payload)`)."""

    async def handle(ctx: CallContext, payload: dict) -> dict:
        when = station_time(payload.get("timestamp") or payload.get("generatedAt"))
        await ctx.publish(Notification(payload_json=payload_json(payload)), when)
        return dict(response(payload) if callable(response) else response)

    return handle

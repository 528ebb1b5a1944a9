"""Charging limits from the smart-charging processor to stations, version-neutral.

Smart charging decides currents; it does not speak OCPP. It sends the command
`SetChargingLimit` (services/common/ocpp/commands.py) and the gateway holding the
station's socket builds the 1.6 or 2.0.1 SetChargingProfile for the station's version.
Two kinds:
- a limit per transaction (`purpose: "tx"`, a TxProfile; `ProfileCommand` from the
  domain), profile id `TX_PROFILE_ID_BASE + evse_id`: stable per EVSE, so a newer limit
  replaces the older profile at the same stack level instead of stacking up;
- a per-station fail-safe (`purpose: "default"`, a TxDefaultProfile on EVSE 0,
  `FAILSAFE_PROFILE_ID`), sent when a station of a site boots.

The schedule's `start` is the decision time, fixed in the command, so a re-sent outbox
entry builds the same frame. A session whose EV gave a departure time (ADR 018 §5) gets
`duration_s` up to it: the schedule ends at the departure. Upgrade order: the gateways first (a gateway that does not
know `SetChargingLimit` answers NotSupported, which this processor takes as a station
refusing the profile).

A `PlannedCommand` is what the handler decides and persists (the site state's outbox)
before it is sent; `LimitSender` sends it through the one `CommandRouter` to the owning
gateway's partition of csms.commands.v1. An outbox entry stored before the limits were
version-neutral (`command_type` absent, `params` holding an OCPP profile) is sent as it
was built, as a `SetChargingProfile`. `merge_commands` folds the commands of several
domain steps into one batch (lower before raise) and `fail_safe_limit` is the
fail-safe's share of the site.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from prometheus_client import Counter

from services.common.ocpp.commands import SET_CHARGING_LIMIT
from services.common.routing import CommandRouter, Offline, Routed, Unroutable
from services.common.store.port import Owner
from services.common.timeutil import to_ocpp
from services.smart_charging.domain import DEFAULT_MIN_A, LIMIT_RESOLUTION_A, ProfileCommand, session_key

__all__ = [
    "COMMAND_TTL",
    "COMMAND_TYPE",
    "COMMAND_TYPES",
    "FAILSAFE_PROFILE_ID",
    "ISSUER",
    "LEGACY_COMMAND_TYPE",
    "PROFILES_SENT",
    "TX_PROFILE_ID_BASE",
    "LimitSender",
    "PlannedCommand",
    "fail_safe_command",
    "fail_safe_limit",
    "merge_commands",
    "tx_limit_command",
    "tx_profile_id",
]

log = logging.getLogger("csms.smart_charging.commands")

COMMAND_TYPE = SET_CHARGING_LIMIT
LEGACY_COMMAND_TYPE = "SetChargingProfile"  # outbox entries of the version before SetChargingLimit
COMMAND_TYPES = frozenset({COMMAND_TYPE, LEGACY_COMMAND_TYPE})  # the answers smart charging reads
ISSUER = "smart_charging"
COMMAND_TTL = timedelta(seconds=60)
FAILSAFE_PROFILE_ID = 7000
TX_PROFILE_ID_BASE = 7100

PROFILES_SENT = Counter(
    "csms_smart_charging_profiles_sent_total",
    "Charging limits (TxProfile / TxDefaultProfile commands) of the smart-charging processor, "
    "by result (sent, offline: station not connected, error: could not be built or routed)",
    ["result"],
)


def tx_profile_id(evse_id: int) -> int:
    """The TxProfile id of an EVSE: stable, so a new limit replaces the old profile."""
    return TX_PROFILE_ID_BASE + evse_id


@dataclass(frozen=True, slots=True)
class PlannedCommand:
    """A charging limit decided by the processor (persisted in the outbox, then sent).

    `kind` is "tx" (limits one transaction) or "failsafe" (the station's default)."""

    command_id: str
    station_id: str
    params: dict[str, Any]
    kind: str = "tx"
    evse_id: int = 0
    transaction_id: str = ""
    limit_a: str = ""
    command_type: str = COMMAND_TYPE


def tx_limit_command(command: ProfileCommand, now: datetime) -> PlannedCommand:
    """The limit of one transaction (0 A pauses it), from `now`. Raises ValueError when it
    cannot be one (no EVSE, no transaction id); what a version cannot carry (a 2.0.1
    transaction id over 36 characters) the gateway answers as an invalid command."""
    transaction_id = str(command.transaction_id)
    if command.evse_id <= 0:
        raise ValueError(f"a transaction limit needs an EVSE > 0, got {command.evse_id}")
    if not transaction_id:
        raise ValueError("a transaction limit needs a transaction id")
    params = {
        "purpose": "tx",
        "evse_id": command.evse_id,
        "transaction_id": transaction_id,
        "limit_a": str(command.limit_a),
        "number_phases": None,
        "profile_id": tx_profile_id(command.evse_id),
        "start": to_ocpp(now),
    }
    if command.until is not None:
        seconds = int((command.until - now).total_seconds())
        if seconds > 0:  # the schedule ends at the EV's departure (ISO 15118 needs)
            params["duration_s"] = seconds
    return PlannedCommand(
        command_id=str(uuid.uuid4()),
        station_id=command.station_id,
        params=params,
        kind="tx",
        evse_id=command.evse_id,
        transaction_id=transaction_id,
        limit_a=str(command.limit_a),
    )


def fail_safe_command(station_id: str, limit_a: Decimal, now: datetime) -> PlannedCommand:
    """The station-wide default limit (a Relative TxDefaultProfile on EVSE 0)."""
    params = {
        "purpose": "default",
        "evse_id": 0,
        "limit_a": str(limit_a),
        "number_phases": None,
        "profile_id": FAILSAFE_PROFILE_ID,
        "start": to_ocpp(now),
    }
    return PlannedCommand(
        command_id=str(uuid.uuid4()),
        station_id=station_id,
        params=params,
        kind="failsafe",
        limit_a=str(limit_a),
    )


def merge_commands(batch: Sequence[ProfileCommand]) -> list[ProfileCommand]:
    """Several applies in one step: keep each session's last limit; lower before raise.
    A session one of them forced (its EV waits for a schedule) is sent even if its limit
    ended where it was."""
    last: dict[str, ProfileCommand] = {}
    first_previous: dict[str, Decimal | None] = {}
    forced: set[str] = set()
    for c in batch:
        key = session_key(c.station_id, c.evse_id)
        first_previous.setdefault(key, c.previous_a)
        last[key] = c
        if c.forced:
            forced.add(key)
    lowering: list[ProfileCommand] = []
    raising: list[ProfileCommand] = []
    for key, c in last.items():
        previous = first_previous[key]
        if previous is not None and c.limit_a == previous and key not in forced:
            continue  # back where it was: nothing to send
        merged = replace(c, previous_a=previous, forced=key in forced)
        (lowering if previous is None or c.limit_a < previous else raising).append(merged)
    return lowering + raising


def fail_safe_limit(effective_limit_a: Decimal, stations_in_site: int, station_max_a: Decimal | None) -> Decimal:
    """The site's effective limit split evenly between its stations, at least the 6 A
    minimum, at most the station's max, rounded down to 0.1 A."""
    share = effective_limit_a / max(stations_in_site, 1)
    limit = max(share, DEFAULT_MIN_A)
    if station_max_a is not None and station_max_a > 0:
        limit = min(limit, station_max_a)
    return limit.quantize(LIMIT_RESOLUTION_A, rounding=ROUND_DOWN)


class LimitSender:
    """Sends planned commands through the router (issuer "smart_charging"); each result
    is "sent", "offline" (the station is not connected: it gets its limit at the next
    re-allocation or from its fail-safe) or "error" (not routable: a deployment error).
    Bus failures propagate (the caller's record is redelivered, the outbox re-sent)."""

    def __init__(self, router: CommandRouter) -> None:
        self._router = router

    async def send(self, planned: PlannedCommand) -> str:
        routed = await self._router.send(
            planned.station_id, planned.command_type, planned.params, ttl=COMMAND_TTL, command_id=planned.command_id
        )
        return _outcome(planned, routed)

    async def send_many(self, sequences: Sequence[Sequence[PlannedCommand]]) -> list[list[str]]:
        """`send` for several sequences of commands (a site's outbox each): the owners of
        all the stations are read concurrently; each sequence is produced in its order (a
        site's lowering commands before its raising ones, as `send` one after the other
        would), the sequences concurrently, so the producer batches them. Returns each
        command's result, by sequence. Bus failures propagate (after all have finished)."""
        stations = list(dict.fromkeys(p.station_id for seq in sequences for p in seq))
        found = await asyncio.gather(*(self._router.owner(s) for s in stations))
        owners = dict(zip(stations, found))

        async def in_order(seq: Sequence[PlannedCommand]) -> list[str]:
            return [await self._send_to(planned, owners[planned.station_id]) for planned in seq]

        results = await asyncio.gather(*(in_order(seq) for seq in sequences), return_exceptions=True)
        out: list[list[str]] = []
        for r in results:
            if isinstance(r, BaseException):
                raise r
            out.append(r)
        return out

    async def _send_to(self, planned: PlannedCommand, owner: Owner | None) -> str:
        routed = await self._router.send(
            planned.station_id, planned.command_type, planned.params, ttl=COMMAND_TTL,
            command_id=planned.command_id, owner=owner,
        )
        return _outcome(planned, routed)


def _outcome(planned: PlannedCommand, routed: Routed) -> str:
    if isinstance(routed, Offline):
        PROFILES_SENT.labels("offline").inc()
        log.info("station=%s not connected: %s limit not sent", planned.station_id, planned.kind)
        return "offline"
    if isinstance(routed, Unroutable):
        PROFILES_SENT.labels("error").inc()
        log.error("station=%s %s limit not routable: %s", planned.station_id, planned.kind, routed.reason)
        return "error"
    PROFILES_SENT.labels("sent").inc()
    log.info(
        "station=%s %s limit %s A sent (command %s, evse %d, gateway %s)",
        planned.station_id, planned.kind, planned.limit_a, planned.command_id, planned.evse_id, routed.gateway_id,
    )
    return "sent"

"""SetChargingProfile commands from the smart-charging processor to stations.

Two kinds, both in the API's command vocabulary (the gateway translates to OCPP):
- a TxProfile per transaction (`ProfileCommand` from the domain), profile id
  `TX_PROFILE_ID_BASE + evse_id`: stable per EVSE, so a newer limit replaces the
  older profile at the same stack level instead of stacking up;
- a per-station TxDefaultProfile fail-safe on connector/EVSE 0 (`FAILSAFE_PROFILE_ID`),
  sent when a station of a site boots.

A `PlannedCommand` is what the handler decides and persists (the site state's
outbox) before it is sent; `send()` resolves the owning gateway and produces the
`codec.Command` to its partition of csms.commands.v1. `merge_commands` folds the
commands of several domain steps into one batch (lower before raise) and
`fail_safe_limit` is the fail-safe's share of the site.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from collections.abc import Sequence
from dataclasses import replace
from decimal import ROUND_DOWN, Decimal
from typing import Any

from prometheus_client import Counter

from services.common import codec, topics
from services.common.config import gateway_ordinal
from services.common.errors import ConfigError
from services.common.runtime import Runtime
from services.common.store.port import Owner
from services.smart_charging.domain import (
    DEFAULT_MIN_A,
    ProfileCommand,
    session_key,
    tx_default_profile_16,
    tx_default_profile_201,
    tx_profile_16,
    tx_profile_201,
)
from services.smart_charging.domain.profiles import LIMIT_RESOLUTION_A

__all__ = [
    "COMMAND_TYPE",
    "COMMAND_TTL",
    "FAILSAFE_PROFILE_ID",
    "ISSUER",
    "PROFILES_SENT",
    "TX_PROFILE_ID_BASE",
    "PlannedCommand",
    "fail_safe_command",
    "fail_safe_limit",
    "merge_commands",
    "send",
    "tx_profile_command",
    "tx_profile_id",
]

log = logging.getLogger("csms.smart_charging.commands")

COMMAND_TYPE = "SetChargingProfile"
ISSUER = "smart_charging"
COMMAND_TTL = timedelta(seconds=60)
FAILSAFE_PROFILE_ID = 7000
TX_PROFILE_ID_BASE = 7100

PROFILES_SENT = Counter(
    "csms_smart_charging_profiles_sent_total",
    "SetChargingProfile commands of the smart-charging processor, by result "
    "(sent, offline: station not connected, error: could not be built or routed)",
    ["result"],
)


def tx_profile_id(evse_id: int) -> int:
    """The TxProfile id of an EVSE: stable, so a new limit replaces the old profile."""
    return TX_PROFILE_ID_BASE + evse_id


def _is_16(ocpp_version: str) -> bool:
    return ocpp_version == "1.6"


@dataclass(frozen=True, slots=True)
class PlannedCommand:
    """A SetChargingProfile decided by the processor (persisted in the outbox, then sent).

    `kind` is "tx" (limits one transaction) or "failsafe" (TxDefaultProfile).
    """

    command_id: str
    station_id: str
    params: dict[str, Any]
    kind: str = "tx"
    evse_id: int = 0
    transaction_id: str = ""
    limit_a: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "station_id": self.station_id,
            "params": self.params,
            "kind": self.kind,
            "evse_id": self.evse_id,
            "transaction_id": self.transaction_id,
            "limit_a": self.limit_a,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "PlannedCommand":
        return cls(
            command_id=str(raw["command_id"]),
            station_id=str(raw["station_id"]),
            params=dict(raw["params"]),
            kind=str(raw.get("kind", "tx")),
            evse_id=int(raw.get("evse_id", 0)),
            transaction_id=str(raw.get("transaction_id", "")),
            limit_a=str(raw.get("limit_a", "")),
        )


def tx_profile_command(ocpp_version: str, command: ProfileCommand, now: datetime) -> PlannedCommand:
    """The TxProfile limiting one transaction (0 A pauses it). Raises ValueError when the
    transaction cannot carry one (e.g. a 2.0.1 transaction id longer than 36 chars)."""
    profile_id = tx_profile_id(command.evse_id)
    params: dict[str, Any]
    if _is_16(ocpp_version):
        payload = tx_profile_16(command.evse_id, command.transaction_id, command.limit_a, profile_id, now)
        params = {"connector_id": payload["connectorId"], "charging_profile": payload["csChargingProfiles"]}
    else:
        payload = tx_profile_201(command.evse_id, command.transaction_id, command.limit_a, profile_id, now)
        params = {"evse_id": payload["evseId"], "charging_profile": payload["chargingProfile"]}
    return PlannedCommand(
        command_id=str(uuid.uuid4()),
        station_id=command.station_id,
        params=params,
        kind="tx",
        evse_id=command.evse_id,
        transaction_id=str(command.transaction_id),
        limit_a=str(command.limit_a),
    )


def fail_safe_command(ocpp_version: str, station_id: str, limit_a: Decimal, now: datetime) -> PlannedCommand:
    """The station-wide TxDefaultProfile (Relative, connector/EVSE 0)."""
    params: dict[str, Any]
    if _is_16(ocpp_version):
        payload = tx_default_profile_16(limit_a, FAILSAFE_PROFILE_ID, now)
        params = {"connector_id": payload["connectorId"], "charging_profile": payload["csChargingProfiles"]}
    else:
        payload = tx_default_profile_201(limit_a, FAILSAFE_PROFILE_ID, now)
        params = {"evse_id": payload["evseId"], "charging_profile": payload["chargingProfile"]}
    return PlannedCommand(
        command_id=str(uuid.uuid4()),
        station_id=station_id,
        params=params,
        kind="failsafe",
        limit_a=str(limit_a),
    )


def merge_commands(batch: Sequence[ProfileCommand]) -> list[ProfileCommand]:
    """Several applies in one step: keep each session's last limit; lower before raise."""
    last: dict[str, ProfileCommand] = {}
    first_previous: dict[str, Decimal | None] = {}
    for c in batch:
        key = session_key(c.station_id, c.evse_id)
        first_previous.setdefault(key, c.previous_a)
        last[key] = c
    lowering: list[ProfileCommand] = []
    raising: list[ProfileCommand] = []
    for key, c in last.items():
        previous = first_previous[key]
        if previous is not None and c.limit_a == previous:
            continue  # back where it was: nothing to send
        merged = replace(c, previous_a=previous)
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


async def send(rt: Runtime, planned: PlannedCommand) -> str:
    """Produce the command to the owning gateway's partition; "sent", "offline" or "error".

    A station that is not connected is skipped (it gets its profile at the next
    re-allocation or from its fail-safe). Bus failures propagate (the caller's record
    is redelivered and the outbox re-sent).
    """
    return await _publish(rt, planned, await rt.store.get_owner(planned.station_id))


async def send_many(rt: Runtime, sequences: Sequence[Sequence[PlannedCommand]]) -> list[list[str]]:
    """`send` for several sequences of commands (a site's outbox each): the owners of all
    the stations are read concurrently; each sequence is produced in its order (a
    site's lowering commands before its raising ones, as `send` one after the other
    would), the sequences concurrently, so the producer batches them. Returns each
    command's result, by sequence. Bus failures propagate (after all have finished)."""
    stations = list(dict.fromkeys(p.station_id for seq in sequences for p in seq))
    found = await asyncio.gather(*(rt.store.get_owner(s) for s in stations))
    owners = dict(zip(stations, found))

    async def in_order(seq: Sequence[PlannedCommand]) -> list[str]:
        return [await _publish(rt, planned, owners[planned.station_id]) for planned in seq]

    results = await asyncio.gather(*(in_order(seq) for seq in sequences), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


async def _publish(rt: Runtime, planned: PlannedCommand, owner: Owner | None) -> str:
    if owner is None or not owner.connected:
        PROFILES_SENT.labels("offline").inc()
        log.info("station=%s not connected: %s profile not sent", planned.station_id, planned.kind)
        return "offline"
    now = rt.clock()
    command = codec.Command(
        command_id=planned.command_id,
        station_id=planned.station_id,
        command_type=COMMAND_TYPE,
        params_json=json.dumps(planned.params, separators=(",", ":")),
        issued_at=now,
        expires_at=now + COMMAND_TTL,
        target_gateway_id=owner.gateway_id,
        target_epoch=owner.epoch,
        issuer=ISSUER,
    )
    try:
        partition = gateway_ordinal(owner.gateway_id)
        if partition >= await rt.bus.partitions(topics.COMMANDS):
            raise ConfigError(f"gateway {owner.gateway_id} has no partition on {topics.COMMANDS}")
    except ConfigError as exc:
        PROFILES_SENT.labels("error").inc()
        log.error("station=%s %s profile not routable: %s", planned.station_id, planned.kind, exc)
        return "error"
    await rt.bus.publish(
        topics.COMMANDS,
        planned.station_id,
        codec.encode_command(command),
        codec.command_headers(command),
        partition=partition,
    )
    PROFILES_SENT.labels("sent").inc()
    log.info(
        "station=%s %s profile %s A sent (command %s, evse %d, gateway %s)",
        planned.station_id, planned.kind, planned.limit_a, planned.command_id, planned.evse_id, owner.gateway_id,
    )
    return "sent"

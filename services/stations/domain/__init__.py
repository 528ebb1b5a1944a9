"""The stations processor's domain: pure folds of station events (ADR 016).

- ops.py: the `StationOps` value (kind STATION_OPS) and its parts;
- fold.py: `apply_ops`, its fold of a station's events, with the outage rule;
- commands.py: `CommandRecord` and `apply_command` (kind COMMAND).

Standard library, the pure shared modules and the sessions domain only (the connection and
connector merge rules are the sessions processor's `station_status`, reused, ADR 016)."""

from .commands import COMMAND_BODIES, SYNTHETIC_COMMAND_STATUSES, CommandRecord, apply_command
from .fold import FIRMWARE_ACTIONS, LOG_ACTIONS, OPS_BODIES, REQUESTED, OpsChange, apply_ops, down_cause, folds
from .ops import (
    OUTAGE_CAUSES,
    ChargingLimit,
    Connectivity,
    FirmwareState,
    LogState,
    MeterReading,
    OpenOutage,
    Outage,
    StationOps,
)

__all__ = [
    "COMMAND_BODIES",
    "SYNTHETIC_COMMAND_STATUSES",
    "CommandRecord",
    "apply_command",
    "FIRMWARE_ACTIONS",
    "LOG_ACTIONS",
    "OPS_BODIES",
    "REQUESTED",
    "OpsChange",
    "apply_ops",
    "down_cause",
    "folds",
    "OUTAGE_CAUSES",
    "ChargingLimit",
    "Connectivity",
    "FirmwareState",
    "LogState",
    "MeterReading",
    "OpenOutage",
    "Outage",
    "StationOps",
]

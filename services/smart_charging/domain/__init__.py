"""Pure smart-charging domain: site current allocation, per-site state machine and
OCPP charging-profile payloads. Stdlib only, no I/O. See docs/adr/006-smart-charging.md."""

from .allocation import DEFAULT_HEADROOM_A, DEFAULT_STEP_A, Allocation, Demand, allocate
from .profiles import (
    ocpp_timestamp,
    tx_default_profile_16,
    tx_default_profile_201,
    tx_profile_16,
    tx_profile_201,
    wire_limit,
)
from .site_state import (
    DEFAULT_MIN_A,
    ActiveSession,
    Event,
    LimitChanged,
    MeterReading,
    ProfileCommand,
    ProfileRejected,
    SessionStarted,
    SessionStopped,
    SiteConfig,
    SiteState,
    TransactionId,
    apply,
    session_key,
)

__all__ = [
    "DEFAULT_HEADROOM_A",
    "DEFAULT_MIN_A",
    "DEFAULT_STEP_A",
    "ActiveSession",
    "Allocation",
    "Demand",
    "Event",
    "LimitChanged",
    "MeterReading",
    "ProfileCommand",
    "ProfileRejected",
    "SessionStarted",
    "SessionStopped",
    "SiteConfig",
    "SiteState",
    "TransactionId",
    "allocate",
    "apply",
    "ocpp_timestamp",
    "session_key",
    "tx_default_profile_16",
    "tx_default_profile_201",
    "tx_profile_16",
    "tx_profile_201",
    "wire_limit",
]

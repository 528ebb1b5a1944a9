"""Pure smart-charging domain: site current allocation and the per-site state machine.
Stdlib only, no I/O. See docs/adr/006-smart-charging.md. (The OCPP charging profiles
are built by the gateway, services/common/ocpp/profiles.py; the site state's document
is mapped by services/smart_charging/documents.py.)"""

from .allocation import DEFAULT_HEADROOM_A, DEFAULT_STEP_A, Allocation, Demand, allocate
from .site_state import (
    DEFAULT_MIN_A,
    LIMIT_RESOLUTION_A,
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
    "LIMIT_RESOLUTION_A",
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
    "session_key",
]

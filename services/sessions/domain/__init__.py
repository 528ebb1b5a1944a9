"""Sessions domain: pure projections of normalized station events (stdlib only)."""

from .session import (
    FUTURE_TOLERANCE,
    MAX_SAMPLES,
    UNKNOWN_TRANSACTION_IDS,
    WINDOW_SLACK,
    OrderKey,
    Sample,
    Session,
    apply,
    is_session_event,
    session_from_doc,
    session_id,
    session_ref,
    session_to_doc,
)
from .station_status import (
    COMMAND_BODIES,
    LAST_SEEN_GRANULARITY,
    STATUS_BODIES,
    SYNTHETIC_COMMAND_STATUSES,
    apply_command,
    apply_status,
)

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_SAMPLES",
    "UNKNOWN_TRANSACTION_IDS",
    "WINDOW_SLACK",
    "OrderKey",
    "Sample",
    "Session",
    "apply",
    "is_session_event",
    "session_from_doc",
    "session_id",
    "session_ref",
    "session_to_doc",
    "COMMAND_BODIES",
    "LAST_SEEN_GRANULARITY",
    "STATUS_BODIES",
    "SYNTHETIC_COMMAND_STATUSES",
    "apply_command",
    "apply_status",
]

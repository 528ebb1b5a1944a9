"""Which sessions are billed, and which CDRs are held back from export. Pure.

A CDR is always stored (nothing accepted is lost), but one that cannot be trusted
as it stands is *held*: stored with its `hold_reasons` and not published on
csms.cdrs.v1 until a later version of it is plausible (see docs/billing-holds.md).
It is held when its session says so (the sessions processor flags implausible
clocks and sizes), or when the CDR itself is longer or larger than the configured
maxima: billing does not rely on the sessions processor for that.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

__all__ = [
    "ACCEPTED_AUTHORIZATIONS",
    "BILLABLE_STATUSES",
    "HOLD_CLOCK_SUSPECT",
    "HOLD_DURATION",
    "HOLD_ENERGY",
    "HOLD_SESSION",
    "cdr_hold_reasons",
    "is_billable_status",
    "refusal",
]

# Token statuses the CSMS answered with that let a session be billed; "" = unknown
# (older snapshots, or a station that started without asking).
ACCEPTED_AUTHORIZATIONS = frozenset({"", "Accepted"})
BILLABLE_STATUSES = frozenset({"completed", "abandoned"})

HOLD_DURATION = "duration_exceeds_max"
HOLD_ENERGY = "energy_exceeds_max"
HOLD_CLOCK_SUSPECT = "clock_suspect"
HOLD_SESSION = "session_hold"  # the session is on hold without saying why


def is_billable_status(status: str) -> bool:
    """A session is billed once the station ended it or the CSMS closed it."""
    return status in BILLABLE_STATUSES


def refusal(authorization: str) -> str | None:
    """The refusal ("Invalid", "Blocked", ...) if the token was refused at the start, else None."""
    return None if authorization in ACCEPTED_AUTHORIZATIONS else authorization


def cdr_hold_reasons(
    *,
    started_at: datetime,
    stopped_at: datetime,
    energy_wh: int,
    max_duration: timedelta,
    max_energy_wh: int,
    session_hold: bool = False,
    session_reasons: Iterable[str] = (),
    clock_suspect: bool = False,
) -> tuple[str, ...]:
    """Sorted, de-duplicated reasons to hold a CDR; empty: export it."""
    reasons = {r for r in session_reasons if r}
    if session_hold and not reasons:
        reasons.add(HOLD_SESSION)
    if clock_suspect:
        reasons.add(HOLD_CLOCK_SUSPECT)
    if stopped_at - started_at > max_duration:
        reasons.add(HOLD_DURATION)
    if energy_wh > max_energy_wh:
        reasons.add(HOLD_ENERGY)
    return tuple(sorted(reasons))

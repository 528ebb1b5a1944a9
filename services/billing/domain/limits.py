"""The bounds beyond which a session's CDR is held from export (pure, stdlib only).

`CSMS_SESSION_MAX_DURATION_H` and `CSMS_SESSION_MAX_ENERGY_WH` come in as plain numbers; a
non-positive or absurd duration falls back to `MAX_PRICED_DURATION` (and says so in
`duration_usable`, which the service logs once when it is wired).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .values import MAX_PRICED_DURATION

__all__ = ["BillingLimits", "billing_limits"]

# Longest CSMS_SESSION_MAX_DURATION_H honoured: beyond a century a timedelta is no longer a bound.
_MAX_DURATION_H = 24 * 365 * 100


@dataclass(frozen=True, slots=True)
class BillingLimits:
    max_duration: timedelta      # longest priced / unheld session
    max_energy_wh: int           # most energy of an unheld session
    duration_usable: bool = True  # False: the configured duration was replaced by the default


def billing_limits(max_duration_h: object, max_energy_wh: object) -> BillingLimits:
    usable = isinstance(max_duration_h, (int, float)) and 0 < max_duration_h <= _MAX_DURATION_H
    duration = timedelta(hours=float(max_duration_h)) if usable else MAX_PRICED_DURATION  # type: ignore[arg-type]
    return BillingLimits(duration, int(max_energy_wh), usable)  # type: ignore[call-overload]

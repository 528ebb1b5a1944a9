"""Wrong API credentials, counted per source address; past the limit, 429 (ADR 017 §8).

`source_address` is who is calling: the TCP peer, or, when the peer is one of
`CSMS_TRUSTED_PROXIES`, the right-most `X-Forwarded-For` entry that is not itself a
trusted proxy (entries left of the trusted hops are whatever the client wrote, so they
are never believed: a client could otherwise blame a victim or escape its own limit).
The rule is the gateway's, shared: services/common/forwarded.py.

`FailureCounter` counts failures per source in fixed one-minute windows, in memory (per
API pod: with N pods behind a balancer an attacker gets up to N × the limit; the limit is
a brake on guessing, and keys have 256 random bits). Past the limit the source is answered
429 with `Retry-After` (the rest of the window) without checking its credentials; the
first refusal of a window is logged, the rest only counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Sequence

from services.common.forwarded import TrustedProxies, client_address

__all__ = ["FailureCounter", "TrustedProxies", "source_address"]

WINDOW_S: Final = 60.0
_MAX_SOURCES = 50_000


def source_address(peer: str | None, forwarded_for: Sequence[str], trusted: TrustedProxies) -> str:
    """The caller's address (see the module doc); "" when the peer is unknown."""
    return client_address(peer or "", forwarded_for, trusted)


@dataclass
class FailureCounter:
    """Failures per source in fixed windows of `window_s`; `limit` failures allowed per window."""

    limit: int
    window_s: float = WINDOW_S
    _windows: dict[str, tuple[float, int, bool]] = field(default_factory=dict)  # source -> (start, count, logged)

    def _current(self, source: str, now: float) -> tuple[float, int, bool]:
        start, count, logged = self._windows.get(source, (now, 0, False))
        if now - start >= self.window_s:
            return now, 0, False
        return start, count, logged

    def retry_after(self, source: str, now: float) -> int | None:
        """Seconds until `source` may try again when it is over the limit, else None."""
        start, count, _ = self._current(source, now)
        if count < self.limit:
            return None
        return max(1, math.ceil(start + self.window_s - now))

    def first_refusal(self, source: str, now: float) -> bool:
        """True once per window: whether this refusal of `source` should be logged."""
        start, count, logged = self._current(source, now)
        self._windows[source] = (start, count, True)
        return not logged

    def failed(self, source: str, now: float) -> int:
        """Count a failure; returns the count in the current window."""
        if len(self._windows) >= _MAX_SOURCES:
            self._windows = {s: w for s, w in self._windows.items() if now - w[0] < self.window_s}
            if len(self._windows) >= _MAX_SOURCES:
                self._windows.clear()
        start, count, logged = self._current(source, now)
        self._windows[source] = (start, count + 1, logged)
        return count + 1

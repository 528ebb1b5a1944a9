"""State shared by all connections of one gateway: settings-derived limits, the publisher,
the local station -> connection registry, the token cache and boot admission control.

Kept in one object so that each connection holds a single reference to it (memory per
idle connection stays small) and tests can build one without a server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Coroutine

from services.common.errors import StoreError
from services.common.runtime import Runtime
from services.common.store.port import Token
from services.gateway import metrics, sizes
from services.gateway.admission import Admission, Thresholds
from services.gateway.limits import TokenBucket, TTLCache
from services.gateway.publisher import Publisher

if TYPE_CHECKING:
    from services.gateway.connection import Connection

__all__ = ["Limits", "Hub", "token_status_of"]

_MISSING: Any = object()
_TOKEN_STATUSES = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Tunables, read from `settings.extra` (defaults in brackets)."""

    open_timeout_s: float = 10.0         # whole handshake, and slowloris on the upgrade request
    queue_cap: int = 16                  # queued CALLs per connection before "message flood"
    msg_rate: float = 20.0               # CALLs per second per connection (token bucket)
    msg_burst: float = 60.0
    upgrade_rate_per_ip: float = 200.0   # upgrades per second per remote address
    upgrade_burst_per_ip: float = 1000.0
    command_concurrency: int = 256       # commands in flight per gateway
    token_cache_ttl_s: float = 30.0
    token_cache_size: int = 100_000
    call_timeout_s: float = 30.0         # CSMS -> station CALL, upper bound

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> "Limits":
        kw = {}
        for name, field_ in cls.__dataclass_fields__.items():
            if name in extra:
                kw[name] = type(field_.default)(extra[name])  # type: ignore[operator]
        return cls(**kw)


def token_status_of(token: Token | None, now: Any) -> str:
    if token is None:
        return "Invalid"
    if token.expires_at is not None and token.expires_at <= now:
        return "Expired"
    return token.status if token.status in _TOKEN_STATUSES else "Invalid"


class Hub:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.gateway_id = rt.settings.gateway_id
        self.limits = Limits.from_extra(rt.settings.extra)
        self.frame_limit = sizes.frame_limit(rt.settings.bus_max_record_bytes)  # per-action CALL limit
        self.publisher = Publisher(rt)
        self.connections: dict[str, "Connection"] = {}
        self.stopping = False
        rate = rt.settings.boot_rate_per_s  # an optional fixed cap (CSMS_BOOT_RATE); 0 = none
        self._boots = TokenBucket(rate, max(1.0, rate)) if rate > 0 else None
        # admission by measured overload (services/gateway/admission.py)
        self.admission = Admission(Thresholds.from_settings(rt.settings), lambda: getattr(self.publisher, "in_flight", 0))
        self._pending_s = 0
        self._tokens: TTLCache[str, Token | None] = TTLCache(self.limits.token_cache_size, self.limits.token_cache_ttl_s)
        self._background: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` in the background (e.g. closing a fenced socket, whose close handshake
        may wait for a dead peer) without losing the task to garbage collection."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def admit_boot(self) -> bool:
        """Admission control for BootNotification (False: answer Pending with a back-off):
        Pending while overloaded, or past the fixed cap if one is set."""
        self._pending_s = self.admission.boot_pending_interval()
        ok = self._pending_s == 0 and (self._boots is None or self._boots.take())
        if not ok:
            metrics.BOOT_PENDING.inc()
        return ok

    def pending_interval(self) -> int | None:
        """The Pending interval of the boot `admit_boot` just refused for overload (None:
        refused by the fixed cap; the caller picks a jittered interval)."""
        return self._pending_s or None

    async def token_status(self, id_token: str) -> str:
        """Accepted / Blocked / Expired / Invalid (unknown -> Invalid), through a TTL cache.
        A store failure serves the last known answer if there is one, else raises."""
        if self._tokens.has_fresh(id_token):
            return token_status_of(self._tokens.get(id_token), self.rt.clock())
        try:
            token = await self.rt.store.get_token(id_token)
        except StoreError:
            stale = self._tokens.get(id_token, _MISSING, stale=True)
            if stale is _MISSING:
                raise
            return token_status_of(stale, self.rt.clock())
        self._tokens.put(id_token, token)
        return token_status_of(token, self.rt.clock())

    def ready(self) -> bool:
        return not self.stopping and self.rt.bus.healthy and not self.publisher.failing

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

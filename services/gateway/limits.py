"""Small, bounded, allocation-light rate limiters and caches (monotonic clock, injectable).

`reserve()` is the "slow, not refuse" form of a token bucket (issue 8): a request past the
burst is admitted after a wait (its token is taken in advance, so waiters are served in
order at `rate`), as long as that wait stays within a bound; beyond it nothing is taken
and the caller answers 429 with the wait as Retry-After. So at most `rate x max_wait`
requests per key are ever waiting: a site's chargers behind one NAT address are delayed
by seconds, a flood from one address is still refused (its Retry-After values spread at
`rate`, so the refused come back as a trickle the bucket can take)."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Generic, Hashable, Mapping, TypeVar

__all__ = ["Limits", "TokenBucket", "KeyedBuckets", "Lockouts", "TTLCache"]

Now = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Limits:
    """The gateway's tunables, read from `settings.extra` (defaults in brackets)."""

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
    def from_extra(cls, extra: Mapping[str, Any]) -> "Limits":
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in extra:
                default: Any = f.default  # every field has a default: its type converts the setting
                kw[f.name] = type(default)(extra[f.name])
        return cls(**kw)


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp", "_now", "retry_slot")

    def __init__(self, rate: float, burst: float, now: Now = time.monotonic) -> None:
        self.rate, self.burst, self._now = rate, burst, now
        self.tokens = burst
        self.stamp = now()
        self.retry_slot = 0.0  # reserve(): the last return time handed to a refused request

    def _refill(self) -> None:
        t = self._now()
        self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate)
        self.stamp = t

    def take(self) -> bool:
        """Take one token if there is one."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def reserve(self, max_wait: float) -> tuple[bool, float]:
        """(True, wait): admitted, to proceed after `wait` seconds (0: now; the token is
        taken now). (False, retry_after): the wait would exceed `max_wait`; nothing is
        taken, and successive refusals are told successive return times 1/rate apart
        (after the queue), so that they come back spread out at the rate, not as a wave."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, 0.0
        if self.rate <= 0:
            return False, float("inf")
        wait = (1.0 - self.tokens) / self.rate
        if wait > max_wait:
            now = self.stamp
            self.retry_slot = max(self.retry_slot, now + wait)
            retry_after = self.retry_slot - now
            self.retry_slot += 1.0 / self.rate
            return False, retry_after
        self.tokens -= 1.0
        return True, wait

    def delay(self) -> float:
        """Take one token, going into debt if needed; returns how long to wait before using it."""
        self._refill()
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0.0 else -self.tokens / self.rate


class KeyedBuckets(Generic[K]):
    """One token bucket per key (e.g. per remote IP), at most `max_keys` remembered."""

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000, now: Now = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self._now = rate, burst, max_keys, now
        self._buckets: dict[K, TokenBucket] = {}

    def _bucket(self, key: K) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._now)
        return bucket

    def take(self, key: K) -> bool:
        return self._bucket(key).take()

    def reserve(self, key: K, max_wait: float) -> tuple[bool, float]:
        """TokenBucket.reserve for `key`'s bucket."""
        return self._bucket(key).reserve(max_wait)


class Lockouts(Generic[K]):
    """`limit` failures within `window` seconds lock the key for `lock_s` seconds."""

    def __init__(self, limit: int, window: float, lock_s: float, max_keys: int = 100_000, now: Now = time.monotonic) -> None:
        self.limit, self.window, self.lock_s, self.max_keys, self._now = limit, window, lock_s, max_keys, now
        # key -> [failures in window, window start, locked until]
        self._state: dict[K, list[float]] = {}

    def locked_for(self, key: K) -> float:
        """Seconds the key stays locked (0 if not locked)."""
        st = self._state.get(key)
        if st is None:
            return 0.0
        left = st[2] - self._now()
        return left if left > 0 else 0.0

    def fail(self, key: K) -> bool:
        """Record a failure; True if the key is now locked."""
        t = self._now()
        st = self._state.get(key)
        if st is None or t - st[1] > self.window:
            if st is None and len(self._state) >= self.max_keys:
                self._state.pop(next(iter(self._state)))
            st = self._state[key] = [0.0, t, st[2] if st else 0.0]
        st[0] += 1
        if st[0] >= self.limit:
            st[2] = t + self.lock_s
            st[0], st[1] = 0.0, t
            return True
        return False

    def succeed(self, key: K) -> None:
        st = self._state.get(key)
        if st is not None and st[2] <= self._now():
            del self._state[key]


class TTLCache(Generic[K, V]):
    """A bounded dict whose entries expire; oldest-inserted evicted first when full."""

    def __init__(self, max_size: int, ttl: float, now: Now = time.monotonic) -> None:
        self.max_size, self.ttl, self._now = max_size, ttl, now
        self._data: dict[K, tuple[float, V]] = {}

    def get(self, key: K, default: V | None = None, *, stale: bool = False) -> V | None:
        entry = self._data.get(key)
        if entry is None:
            return default
        if entry[0] < self._now() and not stale:
            return default
        return entry[1]

    def has_fresh(self, key: K) -> bool:
        entry = self._data.get(key)
        return entry is not None and entry[0] >= self._now()

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        if key in self._data:
            del self._data[key]  # re-insert at the end (eviction order)
        elif len(self._data) >= self.max_size:
            self._data.pop(next(iter(self._data)))
        self._data[key] = (self._now() + (self.ttl if ttl is None else ttl), value)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)

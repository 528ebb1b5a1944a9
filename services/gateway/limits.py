"""Small, bounded, allocation-light rate limiters and caches (monotonic clock, injectable).

`reserve()` is the "slow, not refuse" form of a token bucket (issue 8): a request past the
burst is admitted after a wait (its token is taken in advance, so waiters are served in
order at `rate`), as long as that wait stays within a bound; beyond it nothing is taken
and the caller answers 429 with the wait as Retry-After. So at most `rate x max_wait`
requests per key are ever waiting: a site's chargers behind one NAT address are delayed
by seconds, a flood from one address is still refused (its Retry-After values spread at
`rate`, so the refused come back as a trickle the bucket can take).

`AuthLockout` is the station-authentication failure policy (issue 11, ADR 002 amendment):
per (station, source) lockout, and slowing, never locking, per station and per source
address; see its docstring."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generic, Hashable, TypeVar

if TYPE_CHECKING:
    from services.common.config import Settings

__all__ = ["Limits", "TokenBucket", "KeyedBuckets", "Lockouts", "TTLCache", "AuthLimits", "AuthLockout", "Gate"]

Now = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Limits:
    """The gateway's per-connection and per-gateway tunables: the "Gateway limits" settings
    (docs/configuration.md), under the names the connection code uses."""

    open_timeout_s: float = 10.0         # whole handshake, and slowloris on the upgrade request
    queue_cap: int = 16                  # queued CALLs per connection before "message flood"
    msg_rate: float = 20.0               # CALLs per second per connection (token bucket)
    msg_burst: float = 60.0
    command_concurrency: int = 256       # commands in flight per gateway
    token_cache_ttl_s: float = 30.0
    token_cache_size: int = 100_000
    call_timeout_s: float = 30.0         # CSMS -> station CALL, upper bound

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Limits":
        return cls(
            open_timeout_s=settings.handshake_timeout_s,
            queue_cap=settings.connection_queue_cap,
            msg_rate=settings.msg_rate_per_s,
            msg_burst=settings.msg_burst,
            command_concurrency=settings.command_concurrency,
            token_cache_ttl_s=settings.token_cache_ttl_s,
            token_cache_size=settings.token_cache_size,
            call_timeout_s=settings.call_timeout_s,
        )


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


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """Station authentication tunables: the CSMS_AUTH_* settings (docs/configuration.md,
    docs/security.md)."""

    fail_limit: int = 5                  # failures per (station, source) within fail_window_s ...
    fail_window_s: float = 60.0
    lock_s: float = 60.0                 # ... lock that pair this long
    station_fail_limit: int = 50         # decaying failure count per station (all sources)
    ip_fail_limit: int = 30              # decaying failure count per source address
    slow_max_s: float = 60.0             # longest Retry-After of a slowed source
    max_tracked: int = 100_000           # entries per table (pairs, stations, addresses); oldest evicted
    station_cache_size: int = 200_000
    station_cache_ttl_s: float = 10.0    # a load shield only: revocations invalidate (ADR 017 §4)
    station_negative_ttl_s: float = 2.0
    reread_interval_s: float = 1.0       # a failed check re-reads the station at most this often
    certificate_cache_ttl_s: float = 10.0
    verified_ttl_s: float = 3600.0       # remembered scrypt successes
    scrypt_concurrency: int = 4

    @classmethod
    def from_settings(cls, settings: "Settings") -> "AuthLimits":
        return cls(
            fail_limit=settings.auth_fail_limit,
            fail_window_s=settings.auth_fail_window_s,
            lock_s=settings.auth_lock_s,
            station_fail_limit=settings.auth_station_fail_limit,
            ip_fail_limit=settings.auth_ip_fail_limit,
            slow_max_s=settings.auth_slow_max_s,
            max_tracked=settings.auth_max_tracked,
            station_cache_size=settings.auth_station_cache_size,
            station_cache_ttl_s=settings.auth_station_cache_ttl_s,
            station_negative_ttl_s=settings.auth_station_negative_ttl_s,
            reread_interval_s=settings.auth_reread_interval_s,
            certificate_cache_ttl_s=settings.auth_certificate_cache_ttl_s,
            verified_ttl_s=settings.auth_verified_ttl_s,
            scrypt_concurrency=settings.auth_scrypt_concurrency,
        )


@dataclass(frozen=True, slots=True)
class Gate:
    """What the failure policy says before any credential is looked at: status 0 = go on;
    else answer `status` (401 locked / 429 slowed) with Retry-After `retry_after` seconds."""

    status: int = 0
    reason: str = ""
    retry_after: int = 0


_OPEN = Gate()


def backoff_s(excess: float, max_s: float) -> float:
    """1 s at the limit, doubling with every failure past it, at most `max_s`."""
    return min(max_s, math.pow(2.0, min(max(excess, 0.0), 32.0)))


class AuthLockout:
    """Failures of station authentication, so that nobody can turn them on a victim:

    - A request without credentials is never recorded (the caller does not call `fail`).
    - (station, source): `fail_limit` failures within `fail_window_s` lock the pair for
      `lock_s` (401 + Retry-After, the password is not looked at). Another source of the
      same station, or the same source for another station, is not affected.
    - station (all sources): a failure count that decays exponentially with time constant
      `fail_window_s` (a burst of N counts N, a steady rate r counts r x window). At or past
      `station_fail_limit`, each further failure slows the station's *failing* sources for
      backoff_s(count - limit) (1 s, doubling per failure, capped at `slow_max_s`): a
      source that has failed for this station within the window is answered 429 +
      Retry-After until then; a source without failures for it is checked as usual.
    - source address (all stations): the same decaying count against `ip_fail_limit`;
      past it the address is slowed the same way, but only for the stations it has failed
      on within the window: a correct password from that address for a station it has not
      failed on still gets in, and a wrong one is answered 401 and recorded (extending the
      address's back-off). So a site behind one NAT address keeps connecting while one
      misconfigured charger (or an attacker) there is slowed.
    A success clears the pair; the decaying counts are left to decay. Each table keeps at
    most `max_tracked` entries, least recently failed evicted first. `now`: monotonic clock.
    """

    def __init__(self, limits: AuthLimits, now: Now = time.monotonic) -> None:
        self.limits, self._now = limits, now
        # (station, source) -> [failures in window, window start, locked until, last failure]
        self._pairs: dict[tuple[str, str], list[float]] = {}
        # station / address -> [decaying count, its time, slowed until]
        self._stations: dict[str, list[float]] = {}
        self._sources: dict[str, list[float]] = {}

    def _recent(self, pair: list[float] | None, t: float) -> bool:
        return pair is not None and t - pair[3] <= self.limits.fail_window_s

    def gate(self, station_id: str, source: str) -> Gate:
        """May this attempt be checked? (Three dict lookups; nothing is recorded.)"""
        if not self._pairs:
            return _OPEN
        pair = self._pairs.get((station_id, source))
        if pair is None:
            return _OPEN  # a source that has not failed for this station is never held back
        t = self._now()
        if pair[2] > t:
            return Gate(401, "locked", math.ceil(pair[2] - t))
        if not self._recent(pair, t):
            return _OPEN
        wait = 0.0
        reason = ""
        st = self._stations.get(station_id)
        if st is not None and st[2] > t:
            wait, reason = st[2] - t, "station_slowed"
        src = self._sources.get(source)
        if src is not None and src[2] - t > wait:
            wait, reason = src[2] - t, "source_slowed"
        if wait > 0:
            return Gate(429, reason, max(1, math.ceil(wait)))
        return _OPEN

    def _count(self, table: dict[str, list[float]], key: str, t: float, limit: int) -> None:
        st = table.pop(key, None)  # re-inserted at the end: least recently failed evicted first
        if st is None:
            if len(table) >= self.limits.max_tracked:
                table.pop(next(iter(table)))
            st = [0.0, t, 0.0]
        st[0] = st[0] * math.exp(-(t - st[1]) / self.limits.fail_window_s) + 1.0
        st[1] = t
        if st[0] >= limit:
            st[2] = t + backoff_s(st[0] - limit, self.limits.slow_max_s)
        table[key] = st

    def fail(self, station_id: str, source: str) -> bool:
        """Record a failed attempt; True if it locked the pair."""
        t = self._now()
        lim = self.limits
        key = (station_id, source)
        pair = self._pairs.pop(key, None)
        if pair is None:
            if len(self._pairs) >= lim.max_tracked:
                self._pairs.pop(next(iter(self._pairs)))
            pair = [0.0, t, 0.0, t]
        if t - pair[1] > lim.fail_window_s:
            pair[0], pair[1] = 0.0, t
        pair[0] += 1.0
        pair[3] = t
        locked = pair[0] >= lim.fail_limit
        if locked:
            pair[2] = t + lim.lock_s
            pair[0], pair[1] = 0.0, t
        self._pairs[key] = pair
        self._count(self._stations, station_id, t, lim.station_fail_limit)
        self._count(self._sources, source, t, lim.ip_fail_limit)
        return locked

    def succeed(self, station_id: str, source: str) -> None:
        if self._pairs:
            self._pairs.pop((station_id, source), None)

    def sizes(self) -> tuple[int, int, int]:
        return len(self._pairs), len(self._stations), len(self._sources)

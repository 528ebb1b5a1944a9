"""Station identity and Basic-auth checks before the upgrade (RELIABILITY rows 4-8; ADR 002).

Cost at reconnect-storm rate: a station with a fingerprint is verified with one HMAC
(~1.5 µs); without one, scrypt (~74 ms) runs once in a thread and the success is
remembered in memory keyed by HMAC(pepper, id, password), so repeats are cheap.
Failures count per station id and per remote address; a locked key is refused before
any password is looked at.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.common import passwords
from services.common.store.port import Station
from services.common.timeutil import Clock
from services.gateway import metrics
from services.gateway.limits import Lockouts, TTLCache

__all__ = [
    "valid_station_id", "station_id_from_path", "parse_basic", "security_profile", "Outcome", "Authenticator", "MAX_ID_LEN",
]

log = logging.getLogger("csms.gateway.auth")

MAX_ID_LEN = 48
# OCPP 2.0.1 identifierString without ':' (Basic auth separator; P4 forbids it) and '|'
# (not a URL path character). '%' is never accepted: no percent-decoding, so neither
# %2F nor double encoding can smuggle a '/' or '..' into an identity.
_ID_RE = re.compile(r"[A-Za-z0-9._\-*+=@]{1,48}")
_PREFIX = "/ocpp/"
_MAX_PASSWORD = 128


def valid_station_id(station_id: str) -> bool:
    return _ID_RE.fullmatch(station_id) is not None and ".." not in station_id and station_id != "."


def station_id_from_path(raw_path: str) -> str | None:
    """The identity from the raw (undecoded) request path, or None if it is not acceptable."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith(_PREFIX):
        return None
    sid = path[len(_PREFIX):]
    return sid if valid_station_id(sid) else None


def parse_basic(header: str | None) -> tuple[str, str] | str:
    """(username, password), or the reason it could not be read: "missing" / "malformed"."""
    if not header:
        return "missing"
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return "malformed"
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "malformed"
    user, sep, password = text.partition(":")
    if not sep or not user or not password or len(password) > _MAX_PASSWORD:
        return "malformed"
    return user, password


def security_profile(*, tls: bool, client_certificate: bool, forwarded_proto: str | None = None) -> int:
    """The OCPP security profile a connection used (StationConnected.security_profile):
    1 = Basic auth over plain ws, 2 = Basic auth over TLS, 3 = TLS with a client certificate
    (the gateway verified one), 0 = cannot tell. Every station here authenticates with
    Basic credentials; what differs is the transport. A plain connection that carries
    X-Forwarded-Proto came through a proxy that may have terminated TLS, or from a client
    that wrote the header itself: 0 rather than a guess either way."""
    if tls:
        return 3 if client_certificate else 2
    if forwarded_proto:
        return 0
    return 1


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int                  # 0 = authenticated; else the HTTP status to answer
    reason: str = ""
    station: Station | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 0


_CHALLENGE = {"WWW-Authenticate": 'Basic realm="OCPP"'}


class StationDirectory(Protocol):
    """The station store operations authentication uses (reads; open registration writes)."""

    async def get_station(self, station_id: str) -> Station | None: ...

    async def put_station(self, station: Station) -> None: ...


class Authenticator:
    """`extra`: tunables from `settings.extra` (cache sizes and TTLs, lockout limits)."""

    def __init__(self, stations: StationDirectory, *, pepper: bytes, clock: Clock, open_registration: bool = False,
                 extra: Mapping[str, Any] | None = None) -> None:
        self._stations = stations
        self._pepper = pepper
        self._clock = clock
        self._open_registration = open_registration
        x = extra or {}
        self.stations: TTLCache[str, Station | None] = TTLCache(int(x.get("station_cache_size", 200_000)), float(x.get("station_cache_ttl_s", 10.0)))
        self.negative_ttl = float(x.get("station_negative_ttl_s", 2.0))
        self.verified: TTLCache[str, str] = TTLCache(200_000, 3600.0)  # hmac(id, pw) -> password_hash
        self.id_locks: Lockouts[str] = Lockouts(int(x.get("auth_fail_limit_per_id", 5)), 60.0, float(x.get("auth_lock_s", 60.0)))
        self.ip_locks: Lockouts[str] = Lockouts(int(x.get("auth_fail_limit_per_ip", 30)), 60.0, float(x.get("auth_lock_s", 60.0)))
        self._scrypt = asyncio.Semaphore(int(x.get("scrypt_concurrency", 4)))

    # -- station lookup ------------------------------------------------------
    async def station(self, station_id: str, *, fresh: bool = False) -> Station | None:
        if not fresh and self.stations.has_fresh(station_id):
            return self.stations.get(station_id)
        station = await self._stations.get_station(station_id)
        self.stations.put(station_id, station, None if station is not None else self.negative_ttl)
        return station

    # -- password checks -----------------------------------------------------
    def _cache_key(self, station_id: str, password: str) -> str:
        msg = station_id.encode() + b"\x00" + password.encode()
        return hmac.new(self._pepper, msg, hashlib.sha256).hexdigest()

    async def verify(self, station: Station, password: str) -> bool:
        if station.password_fingerprint and passwords.verify_fingerprint(
            self._pepper, station.id, password, station.password_fingerprint
        ):
            return True
        if not station.password_hash:
            return False
        key = self._cache_key(station.id, password)
        if self.verified.get(key) == station.password_hash:
            return True
        async with self._scrypt:  # bound the threads a flood of wrong passwords can occupy
            ok = await asyncio.get_running_loop().run_in_executor(
                None, passwords.verify_password_slow, password, station.password_hash
            )
        if ok:
            self.verified.put(key, station.password_hash)
        return ok

    async def _register(self, station_id: str, password: str) -> Station:
        if len(password) < passwords.MIN_LENGTH:
            log.warning("station=%s open registration with a %d-character password", station_id, len(password))
        hashed = await asyncio.get_running_loop().run_in_executor(None, passwords.hash_password, password)
        station = Station(
            id=station_id,
            password_hash=hashed,
            password_fingerprint=passwords.fingerprint(self._pepper, station_id, password),
            created_at=self._clock(),
        )
        await self._stations.put_station(station)
        self.stations.put(station_id, station)
        log.info("station=%s registered (open registration)", station_id)
        return station

    # -- the whole decision --------------------------------------------------
    def _fail(self, station_id: str | None, remote: str, status: int, reason: str) -> Outcome:
        metrics.AUTH_FAILURES.labels(reason=reason).inc()
        if station_id is not None:
            self.id_locks.fail(station_id)
        self.ip_locks.fail(remote)
        headers = dict(_CHALLENGE) if status == 401 else {}
        return Outcome(status, reason, headers=headers)

    async def authenticate(self, station_id: str, authorization: str | None, remote: str) -> Outcome:
        """Raises StoreError if the store cannot be read (the caller answers 503)."""
        locked = max(self.id_locks.locked_for(station_id), self.ip_locks.locked_for(remote))
        if locked > 0:
            metrics.AUTH_FAILURES.labels(reason="locked").inc()
            return Outcome(401, "locked", headers={**_CHALLENGE, "Retry-After": str(int(locked) + 1)})
        station = await self.station(station_id)
        if station is None and not self._open_registration:
            return self._fail(None, remote, 404, "unknown_station")
        creds = parse_basic(authorization)
        if isinstance(creds, str):
            return self._fail(station_id, remote, 401, f"{creds}_credentials")
        user, password = creds
        if user != station_id:
            return self._fail(station_id, remote, 401, "username_mismatch")
        if station is None:
            return Outcome(0, "registered", await self._register(station_id, password))
        ok = await self.verify(station, password)
        if not ok:
            # The password may have been changed moments ago through the API.
            fresh = await self.station(station_id, fresh=True)
            if fresh is not None and fresh != station:
                station = fresh
                ok = await self.verify(station, password)
        if not ok:
            return self._fail(station_id, remote, 401, "bad_password")
        if not station.enabled:
            metrics.AUTH_FAILURES.labels(reason="disabled").inc()
            return Outcome(403, "disabled")
        self.id_locks.succeed(station_id)
        return Outcome(0, "ok", station)

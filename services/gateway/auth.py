"""Station identity, security profile and credential checks before the upgrade (RELIABILITY
rows 4-8; ADR 002 and its issue-11 amendment; ADR 017; docs/security.md "Station connections").

Order (cheap and unrecorded first):
  client certificate CN != id (403 certificate_identity) -> failure policy for this
  (station, source) (401 locked / 429 slowed; limits.AuthLockout; skipped for a connection
  whose verified client certificate names the station) -> station lookup (cache) -> unknown:
  404 after one dummy HMAC (or open registration) -> connection profile < station profile
  (403 security_profile; before any password is looked at, so a downgraded transport is no
  password oracle) -> certificate revoked (403) -> credentials (a profile-3 connection needs
  none; if it sends some they must be right): missing 401 (never recorded), malformed /
  username / password 401 (recorded) -> disabled (403) -> once-only store updates.

Cost: one HMAC per attempt, right or wrong, known station or not (a fingerprint names its
pepper, so a mismatch under the current pepper is final). scrypt runs only for a station
stored without a fingerprint for the current pepper, off the loop, at most
`scrypt_concurrency` at a time; a success is remembered (per station) and turned into a
current fingerprint in the store, so it happens once. A normal login writes nothing.

Store writes at login, each once: a rotation's pending password that the station used
becomes its password; a pending security profile the station connected with becomes its
profile; a fingerprint of the old form or an old pepper is replaced. The station is re-read
just before the write and written only if it is unchanged since it was verified (else the
attempt is decided again on the fresh record).

Station reads made concurrently (a reconnect storm's handshakes) reach the store as one
batch (services/gateway/coalesce.py), never answered from an earlier read.

Caches are load shields: `invalidate(station_id)` (every gateway, on a `_Revoke` command)
drops the station, its remembered scrypt successes and its certificate status; an attempt
that was in flight when the station was invalidated is decided again on fresh data. A failed
password check still re-reads the station (at most once per station per
`reread_interval_s`): a rotation adds a pending password without any revocation, and the
station may reconnect with it within the cache's lifetime.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from services.common import kinds, passwords
from services.common.errors import StoreError
from services.common.store.port import Station
from services.common.timeutil import Clock
from services.gateway import metrics
from services.gateway.coalesce import Coalescer
from services.gateway.limits import AuthLimits, AuthLockout, Now, TTLCache

__all__ = [
    "valid_station_id", "station_id_from_path", "parse_basic", "security_profile", "Transport", "PLAIN", "Outcome",
    "StationDirectory", "Authenticator", "MAX_ID_LEN",
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
    """The OCPP security profile a connection used, from the transport alone (kept for
    callers that have no Outcome): 1 = plain ws, 2 = TLS, 3 = TLS with a client
    certificate, 0 = cannot tell (a plain connection that carries X-Forwarded-Proto).
    Authentication decides with `Transport` and reports `Outcome.profile`."""
    if tls:
        return 3 if client_certificate else 2
    if forwarded_proto:
        return 0
    return 1


@dataclass(frozen=True, slots=True)
class Transport:
    """What the connection's transport proved: TLS, and the verified client certificate's
    subject CN and serial (lowercase hex), if one was presented (directly, or from a trusted
    proxy's header after the gateway verified it)."""

    tls: bool
    client_cert_cn: str | None = None
    client_cert_serial: str | None = None

    @property
    def has_certificate(self) -> bool:
        return self.tls and (self.client_cert_cn is not None or self.client_cert_serial is not None)


PLAIN = Transport(False, None, None)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int                  # 0 = authenticated; else the HTTP status to answer
    reason: str = ""
    station: Station | None = None
    headers: dict[str, str] = field(default_factory=dict)
    profile: int = 0             # the security profile this connection proved (1-3; 0 when refused early)

    @property
    def ok(self) -> bool:
        return self.status == 0


_CHALLENGE = {"WWW-Authenticate": 'Basic realm="OCPP"'}


class StationDirectory(Protocol):
    """The store operations authentication uses: station reads, the station writes of open
    registration and of the once-only promotions, and certificate documents (revocation)."""

    async def get_station(self, station_id: str) -> Station | None: ...

    async def get_stations(self, station_ids: Sequence[str]) -> dict[str, Station]: ...

    async def put_station(self, station: Station) -> None: ...

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None: ...


# What a password matched: the current one (as stored / needing a current fingerprint),
# the pending one of a rotation, or nothing.
_CURRENT, _CURRENT_UPGRADE, _PENDING, _NONE = "current", "current_upgrade", "pending", ""
_VERIFIED_PER_STATION = 4


class Authenticator:
    """`limits`: AuthLimits.from_settings(settings); `now`: the monotonic clock of the
    caches and the failure policy (injectable for tests); `batched`: concurrent station
    reads go to the store as one batch (coalesce.py: for a store that serves one request
    at a time)."""

    def __init__(self, stations: StationDirectory, *, pepper: bytes, clock: Clock, open_registration: bool = False,
                 limits: AuthLimits | None = None, now: Now = time.monotonic, batched: bool = True) -> None:
        self._stations = stations
        self._pepper = pepper
        self._clock = clock
        self._open_registration = open_registration
        lim = self.limits = limits or AuthLimits()
        self._dummy = passwords.dummy_fingerprint(pepper)
        self.lockout = AuthLockout(lim, now)
        self.stations: TTLCache[str, Station | None] = TTLCache(lim.station_cache_size, lim.station_cache_ttl_s, now)
        self._fetched: TTLCache[str, bool] = TTLCache(lim.station_cache_size, lim.reread_interval_s, now)
        # station id -> {fingerprint of the attempt: the scrypt hash it matched}
        self.verified: TTLCache[str, dict[str, str]] = TTLCache(lim.station_cache_size, lim.verified_ttl_s, now)
        # station id -> (client certificate serial, revoked?)
        self.certificates: TTLCache[str, tuple[str, bool]] = TTLCache(lim.station_cache_size, lim.certificate_cache_ttl_s, now)
        self._invalidations = 0
        self._invalidated: TTLCache[str, int] = TTLCache(lim.max_tracked, 120.0, now)  # id -> invalidation number
        self._scrypt = asyncio.Semaphore(lim.scrypt_concurrency)
        # concurrent station reads (a reconnect storm's handshakes) go to the store as batches
        self._reads: Coalescer[str, Station | None] = Coalescer(stations.get_stations, missing=None, batched=batched)

    # -- caches ----------------------------------------------------------------
    def invalidate(self, station_id: str) -> None:
        """Forget what this gateway knows of the station (a revocation: disabled, deleted,
        password or profile changed, certificate revoked): its next attempt reads the store."""
        self._invalidations += 1
        self._invalidated.put(station_id, self._invalidations)
        self.stations.pop(station_id)
        self._fetched.pop(station_id)
        self.verified.pop(station_id)
        self.certificates.pop(station_id)

    def _invalidated_since(self, station_id: str, mark: int) -> bool:
        return mark != self._invalidations and (self._invalidated.get(station_id) or 0) > mark

    async def station(self, station_id: str, *, fresh: bool = False) -> Station | None:
        if not fresh and self.stations.has_fresh(station_id):
            return self.stations.get(station_id)
        mark = self._invalidations
        station = await self._reads.get(station_id)  # read after this call, never an earlier answer
        if not self._invalidated_since(station_id, mark):  # a read older than a revocation is not kept
            self.stations.put(station_id, station, None if station is not None else self.limits.station_negative_ttl_s)
            self._fetched.put(station_id, True)
        return station

    async def _certificate_revoked(self, station_id: str, serial: str) -> bool:
        serial = serial.lower().lstrip("0") or "0"
        hit = self.certificates.get(station_id)
        if hit is not None and hit[0] == serial:
            return hit[1]
        mark = self._invalidations
        doc = await self._stations.get_doc(kinds.CERTIFICATE, serial)
        revoked = (doc is not None and doc.get("status") == "revoked"
                   and doc.get("station_id", station_id) == station_id)
        if not self._invalidated_since(station_id, mark):
            self.certificates.put(station_id, (serial, revoked))
        return revoked

    # -- password checks -------------------------------------------------------
    async def _verify_slow(self, station_id: str, password: str, attempt: str, hashed: str) -> bool:
        known = self.verified.get(station_id)
        if known is not None and known.get(attempt) == hashed:
            return True
        metrics.AUTH_SLOW_CHECKS.inc()
        async with self._scrypt:  # bound the threads a flood of wrong passwords can occupy
            ok = await asyncio.get_running_loop().run_in_executor(None, passwords.verify_password_slow, password, hashed)
        if ok:
            known = self.verified.get(station_id)
            if known is None or len(known) >= _VERIFIED_PER_STATION:
                known = {}
            known[attempt] = hashed
            self.verified.put(station_id, known)
        return ok

    async def _verify(self, station: Station, password: str, attempt: str) -> str:
        """Which of the station's passwords `password` is (`attempt` = its fingerprint)."""
        pepper = self._pepper
        current = passwords.fingerprint_matches(pepper, attempt, station.password_fingerprint)
        if current:
            return _CURRENT if passwords.fingerprint_is_current(pepper, station.password_fingerprint) else _CURRENT_UPGRADE
        pending = passwords.fingerprint_matches(pepper, attempt, station.pending_password_fingerprint)
        if pending:
            return _PENDING
        if current is None and station.password_hash:
            if await self._verify_slow(station.id, password, attempt, station.password_hash):
                return _CURRENT_UPGRADE
        if pending is None and station.pending_password_hash:
            if await self._verify_slow(station.id, password, attempt, station.pending_password_hash):
                return _PENDING
        return _NONE

    # -- outcomes --------------------------------------------------------------
    @staticmethod
    def _refuse(status: int, reason: str, headers: dict[str, str] | None = None) -> Outcome:
        metrics.auth_failure(reason)
        return Outcome(status, reason, headers=headers or {})

    def _failed(self, station_id: str, remote: str, status: int, reason: str) -> Outcome:
        """A credential was tried and was wrong: recorded for the failure policy."""
        self.lockout.fail(station_id, remote)
        return self._refuse(status, reason, dict(_CHALLENGE) if status == 401 else None)

    async def authenticate(self, station_id: str, authorization: str | None, remote: str,
                           transport: Transport = PLAIN) -> Outcome:
        """Raises StoreError if the store cannot be read (the caller answers 503)."""
        mark = self._invalidations
        outcome = await self._attempt(station_id, authorization, remote, transport, retried=False)
        if outcome.ok and self._invalidated_since(station_id, mark):
            # revoked while this attempt was in flight: decide again on what the store says now
            outcome = await self._attempt(station_id, authorization, remote, transport, retried=True)
        return outcome

    async def _attempt(self, station_id: str, authorization: str | None, remote: str, transport: Transport, *,
                       retried: bool) -> Outcome:
        if transport.has_certificate and transport.client_cert_cn != station_id:
            return self._refuse(403, "certificate_identity")
        profile = 3 if transport.has_certificate else 2 if transport.tls else 1
        if profile < 3:
            gate = self.lockout.gate(station_id, remote)
            if gate.status:
                headers = {"Retry-After": str(gate.retry_after)}
                return self._refuse(gate.status, gate.reason, {**_CHALLENGE, **headers} if gate.status == 401 else headers)
        creds = parse_basic(authorization)
        station = await self.station(station_id)
        if station is None:
            if self._open_registration:
                return await self._register(station_id, creds, remote, profile)
            if isinstance(creds, tuple):  # cost what a wrong password costs: one HMAC and a comparison
                passwords.fingerprint_matches(self._pepper, passwords.fingerprint(self._pepper, station_id, creds[1]),
                                              self._dummy)
            if creds == "missing":
                return self._refuse(404, "unknown_station")
            return self._failed(station_id, remote, 404, "unknown_station")
        if profile < (station.security_profile or 1):
            return self._refuse(403, "security_profile")
        if profile == 3 and transport.client_cert_serial and await self._certificate_revoked(
                station_id, transport.client_cert_serial):
            return self._refuse(403, "certificate_revoked")
        matched, attempt = _CURRENT, ""
        if not (profile == 3 and creds == "missing"):
            if creds == "missing":
                return self._refuse(401, "missing_credentials", dict(_CHALLENGE))  # never recorded
            if isinstance(creds, str):
                return self._failed(station_id, remote, 401, f"{creds}_credentials")
            user, password = creds
            if user != station_id:
                return self._failed(station_id, remote, 401, "username_mismatch")
            attempt = passwords.fingerprint(self._pepper, station_id, password)
            matched = await self._verify(station, password, attempt)
            if matched == _NONE:
                if not retried and not self._fetched.has_fresh(station_id):
                    fresh = await self.station(station_id, fresh=True)  # a rotation may have added a password
                    if fresh != station:
                        return await self._attempt(station_id, authorization, remote, transport, retried=True)
                return self._failed(station_id, remote, 401, "bad_password")
        if not station.enabled:
            return self._refuse(403, "disabled")
        self.lockout.succeed(station_id, remote)
        changes = self._changes(station, matched, attempt, profile)
        if changes:
            written = await self._write(station, changes)
            if written is None:  # the stored station changed since it was read: decide on the new one
                if not retried:
                    return await self._attempt(station_id, authorization, remote, transport, retried=True)
            else:
                station = written
        return Outcome(0, "ok", station, profile=profile)

    # -- once-only updates -----------------------------------------------------
    @staticmethod
    def _changes(station: Station, matched: str, attempt: str, profile: int) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if matched == _PENDING:  # the station uses the rotated password: it replaces the old one
            changes.update(password_hash=station.pending_password_hash, password_fingerprint=attempt,
                           pending_password_hash="", pending_password_fingerprint="")
        elif matched == _CURRENT_UPGRADE:
            changes["password_fingerprint"] = attempt
        pending = station.pending_security_profile
        if pending is not None and profile >= pending:  # (a pending profile never lowers the stored one)
            changes.update(security_profile=max(pending, station.security_profile or 1), pending_security_profile=None)
        return changes

    async def _write(self, station: Station, changes: dict[str, Any]) -> Station | None:
        """The station with `changes`, stored; None if the stored station is no longer the
        one that was verified. A store failure is logged and the login stands (the changes
        are tried again at the next login)."""
        sid = station.id
        try:
            fresh = await self.station(sid, fresh=True)
            if fresh != station:
                return None
            updated = replace(station, **changes)
            await self._stations.put_station(updated)
        except StoreError as exc:
            log.warning("station=%s could not store the login's update (%s); kept for the next login", sid, exc)
            return station
        self.stations.put(sid, updated)
        if "pending_password_fingerprint" in changes:
            self.verified.pop(sid)  # nothing verified against the old password is kept
            metrics.auth_update("password_promoted")
            log.info("station=%s connected with its rotated password; the old one is no longer accepted", sid)
        elif "password_fingerprint" in changes:
            metrics.auth_update("fingerprint_upgraded")
            log.info("station=%s password fingerprint renewed for the current pepper", sid)
        if "pending_security_profile" in changes:
            metrics.auth_update("profile_promoted")
            log.info("station=%s security profile %d -> %d (first connection with it)", sid,
                     station.security_profile or 1, updated.security_profile or 1)
        return updated

    async def _register(self, station_id: str, creds: tuple[str, str] | str, remote: str, profile: int) -> Outcome:
        """Open registration: an unknown station that presents Basic credentials is created
        with that password (16-40 characters, OCPP) and the connection's profile."""
        if creds == "missing":
            return self._refuse(401, "missing_credentials", dict(_CHALLENGE))
        if isinstance(creds, str):
            return self._failed(station_id, remote, 401, f"{creds}_credentials")
        user, password = creds
        if user != station_id:
            return self._failed(station_id, remote, 401, "username_mismatch")
        if not passwords.MIN_LENGTH <= len(password) <= passwords.MAX_LENGTH:
            return self._failed(station_id, remote, 401, "bad_password_length")
        async with self._scrypt:
            hashed = await asyncio.get_running_loop().run_in_executor(None, passwords.hash_password, password)
        station = Station(
            id=station_id,
            password_hash=hashed,
            password_fingerprint=passwords.fingerprint(self._pepper, station_id, password),
            created_at=self._clock(),
            security_profile=profile,
        )
        await self._stations.put_station(station)
        self.stations.put(station_id, station)
        log.info("station=%s registered (open registration, security profile %d)", station_id, profile)
        return Outcome(0, "registered", station, profile=profile)

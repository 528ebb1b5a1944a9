"""Who is calling /api/v1/*, may they, and the audit trail (ADR 017 §8, docs/security.md).

How a route learns who called it (settled here; other route modules rely on it): after
authentication the middleware stores the caller on the request under two typed request
keys (aiohttp `web.RequestKey`s named "csms.role" and "csms.actor"):

    role_of(request)   == request[ROLE]   # "admin", "operator", "installer", "billing", "viewer"
    actor_of(request)  == request[ACTOR]  # "bootstrap", "key:<id>", "oidc:<subject>"

Routes call `role_of(request)` / `actor_of(request)` (a KeyError there means a route was
reached without the middleware: a wiring bug, never a caller's doing).

The middleware (`access_middleware`), for every path under /api/v1 but the public ones
(the OpenAPI document):

1. throttling: a source address (X-Forwarded-For only from CSMS_TRUSTED_PROXIES) with
   more than CSMS_API_AUTH_FAIL_LIMIT wrong credentials this minute gets 429 +
   Retry-After without its credentials being looked at (services/api/throttle.py);
2. authentication of `Authorization: Bearer <token>`, in this order: the bootstrap key
   CSMS_API_KEY (actor "bootstrap", role admin; constant-time compare), a stored key
   `csms_<id>_<secret>` (actor "key:<id>", services/api/keys.py), an OIDC JWT when
   CSMS_OIDC_JWKS_URL is set (actor "oidc:<sub>", services/api/oidc.py). Anything else
   is 401 with `WWW-Authenticate: Bearer`; wrong credentials (not a missing header)
   count against the source; a valid JWT without a known role is 403;
3. authorization against services/api/roles.py (403 `role <r> may not <METHOD> <route>`),
   including the installer's command-type check, for which the middleware reads the body
   of `POST /stations/{id}/commands` (aiohttp caches it: the route reads it again);
4. the audit entry (services/api/audit.py) of every POST/PUT/PATCH/DELETE, whatever its
   outcome, and of every refused authentication (missing credentials only on mutating
   calls, once per source and minute; a throttled source once per window, so a flood
   cannot flood the log).

Credentials never reach a log line, an audit field or a metric label: reasons are fixed
phrases, actors are key ids or OIDC subjects.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Final

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter

from services.api import roles
from services.api.audit import AuditEntry, AuditLog, new_entry_id, result_of
from services.api.errors import ApiError
from services.api.keys import KeyRing, parse_key
from services.api.oidc import OidcVerifier, looks_like_jwt
from services.api.throttle import FailureCounter, TrustedProxies, source_address
from services.common.errors import BusUnavailable, StoreUnavailable

__all__ = [
    "ACTOR",
    "API_PREFIX",
    "AUTH_FAILURES",
    "Access",
    "Caller",
    "PUBLIC_PATHS",
    "ROLE",
    "access_middleware",
    "actor_of",
    "check_bearer",
    "role_of",
]

log = logging.getLogger("csms.api.auth")

API_PREFIX = "/api/v1"
PUBLIC_PATHS = frozenset({f"{API_PREFIX}/openapi.json"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="csms"'}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROLE: Final = web.RequestKey("csms.role", str)    # request[ROLE]: the caller's role
ACTOR: Final = web.RequestKey("csms.actor", str)  # request[ACTOR]: who called ("bootstrap", "key:<id>", "oidc:<sub>")

MUTATING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# KeyRing.check's reasons -> metric labels (a closed set)
_KEY_REASONS: Final = {"unknown key": "unknown", "wrong secret": "wrong_secret", "revoked": "revoked",
                       "expired": "expired", "malformed": "malformed"}
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")

AUTH_FAILURES = Counter(
    "csms_api_auth_failures_total",
    "Refused operator API authentications by reason (missing, malformed, unknown, wrong_secret, revoked, "
    "expired, oidc_invalid, oidc_no_role, throttled)",
    ["reason"],
)


def role_of(request: web.Request) -> str:
    """The authenticated caller's role (set by the auth middleware)."""
    return request[ROLE]


def actor_of(request: web.Request) -> str:
    """The authenticated caller's actor name (set by the auth middleware); goes into audit entries."""
    return request[ACTOR]


def check_bearer(header: str | None, api_key: str | None) -> bool:
    """Constant-time comparison; with no key configured nothing is accepted (fail closed)."""
    if not api_key or not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


@dataclass(frozen=True, slots=True)
class Caller:
    actor: str
    role: str


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int          # 401 or 403
    reason: str          # metric label
    detail: str          # audit detail and error text (no credential)
    counted: bool        # counts against the source's failure limit
    actor: str = "anonymous"


@dataclass
class Access:
    """What the middleware checks against: built by create_app from the ApiContext."""

    bootstrap_key: str | None
    keys: KeyRing
    audit: AuditLog
    oidc: OidcVerifier | None
    failures: FailureCounter
    trusted: TrustedProxies
    monotonic: Callable[[], float] = time.monotonic
    # requests without credentials are not throttled; their audit entries are limited to
    # one per source per window so an anonymous flood cannot flood the audit log
    anonymous: FailureCounter = field(default_factory=lambda: FailureCounter(limit=1))

    async def authenticate(self, header: str | None) -> Caller | _Refusal:
        if not header or not header.strip():
            return _Refusal(401, "missing", "missing credentials", counted=False)
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _Refusal(401, "malformed", "malformed credentials", counted=True)
        if self.bootstrap_key and hmac.compare_digest(token.encode(), self.bootstrap_key.encode()):
            return Caller("bootstrap", roles.ADMIN)
        if parse_key(token) is not None:
            key, why = await self.keys.check(token)
            if key is not None:
                return Caller(f"key:{key.id}", key.role)
            return _Refusal(401, _KEY_REASONS.get(why, "unknown"), f"api key {why}", counted=True)
        if self.oidc is not None and looks_like_jwt(token):
            result = await self.oidc.verify(token)
            if result.subject is None:
                return _Refusal(401, "oidc_invalid", f"OIDC token refused: {result.reason}", counted=True)
            if result.role is None:
                return _Refusal(403, "oidc_no_role", f"OIDC token has no known role in claim {self.oidc.role_claim!r}",
                                counted=False, actor=f"oidc:{result.subject}")
            return Caller(f"oidc:{result.subject}", result.role)
        return _Refusal(401, "unknown", "unknown credentials", counted=True)


def _template(request: web.Request) -> str | None:
    """The matched route's template, None when no route matched (404/405)."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    resource = info.route.resource
    return resource.canonical if resource is not None else None


_SINGULAR = {
    "stations": "station", "tokens": "token", "sessions": "session", "tariffs": "tariff", "cdrs": "cdr",
    "sites": "site", "dead-letters": "dead_letter", "commands": "command", "firmware-campaigns": "firmware_campaign",
    "api-keys": "api_key",
}


def audit_target(template: str | None, match_info: dict[str, str], location: str | None) -> str:
    """`<resource>:<id>[/<sub-ids>]` of the route's first path segment, e.g. "station:CP-1";
    a create call without an id in its path takes the id from its answer's Location."""
    if template is None:
        return ""
    segment = template[len(API_PREFIX):].strip("/").split("/", 1)[0]
    kind = _SINGULAR.get(segment, segment)
    ids = list(match_info.values())
    if not ids and location:
        ids = [location.rstrip("/").rsplit("/", 1)[-1]]
    return f"{kind}:{'/'.join(ids)}"[:300] if ids else ""


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    if _REQUEST_ID.match(given):
        return given
    parts = request.headers.get("traceparent", "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return secrets.token_hex(8)


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, (ApiError, web.HTTPException)):
        return exc.status
    if isinstance(exc, (BusUnavailable, StoreUnavailable)):
        return 503
    return 500


def _command_type(raw: bytes) -> object:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return body.get("type") if isinstance(body, dict) else None


def access_middleware(access: Access) -> Middleware:
    if not access.bootstrap_key:
        log.warning("no bootstrap API key (CSMS_API_KEY): only stored keys%s are accepted",
                    " and OIDC tokens" if access.oidc else "")

    async def audit(request: web.Request, template: str | None, caller: Caller | None, actor: str, status: int,
                    source: str, detail: str = "", location: str | None = None) -> None:
        at = access.audit.clock()
        await access.audit.write(AuditEntry(
            id=new_entry_id(at), at=at, actor=actor, role=caller.role if caller else "",
            action=f"{request.method} {template or '(no route)'}",
            target=audit_target(template, dict(request.match_info), location),
            status=status, result=result_of(status), source=source, request_id=_request_id(request),
            detail=detail[:300],
        ))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")) or path in PUBLIC_PATHS:
            return await handler(request)
        method = request.method
        mutating = method in MUTATING
        template = _template(request)
        source = source_address(request.remote, request.headers.getall("X-Forwarded-For", []), access.trusted)

        now = access.monotonic()
        retry = access.failures.retry_after(source, now)
        if retry is not None:
            AUTH_FAILURES.labels("throttled").inc()
            if access.failures.first_refusal(source, now):
                log.warning("API source %s is over %d failed authentications a minute: refused for %d s",
                            source, access.failures.limit, retry)
                await audit(request, template, None, "anonymous", 429, source, "too many failed authentications")
            raise ApiError(429, "too many failed authentications from this address; retry later",
                           headers={"Retry-After": str(retry)})

        who = await access.authenticate(request.headers.get("Authorization"))
        if isinstance(who, _Refusal):
            AUTH_FAILURES.labels(who.reason).inc()
            if who.counted:
                access.failures.failed(source, access.monotonic())
            if who.counted or who.status == 403 or (mutating and access.anonymous.failed(source, access.monotonic()) == 1):
                await audit(request, template, None, who.actor, who.status, source, who.detail)
            if who.status == 403:
                raise ApiError(403, who.detail)
            raise ApiError(401, f"{who.detail} (Authorization: Bearer <key or token>)", headers=_CHALLENGE)
        caller = who
        request[ROLE] = caller.role
        request[ACTOR] = caller.actor

        if template is not None:
            denied = None
            if not roles.allowed(caller.role, method, template):
                denied = f"role {caller.role} may not {method} {template}"
            elif roles.needs_command_type(caller.role, method, template):
                command_type = _command_type(await request.read())
                if not roles.command_allowed(caller.role, command_type):
                    denied = f"role {caller.role} may not {method} {template} with type {str(command_type)[:40]}"
            if denied is not None:  # audited for reads too: a refused call is worth a line
                await audit(request, template, caller, caller.actor, 403, source, denied)
                raise ApiError(403, denied)

        if not mutating:
            return await handler(request)
        try:
            response = await handler(request)
        except Exception as exc:
            status = _status_of(exc)
            detail = exc.error if isinstance(exc, ApiError) else type(exc).__name__
            await audit(request, template, caller, caller.actor, status, source, detail)
            raise
        await audit(request, template, caller, caller.actor, response.status, source,
                    location=response.headers.get("Location"))
        return response

    return middleware

"""OIDC bearer tokens for the operator API (ADR 017 §8).

With `CSMS_OIDC_JWKS_URL`, a bearer token that looks like a JWT (three dot-separated
parts) is verified with PyJWT against the identity provider's signing keys:

- keys come from the JWKS URL with aiohttp (never PyJWT's blocking urllib client on the
  event loop), are cached, and are fetched again when a token names an unknown `kid`, at
  most once per REFRESH_MIN_S (a flood of made-up kids costs one fetch a minute);
- RS256 and ES256 only (no `none`, no HMAC: a public key must never act as a shared
  secret); `exp` is required; `iss` / `aud` are checked when CSMS_OIDC_ISSUER /
  CSMS_OIDC_AUDIENCE are set; `sub` is required (the actor is `oidc:<sub>`);
- the role is in claim CSMS_OIDC_ROLE_CLAIM (a dotted path reaches nested claims, e.g.
  Keycloak's `realm_access.roles`), a string or a list; the most privileged known role
  wins; a valid token without a known role is a 403, not a 401.

`verify` returns an `OidcResult`; it never raises for a bad token, and its `reason`
never contains the token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Final

import aiohttp
import jwt

from services.api.roles import most_privileged

__all__ = ["ALGORITHMS", "OidcResult", "OidcVerifier", "looks_like_jwt", "role_from_claims"]

log = logging.getLogger("csms.api.oidc")

ALGORITHMS: Final = ("RS256", "ES256")
REFRESH_MIN_S: Final = 60.0
FETCH_TIMEOUT_S: Final = 5.0
LEEWAY_S: Final = 30


def looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


def role_from_claims(claims: dict[str, Any], claim: str) -> str | None:
    """The most privileged known role in `claim` (a dotted path), or None."""
    value: Any = claims
    for part in claim.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        names = value.replace(",", " ").split()
    elif isinstance(value, list):
        names = [v for v in value if isinstance(v, str)]
    else:
        return None
    return most_privileged(names)


@dataclass(frozen=True, slots=True)
class OidcResult:
    subject: str | None = None    # set when the token is valid
    role: str | None = None       # None with a subject: a valid token without a known role (403)
    reason: str = ""              # why it was refused (no token material)


class OidcVerifier:
    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str = "",
        audience: str = "",
        role_claim: str = "roles",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self._monotonic = monotonic
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(self.jwks_url) as r:
                r.raise_for_status()
                data = json.loads(await r.text())
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in data.get("keys", []) if isinstance(data, dict) else []:
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(jwk)
            except jwt.PyJWTError as exc:
                log.warning("JWKS key %r skipped: %s", jwk.get("kid"), exc)
                continue
            keys[str(jwk.get("kid", ""))] = key
        self._keys = keys
        log.info("OIDC signing keys loaded from %s: %d", self.jwks_url, len(keys))

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        key = self._find(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._find(kid)  # another request fetched meanwhile
            if key is not None:
                return key
            now = self._monotonic()
            if self._fetched_at is not None and now - self._fetched_at < REFRESH_MIN_S:
                return None
            self._fetched_at = now
            try:
                await self._fetch()
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                log.warning("could not fetch the OIDC signing keys from %s: %s", self.jwks_url, exc)
            return self._find(kid)

    def _find(self, kid: str) -> jwt.PyJWK | None:
        if kid:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def verify(self, token: str) -> OidcResult:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return OidcResult(reason="malformed token")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            return OidcResult(reason="algorithm not allowed")
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else "")
        if key is None:
            return OidcResult(reason="unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[str(alg)],
                audience=self.audience or None,
                issuer=self.issuer or None,
                leeway=LEEWAY_S,
                options={"require": ["exp", "sub"], "verify_aud": bool(self.audience)},
            )
        except jwt.ExpiredSignatureError:
            return OidcResult(reason="token expired")
        except jwt.InvalidIssuerError:
            return OidcResult(reason="wrong issuer")
        except jwt.InvalidAudienceError:
            return OidcResult(reason="wrong audience")
        except jwt.PyJWTError as exc:
            return OidcResult(reason=f"invalid token ({type(exc).__name__})")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            return OidcResult(reason="no subject")
        return OidcResult(subject=subject, role=role_from_claims(claims, self.role_claim))

"""Operator API keys (ADR 017 §8): key text, the stored `api_key` document, lookup and lifecycle.

A key is `csms_<id>_<secret>`: `id` names the document (16 hex digits), `secret` is 32
random bytes (URL-safe base64). Only HMAC-SHA256(pepper, secret) is stored, so a store
dump gives no usable key; checking a key is one HMAC and a constant-time compare. The
pepper is the runtime's (`CSMS_AUTH_PEPPER`, or `.csms/pepper`): changing it invalidates
every stored key (the bootstrap key `CSMS_API_KEY` is unaffected).

`api_key` document (kind API_KEY, id = key id): `{id, name, role, secret_hmac, created_at,
created_by, expires_at, revoked_at, last_used_at, revision}`; every write is a
compare-and-set on `revision` (put_doc_if), so recording a use can never undo a
revocation that happened meanwhile.

`KeyRing` is what the auth middleware asks: it caches a looked-up document for
KEY_CACHE_S seconds per process (a revoked key stops working on every API pod within
that time; on the pod that revoked it, at once) and writes `last_used_at` at most once
per LAST_USED_EVERY_S per key, never once per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from services.api.roles import ALL_ROLES
from services.common import kinds
from services.common.store.port import DocumentStore
from services.common.timeutil import Clock, parse_ocpp, to_ocpp

__all__ = [
    "KEY_CACHE_S",
    "LAST_USED_EVERY_S",
    "MAX_NAME",
    "ApiKey",
    "KeyRing",
    "create_key",
    "key_from_doc",
    "key_to_doc",
    "key_view",
    "list_keys",
    "parse_key",
    "revoke_key",
    "check_name",
    "secret_hmac",
]

log = logging.getLogger("csms.api.keys")

KEY_PREFIX: Final = "csms_"
KEY_CACHE_S: Final = 5.0          # a revoked key works at most this long on another API pod
LAST_USED_EVERY_S: Final = 60.0   # last_used_at is written at most this often per key
_ID = re.compile(r"[0-9a-f]{16}\Z")
_SECRET = re.compile(r"[A-Za-z0-9_-]{40,64}\Z")
_CACHE_MAX = 10_000
MAX_NAME: Final = 100


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    role: str
    secret_hmac: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    revision: int = 1

    def refusal(self, now: datetime) -> str | None:
        """Why this key may not be used now (None: it may)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.role not in ALL_ROLES:
            return "unknown role"
        return None


def secret_hmac(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def parse_key(token: str) -> tuple[str, str] | None:
    """(id, secret) of a key text `csms_<id>_<secret>`, or None when it is not one."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX):].partition("_")
    if not sep or not _ID.match(key_id) or not _SECRET.match(secret):
        return None
    return key_id, secret


def _ts(value: Any) -> datetime | None:
    return parse_ocpp(value) if isinstance(value, str) and value else None


def key_to_doc(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "secret_hmac": key.secret_hmac,
        "created_at": to_ocpp(key.created_at),
        "created_by": key.created_by,
        "expires_at": to_ocpp(key.expires_at) if key.expires_at else None,
        "revoked_at": to_ocpp(key.revoked_at) if key.revoked_at else None,
        "last_used_at": to_ocpp(key.last_used_at) if key.last_used_at else None,
        "revision": key.revision,
    }


def key_from_doc(doc: dict[str, Any]) -> ApiKey:
    created = _ts(doc.get("created_at"))
    assert created is not None, "api_key document without created_at"
    return ApiKey(
        id=str(doc["id"]),
        name=str(doc.get("name", "")),
        role=str(doc.get("role", "")),
        secret_hmac=str(doc.get("secret_hmac", "")),
        created_at=created,
        created_by=str(doc.get("created_by", "")),
        expires_at=_ts(doc.get("expires_at")),
        revoked_at=_ts(doc.get("revoked_at")),
        last_used_at=_ts(doc.get("last_used_at")),
        revision=int(doc.get("revision", 1)),
    )


def key_view(key: ApiKey) -> dict[str, Any]:
    """What the API shows of a key: everything but the secret's HMAC and the revision."""
    doc = key_to_doc(key)
    del doc["secret_hmac"], doc["revision"]
    return doc


def check_name(name: str) -> str | None:
    """Why `name` cannot name a key, or None. A name is shown in lists, the CLI's table and
    log lines: 1-100 printable characters (`str.isprintable`: no control characters, no
    line or paragraph separators, no invisible format characters such as bidi overrides),
    not only spaces."""
    if not name.strip():
        return "must not be empty or only spaces"
    if len(name) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters"
    if not name.isprintable():
        return "must be printable (no control characters or line breaks)"
    return None


async def create_key(
    docs: DocumentStore, pepper: bytes, *, name: str, role: str, created_by: str, now: datetime,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key, stored; returns it and its text (shown once, never stored). ValueError
    for a name `check_name` refuses or an unknown role (callers check both first)."""
    if role not in ALL_ROLES:
        raise ValueError(f"unknown role {role!r}")
    if (why := check_name(name)) is not None:
        raise ValueError(f"key name {why}")
    for _ in range(3):
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        key = ApiKey(key_id, name, role, secret_hmac(pepper, secret), now, created_by, expires_at)
        if await docs.put_doc_if(kinds.API_KEY, key_id, key_to_doc(key), expected_version=None, version=1):
            log.info("api key %s (%r, role %s) created by %r", key_id, name, role, created_by)
            return key, f"{KEY_PREFIX}{key_id}_{secret}"
    raise RuntimeError("could not find a free api key id")  # 2^64 ids: never in practice


async def list_keys(docs: DocumentStore, *, limit: int = 1000) -> list[ApiKey]:
    """Every key (revoked ones too), newest first."""
    keys = [key_from_doc(d) for d in await docs.list_docs(kinds.API_KEY, limit=limit)]
    return sorted(keys, key=lambda k: (k.created_at, k.id), reverse=True)


async def revoke_key(docs: DocumentStore, key_id: str, now: datetime) -> ApiKey | None:
    """Revoke (idempotent: an already revoked key keeps its revoked_at); None when unknown."""
    for _ in range(5):
        doc = await docs.get_doc(kinds.API_KEY, key_id)
        if doc is None:
            return None
        key = key_from_doc(doc)
        if key.revoked_at is not None:
            return key
        revoked = replace(key, revoked_at=now, revision=key.revision + 1)
        if await docs.put_doc_if(kinds.API_KEY, key_id, key_to_doc(revoked),
                                 expected_version=key.revision, version=revoked.revision):
            log.info("api key %s (%r) revoked", key_id, key.name)
            return revoked
    raise RuntimeError(f"api key {key_id} kept changing while being revoked")


class KeyRing:
    """Checks presented keys against the stored documents, with a short per-process cache."""

    def __init__(self, docs: DocumentStore, pepper: bytes, clock: Clock, *, cache_s: float = KEY_CACHE_S) -> None:
        self._docs = docs
        self._pepper = pepper
        self._clock = clock
        self._cache_s = cache_s
        self._cache: dict[str, tuple[datetime, ApiKey | None]] = {}
        self._touched: dict[str, datetime] = {}

    def forget(self, key_id: str) -> None:
        """Drop a cached lookup (this process created or revoked the key)."""
        self._cache.pop(key_id, None)

    async def _lookup(self, key_id: str, now: datetime) -> ApiKey | None:
        hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < timedelta(seconds=self._cache_s):
            return hit[1]
        doc = await self._docs.get_doc(kinds.API_KEY, key_id)
        key = key_from_doc(doc) if doc is not None else None
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key_id] = (now, key)
        return key

    async def check(self, token: str) -> tuple[ApiKey | None, str]:
        """(the key, "") when `token` is a usable key, else (None, reason): "malformed",
        "unknown key", "wrong secret", "revoked", "expired". Reasons never contain the token."""
        parsed = parse_key(token)
        if parsed is None:
            return None, "malformed"
        key_id, secret = parsed
        now = self._clock()
        key = await self._lookup(key_id, now)
        # an unknown id costs the same HMAC as a known one
        digest = secret_hmac(self._pepper, secret)
        if key is None:
            hmac.compare_digest(digest, "0" * 64)
            return None, "unknown key"
        if not hmac.compare_digest(digest, key.secret_hmac):
            return None, "wrong secret"
        refusal = key.refusal(now)
        if refusal is not None:
            return None, refusal
        await self._touch(key, now)
        return key, ""

    async def _touch(self, key: ApiKey, now: datetime) -> None:
        """Record the use at most once a minute per key; a failure is logged, never raised."""
        every = timedelta(seconds=LAST_USED_EVERY_S)
        last = self._touched.get(key.id) or key.last_used_at
        if last is not None and now - last < every:
            return
        if len(self._touched) >= _CACHE_MAX:
            self._touched.clear()
        self._touched[key.id] = now
        try:
            doc = await self._docs.get_doc(kinds.API_KEY, key.id)
            if doc is None:
                return
            stored = key_from_doc(doc)
            used = replace(stored, last_used_at=now, revision=stored.revision + 1)
            await self._docs.put_doc_if(kinds.API_KEY, key.id, key_to_doc(used),
                                        expected_version=stored.revision, version=used.revision)
        except Exception as exc:  # noqa: BLE001 - recording a use must not fail the call
            log.warning("could not record the use of api key %s: %s", key.id, exc)

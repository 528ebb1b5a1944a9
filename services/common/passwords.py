"""Station passwords (Basic auth, security profiles 1 and 2). See docs/adr/002-station-auth.md.

At rest every password has two forms:
- `password_hash`: scrypt (N=2**14, r=8, p=1, 16-byte salt): safe even if the store
  and the pepper both leak;
- `password_fingerprint`: HMAC-SHA256 keyed with the deployment's pepper (a secret
  that never enters the store) over station id and password: one HMAC per
  verification, so a 10,000-station reconnect storm costs milliseconds of CPU,
  not minutes. A leaked store without the pepper gives nothing to brute-force offline.
When the fingerprint is missing or was made with another pepper, the gateway falls
back to scrypt (off the event loop) and caches the success in memory.
OCPP requires 16-40 character passwords; the CSMS generates 24 random bytes when asked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

__all__ = [
    "hash_password",
    "verify_password_slow",
    "fingerprint",
    "verify_fingerprint",
    "generate_password",
    "load_pepper",
    "MIN_LENGTH",
    "MAX_LENGTH",
]

MIN_LENGTH = 16
MAX_LENGTH = 40
_N, _R, _P = 2**14, 8, 1


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password_slow(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def fingerprint(pepper: bytes, station_id: str, password: str) -> str:
    mac = hmac.new(pepper, station_id.encode() + b"\x00" + password.encode(), hashlib.sha256)
    return "hmac-sha256$" + mac.hexdigest()


def verify_fingerprint(pepper: bytes, station_id: str, password: str, stored: str) -> bool:
    return bool(stored) and hmac.compare_digest(fingerprint(pepper, station_id, password), stored)


def generate_password() -> str:
    """24 random bytes, URL-safe base64 (32 characters, within OCPP's 16-40)."""
    return secrets.token_urlsafe(24)


def load_pepper(env: dict[str, str] | None = None) -> bytes:
    """CSMS_AUTH_PEPPER (hex or text, a Kubernetes secret in production); otherwise a
    random pepper kept in `./.csms/pepper` so embedded mode survives restarts."""
    e = os.environ if env is None else env
    value = e.get("CSMS_AUTH_PEPPER")
    if value:
        return value.encode()
    path = Path(e.get("CSMS_STATE_DIR", ".csms")) / "pepper"
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pepper = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pepper)
    os.replace(tmp, path)
    return path.read_bytes()

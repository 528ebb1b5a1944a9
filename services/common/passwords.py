"""Station passwords (Basic auth, security profiles 1 and 2). See docs/adr/002-station-auth.md.

At rest every password has two forms:
- `password_hash`: scrypt (N=2**14, r=8, p=1, 16-byte salt): safe even if the store
  and the pepper both leak;
- `password_fingerprint`: HMAC-SHA256 keyed with the deployment's pepper (a secret
  that never enters the store) over station id and password: one HMAC per
  verification, so a 10,000-station reconnect storm costs milliseconds of CPU,
  not minutes. A leaked store without the pepper gives nothing to brute-force offline.

A fingerprint names its pepper: `hmac-sha256$<pepper id>$<hex>` (ADR 002, amendment for
issue 11). So a fingerprint made with the current pepper that does not match is a
definitive "wrong password" that costs one HMAC, not an "maybe another pepper" that
needs scrypt: scrypt runs only for a station whose fingerprint is missing, of the old
form without a pepper id (`hmac-sha256$<hex>`, still accepted when it matches), or of
another pepper. The pepper id is 32 bits of scrypt over the pepper: it tells peppers
apart, and testing a guessed pepper against it costs a scrypt per guess (and 32 bits
cannot confirm a guess of a 256-bit pepper anyway).

OCPP requires 16-40 character passwords; the CSMS generates 24 random bytes when asked.
The pepper file `CSMS_STATE_DIR/pepper` is created 0600 in a 0700 directory.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from services.common.config import env_value

__all__ = [
    "hash_password",
    "verify_password_slow",
    "fingerprint",
    "fingerprint_matches",
    "fingerprint_is_current",
    "verify_fingerprint",
    "pepper_id",
    "dummy_fingerprint",
    "generate_password",
    "load_pepper",
    "MIN_LENGTH",
    "MAX_LENGTH",
]

log = logging.getLogger("csms.passwords")

MIN_LENGTH = 16
MAX_LENGTH = 40
_N, _R, _P = 2**14, 8, 1
_SCHEME = "hmac-sha256"


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


@functools.lru_cache(maxsize=8)
def pepper_id(pepper: bytes) -> str:
    """8 hex digits naming the pepper (computed once per process and pepper: one scrypt)."""
    return hashlib.scrypt(pepper, salt=b"csms pepper id", n=_N, r=_R, p=_P, dklen=4).hex()


def _mac(pepper: bytes, station_id: str, password: str) -> str:
    return hmac.new(pepper, station_id.encode() + b"\x00" + password.encode(), hashlib.sha256).hexdigest()


def fingerprint(pepper: bytes, station_id: str, password: str) -> str:
    """`hmac-sha256$<pepper id>$<HMAC-SHA256(pepper, id 0x00 password) hex>`."""
    return f"{_SCHEME}${pepper_id(pepper)}${_mac(pepper, station_id, password)}"


def dummy_fingerprint(pepper: bytes) -> str:
    """A current-pepper fingerprint no password has: what an unknown station's attempt is
    compared with, so that it costs what a wrong password costs."""
    return f"{_SCHEME}${pepper_id(pepper)}${'0' * 64}"


def fingerprint_is_current(pepper: bytes, stored: str) -> bool:
    return stored.startswith(f"{_SCHEME}${pepper_id(pepper)}$")


def fingerprint_matches(pepper: bytes, computed: str, stored: str) -> bool | None:
    """`computed` = fingerprint(pepper, id, password) of an attempt; `stored` a station's.
    True: the same password. False: `stored` was made with this pepper and differs, so the
    password is wrong. None: cannot tell from the fingerprint (none stored, another pepper,
    or the old form without a pepper id that does not match): only the scrypt hash can."""
    if not stored:
        return None
    if fingerprint_is_current(pepper, stored):
        return hmac.compare_digest(computed.encode(), stored.encode("utf-8", "replace"))
    parts = stored.split("$")
    if len(parts) == 2 and parts[0] == _SCHEME:  # the form before pepper ids
        mac = computed.rsplit("$", 1)[-1]
        if hmac.compare_digest(mac.encode(), parts[1].encode("utf-8", "replace")):
            return True
    return None


def verify_fingerprint(pepper: bytes, station_id: str, password: str, stored: str) -> bool:
    return fingerprint_matches(pepper, fingerprint(pepper, station_id, password), stored) is True


def generate_password() -> str:
    """24 random bytes, URL-safe base64 (32 characters, within OCPP's 16-40)."""
    return secrets.token_urlsafe(24)


def _private_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700; an existing directory is left as it is."""
    if path.is_dir():
        return
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask; this is exact


def load_pepper(env: dict[str, str] | None = None) -> bytes:
    """CSMS_AUTH_PEPPER (hex or text, a Kubernetes secret in production); otherwise a
    random pepper kept in `./.csms/pepper` so embedded mode survives restarts. The file is
    created 0600 (its directory 0700 when created here), written whole before it appears
    (first writer wins when two processes start at once); a pepper file another version
    left readable by others is tightened to 0600."""
    e = os.environ if env is None else env
    value = str(env_value("CSMS_AUTH_PEPPER", e))
    if value:
        return value.encode()
    path = Path(str(env_value("CSMS_STATE_DIR", e))) / "pepper"
    if not path.exists():
        _private_dir(path.parent)
        tmp = path.with_name(f".pepper.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # atomic, and fails if another process got there first
            except FileExistsError:
                pass
            except OSError:  # a filesystem without hard links: last writer wins instead
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("pepper file %s was readable by others (mode %o); now 0600", path, mode)
        os.chmod(path, 0o600)
    return path.read_bytes()

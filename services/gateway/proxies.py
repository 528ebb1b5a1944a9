"""Who is really connecting: forwarded headers believed only from trusted proxies (issue 11).

Behind a load balancer or a TLS-terminating proxy the TCP peer is the proxy, and what the
station's address was, whether it used TLS and which client certificate it presented arrive
as request headers. Anyone can write those headers, so they count only when the TCP peer
is in `CSMS_TRUSTED_PROXIES`:

- the client address is the TCP peer, or, from a trusted peer, the right-most
  `X-Forwarded-For` entry that is not itself a trusted proxy. Each proxy appends the
  address it saw, so entries are believed from the right for as long as they were written
  by trusted hops; the left-most entries are whatever the client sent (a client that puts
  a victim's address there would otherwise lock the victim out or escape its own limits);
- `X-Forwarded-Proto: https` means TLS to the proxy (every listed value must be `https`:
  a hop that spoke plain HTTP makes the whole path plain);
- the client-certificate header (`CSMS_CLIENT_CERT_HEADER`) carries the station's
  certificate as URL-encoded PEM (nginx `$ssl_client_escaped_cert`) or as Envoy's
  `X-Forwarded-Client-Cert` with a `Cert="..."` field (the right-most element: what our
  peer's own client presented). Like X-Forwarded-For, what the proxy wrote is what comes
  last: of several such header lines only the last counts (a proxy that appends its own
  line must not let a client's line in front of it win), and of an XFCC value only the
  right-most element. An empty header is "no certificate"; anything else that holds no
  certificate (garbage, a CSR, more than a chain's worth of bytes) is a certificate that
  cannot be believed: the handshake refuses it (403 `certificate_invalid`) rather than
  carry on as if none had been sent. The gateway still verifies a certificate it can read
  (services/gateway/tls.py).

Everything here is pure; `forwarded(...)` is what the handshake calls.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from services.common.forwarded import TrustedProxies, client_address
from services.common.forwarded import entries as _entries

__all__ = ["TrustedProxies", "Forwarded", "client_address", "forwarded_https", "client_cert_pem", "forwarded"]

# the address rule is shared with the API (services/common/forwarded.py)

_MAX_HEADER_CERT = 16 * 1024   # a certificate chain from a proxy; more is not a certificate
_XFCC_KEY = re.compile(r"(?i)(by|hash|cert|chain|subject|uri|dns)=")   # an Envoy XFCC value starts so


def forwarded_https(peer: str, forwarded_proto: Sequence[str], proxies: TrustedProxies) -> bool:
    """A trusted proxy says the client reached it over TLS (every hop listed `https`)."""
    if not proxies.trusts(peer):
        return False
    values = [v.strip().lower() for v in _entries(forwarded_proto)]
    return bool(values) and all(v == "https" for v in values)


def _xfcc_elements(value: str) -> list[str]:
    """Split an XFCC header into its comma-separated elements, keeping quoted commas."""
    out, cur, quoted, escaped = [], [], False, False
    for ch in value:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
        elif ch == '"':
            cur.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [e.strip() for e in out if e.strip()]


def _xfcc_field(element: str, name: str) -> str | None:
    """The value of `name=` in one XFCC element (`key=value;key="quoted"`)."""
    quoted = False
    cur: list[str] = []
    parts: list[str] = []
    for ch in element:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    for part in parts:
        key, sep, val = part.strip().partition("=")
        if sep and key.strip().lower() == name.lower():
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1].replace('\\"', '"')
            return val
    return None


def client_cert_pem(value: str | None) -> bytes | None:
    """The PEM text of a client-certificate header: URL-encoded PEM, or an Envoy XFCC
    header (`Cert="<URL-encoded PEM>"` of the right-most element). None when the header
    is absent or empty, or its right-most XFCC element has no `Cert` field (the proxy
    passes no certificate); ValueError (the reason) when it holds something else than a
    certificate."""
    if value is None or not value.strip():
        return None
    if len(value) > 3 * _MAX_HEADER_CERT:
        raise ValueError("header too large")
    text = value.strip()
    if _XFCC_KEY.match(text):
        elements = _xfcc_elements(text)
        found = _xfcc_field(elements[-1], "Cert") if elements else None
        if not found:
            return None
        text = found
    pem = unquote(text)   # not unquote_plus: '+' is base64, proxies escape it as %2B
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("not a PEM certificate")
    return pem.encode("ascii", "replace")


class _Headers(Protocol):
    """The part of a (multi-)mapping of headers `forwarded` reads (aiohttp's CIMultiDictProxy)."""

    def get(self, key: str) -> str | None: ...

    def getall(self, key: str, default: list[str]) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What the handshake believes about the client: its address, whether it used TLS to a
    trusted proxy, the certificate such a proxy passed on (PEM), and whether the TCP peer
    was a trusted proxy at all (`client_cert_error`: the proxy's certificate header could
    not be read)."""

    remote: str
    https: bool = False
    client_cert: bytes | None = None
    via_proxy: bool = False
    client_cert_error: str = ""   # the certificate header held no certificate: why


def forwarded(peer: str, headers: _Headers, proxies: TrustedProxies, cert_header: str = "") -> Forwarded:
    """The `Forwarded` view of one request from TCP peer `peer`."""
    if not proxies.trusts(peer):
        return Forwarded(peer)
    cert, error = None, ""
    if cert_header:
        lines = headers.getall(cert_header, [])
        try:
            cert = client_cert_pem(lines[-1] if lines else None)   # the last line: the proxy's
        except ValueError as exc:
            error = str(exc)
    return Forwarded(
        remote=client_address(peer, headers.getall("X-Forwarded-For", []), proxies),
        https=forwarded_https(peer, headers.getall("X-Forwarded-Proto", []), proxies),
        client_cert=cert,
        via_proxy=True,
        client_cert_error=error,
    )

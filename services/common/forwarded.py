"""Forwarded client addresses, believed only from trusted proxies (ADR 017).

Behind a load balancer the TCP peer is the proxy; the client's address arrives in
`X-Forwarded-For`, which anyone can write. So the client address is the TCP peer, or, when
the peer is in `CSMS_TRUSTED_PROXIES`, the right-most `X-Forwarded-For` entry that is not
itself a trusted proxy: each proxy appends the address it saw, so entries are believed
from the right for as long as trusted hops wrote them; the left-most are whatever the
client sent (a client that wrote a victim's address there would otherwise lock the victim
out, or escape its own limits). The gateway (station handshakes, services/gateway/proxies.py)
and the API (wrong-credential throttling) both use this one rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["TrustedProxies", "client_address", "address_of", "entries"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_of(text: str) -> _Address | None:
    """An IP address from an X-Forwarded-For entry or a peer name: `1.2.3.4`, `1.2.3.4:80`,
    `::1`, `[::1]:80`; IPv4-mapped IPv6 addresses as IPv4. None if it is none of these."""
    item = text.strip()
    if item.startswith("["):
        item = item[1:].split("]", 1)[0]
    elif item.count(":") == 1:
        item = item.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(item)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The networks whose forwarded headers are believed (CSMS_TRUSTED_PROXIES)."""

    networks: tuple[_Network, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> TrustedProxies:
        return cls(tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        if not self.networks:
            return False
        addr = address_of(address)
        return addr is not None and any(addr.version == n.version and addr in n for n in self.networks)


def entries(values: Sequence[str]) -> list[str]:
    """All X-Forwarded-For entries in order, over repeated headers (which join with ',')."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def client_address(peer: str, forwarded_for: Sequence[str], proxies: TrustedProxies) -> str:
    """The client's address: `peer` unless it is a trusted proxy; then the right-most
    X-Forwarded-For entry that is not a trusted proxy (or the left-most entry when all are
    trusted). An entry that is not an address stops the walk at the last trusted hop."""
    current = peer
    if not proxies.trusts(current):
        return current
    for entry in reversed(entries(forwarded_for)):
        addr = address_of(entry)
        if addr is None:
            break
        current = str(addr)
        if not proxies.trusts(current):
            break
    return current

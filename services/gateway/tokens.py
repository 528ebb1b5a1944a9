"""Token status lookups for Authorize and transaction messages, through a TTL cache.

Stations authorize the same tokens again and again (and every transaction message
carries one): the cache keeps a store round trip off most of those answers. While the
store is unreachable the last known answer, however old, is served if there is one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.common.errors import StoreError
from services.common.store.port import Token, TokenStore
from services.common.timeutil import Clock
from services.gateway.limits import TTLCache

__all__ = ["TokenCache", "token_status_of"]

_MISSING: Any = object()
_TOKEN_STATUSES = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})


def token_status_of(token: Token | None, now: datetime) -> str:
    if token is None:
        return "Invalid"
    if token.expires_at is not None and token.expires_at <= now:
        return "Expired"
    return token.status if token.status in _TOKEN_STATUSES else "Invalid"


class TokenCache:
    """`status(id_token)`: Accepted / Blocked / Expired / Invalid (unknown -> Invalid)."""

    __slots__ = ("_store", "_clock", "_tokens")

    def __init__(self, store: TokenStore, clock: Clock, *, size: int, ttl_s: float) -> None:
        self._store = store
        self._clock = clock
        self._tokens: TTLCache[str, Token | None] = TTLCache(size, ttl_s)

    async def status(self, id_token: str) -> str:
        """A store failure serves the last known answer if there is one, else raises."""
        if self._tokens.has_fresh(id_token):
            return token_status_of(self._tokens.get(id_token), self._clock())
        try:
            token = await self._store.get_token(id_token)
        except StoreError:
            stale = self._tokens.get(id_token, _MISSING, stale=True)
            if stale is _MISSING:
                raise
            return token_status_of(stale, self._clock())
        self._tokens.put(id_token, token)
        return token_status_of(token, self._clock())

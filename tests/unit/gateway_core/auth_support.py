"""Shared pieces of the authentication tests: an in-memory station directory that counts
its reads and writes, a settable monotonic clock, stations with known passwords."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from services.common import passwords
from services.common.store.port import Station, Token
from services.gateway.auth import Authenticator
from services.gateway.limits import AuthLimits

PEPPER = b"test-pepper"
PW = "correct-horse-battery-staple"
NEW_PW = "the-rotated-password-0001"
UTC = timezone.utc


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Store:
    def __init__(self) -> None:
        self.stations: dict[str, Station] = {}
        self.tokens: dict[str, Token] = {}
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.reads = 0
        self.batches: list[list[str]] = []  # the ids of each get_stations call
        self.doc_reads = 0
        self.writes: list[Station] = []
        self.fail: Exception | None = None
        self.fail_writes: Exception | None = None

    async def get_station(self, sid: str) -> Station | None:
        self.reads += 1
        if self.fail:
            raise self.fail
        return self.stations.get(sid)

    async def get_stations(self, sids: Sequence[str]) -> dict[str, Station]:
        self.batches.append(list(sids))
        found = [await self.get_station(sid) for sid in sids]  # each counted, and gated in SlowStore
        return {st.id: st for st in found if st is not None}

    async def put_station(self, st: Station) -> None:
        if self.fail_writes:
            raise self.fail_writes
        self.writes.append(st)
        self.stations[st.id] = st

    async def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        self.doc_reads += 1
        if self.fail:
            raise self.fail
        return self.docs.get((kind, doc_id))

    async def get_token(self, id_token: str) -> Token | None:
        self.reads += 1
        if self.fail:
            raise self.fail
        return self.tokens.get(id_token)


def authenticator(store: Store, *, clock: Clock | None = None, open_registration: bool = False,
                  **limits: Any) -> Authenticator:
    return Authenticator(store, pepper=PEPPER, clock=lambda: datetime.now(UTC), open_registration=open_registration,
                         limits=AuthLimits(**limits), now=clock or Clock())


def station(sid: str = "CP1", *, password: str = PW, fingerprint: bool = True, slow_hash: bool = True,
            **kw: Any) -> Station:
    return Station(
        id=sid,
        password_hash=passwords.hash_password(password) if slow_hash else "",
        password_fingerprint=passwords.fingerprint(PEPPER, sid, password) if fingerprint else "",
        **kw,
    )

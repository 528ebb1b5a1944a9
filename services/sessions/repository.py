"""The sessions processor's ports onto the store, and their one adapter.

The handlers (services/sessions/handlers.py) see the documents they own as domain values
through three narrow Protocols, never the `Store` itself:

- `SessionRepository`: session documents (read many at once, written many at once,
  versioned, no read-before-write), the token index next to them (kind TOKEN_SESSION)
  and their samples (appended, read back for a rebuild).
- `StationRecords`: station status documents (command records are the stations
  processor's, ADR 016).
- `LifecycleRepository`: the open-sessions index of each station and the remote start
  commands.

`StoreRepository` implements all three on a `services.common.store.port.Store` with the
mappers of services/sessions/documents.py. It keeps the `SessionCache`: a session
document this process wrote last is given back as the session it was made from instead
of being decoded again (decoding was ~1/6 of the processor's CPU per record).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from services.common.kinds import OPEN_SESSIONS, REMOTE_START, SESSION, STATION_STATUS, TOKEN_SESSION
from services.common.store.port import DocumentStore, DocWrite, SampleStore
from services.sessions.documents import (
    is_legacy_doc,
    legacy_samples,
    open_sessions_from_doc,
    open_sessions_to_doc,
    remote_start_from_doc,
    remote_start_to_doc,
    sample_from_row,
    sample_to_row,
    session_from_doc,
    session_to_doc,
    station_status_from_doc,
    station_status_to_doc,
    token_session_to_doc,
)
from services.sessions.domain.lifecycle import OpenSessions, RemoteStartCommand
from services.sessions.domain.session import Sample, Session
from services.sessions.domain.station_status import StationStatus

__all__ = [
    "StoredSession",
    "SessionRepository",
    "StationRecords",
    "LifecycleRepository",
    "SessionCache",
    "StoreRepository",
]


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as read from its document. `legacy`: the samples a document from before
    ADR 015 carried inside it (None for a current document): the processor appends them
    to the sample store and writes the session back without them."""

    session: Session
    legacy: tuple[Sample, ...] | None = None


class SessionRepository(Protocol):
    async def get_sessions(self, ids: Sequence[str]) -> dict[str, StoredSession]:
        """The stored sessions of `ids` (missing ones are absent)."""
        ...

    async def get_session(self, session_id: str) -> Session | None: ...

    async def put_sessions(self, sessions: Sequence[Session]) -> None:
        """Write many sessions without reading first: each keeps the highest version."""
        ...

    async def put_token_sessions(self, sessions: Sequence[Session]) -> None:
        """The token index entries of these sessions (kind TOKEN_SESSION, parent = the id
        token), versioned like the sessions (no read)."""
        ...

    async def append_samples(self, session_id: str, samples: Sequence[Sample]) -> None:
        """Idempotent: a sample's key is (timestamp, measurand, phase)."""
        ...

    async def append_samples_many(self, items: Sequence[tuple[str, Sequence[Sample]]]) -> None:
        """`append_samples` of several sessions (a batch's), in as few store requests as it allows."""
        ...

    async def read_samples(self, session_id: str) -> list[Sample]:
        """All of the session's samples, in key order."""
        ...


class StationRecords(Protocol):
    async def get_statuses(self, station_ids: Sequence[str]) -> dict[str, StationStatus]: ...

    async def get_status(self, station_id: str) -> StationStatus | None: ...

    async def put_statuses(self, statuses: Sequence[StationStatus]) -> None:
        """Versioned, no read: the highest version wins."""
        ...


class LifecycleRepository(Protocol):
    async def get_open_sessions(self, station_id: str) -> OpenSessions | None: ...

    async def put_open_sessions(self, index: OpenSessions) -> None: ...

    async def list_open_sessions(self, limit: int) -> list[OpenSessions]: ...

    async def get_remote_start(self, doc_id: str) -> RemoteStartCommand | None: ...

    async def put_remote_start(self, doc_id: str, command: RemoteStartCommand) -> None: ...


class SessionCache:
    """The sessions this process wrote last, by id: (version, a 128-bit BLAKE2b digest of
    the document's JSON, the session). A fetched document whose JSON has that digest is
    that session: it is taken from here instead of decoded. Anything else (another writer
    after a rebalance, an older or newer version, a legacy document) misses and is
    decoded. Bounded by CSMS_SESSIONS_CACHE_ENTRIES (0: off; ~5 KB per entry); when full it
    is emptied (the next batches refill it with the sessions that are still sending)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max(int(max_entries), 0)
        self._entries: dict[str, tuple[int, bytes, Session]] = {}
        self.hits = self.misses = 0

    @staticmethod
    def digest(raw: bytes) -> bytes:
        return hashlib.blake2b(raw, digest_size=16).digest()

    def get(self, sid: str, doc: Mapping[str, Any]) -> Session | None:
        hit = self._entries.get(sid)
        if hit is not None and hit[0] == doc.get("version"):
            try:
                if self.digest(orjson.dumps(doc)) == hit[1]:
                    self.hits += 1
                    return hit[2]
            except TypeError:
                pass
        self.misses += 1
        return None

    def put(self, s: Session, raw: bytes) -> None:
        """`raw`: the JSON of the document written for `s` (orjson.dumps of it)."""
        if not self.max_entries:
            return
        if len(self._entries) >= self.max_entries and s.id not in self._entries:
            self._entries.clear()
        self._entries[s.id] = (s.version, self.digest(raw), s)

    def forget(self, sid: str | None = None) -> None:
        if sid is None:
            self._entries.clear()
        else:
            self._entries.pop(sid, None)

    def __len__(self) -> int:
        return len(self._entries)


class _DocsAndSamples(DocumentStore, SampleStore, Protocol):
    """What the adapter needs of a store."""


class StoreRepository:
    """`SessionRepository`, `StationRecords` and `LifecycleRepository` on a store."""

    def __init__(self, store: _DocsAndSamples, cache: SessionCache | None = None) -> None:
        self._store = store
        self.cache = cache if cache is not None else SessionCache(0)

    # -- sessions and samples --
    def _stored(self, sid: str, doc: dict[str, Any]) -> StoredSession:
        cached = self.cache.get(sid, doc)
        if cached is not None:
            return StoredSession(cached)
        session = session_from_doc(doc)
        return StoredSession(session, tuple(legacy_samples(doc)) if is_legacy_doc(doc) else None)

    async def get_sessions(self, ids: Sequence[str]) -> dict[str, StoredSession]:
        docs = await self._store.get_docs(SESSION, ids)
        return {sid: self._stored(sid, doc) for sid, doc in docs.items()}

    async def get_session(self, session_id: str) -> Session | None:
        doc = await self._store.get_doc(SESSION, session_id)
        return None if doc is None else self._stored(session_id, doc).session

    async def put_sessions(self, sessions: Sequence[Session]) -> None:
        if not sessions:
            return
        docs = [session_to_doc(s) for s in sessions]
        await self._store.put_docs(SESSION, [
            DocWrite(s.id, doc, parent=s.station_id, version=s.version) for s, doc in zip(sessions, docs)
        ])
        cache = self.cache
        if cache.max_entries:
            for s, doc in zip(sessions, docs):
                cache.put(s, orjson.dumps(doc))

    async def put_token_sessions(self, sessions: Sequence[Session]) -> None:
        if sessions:
            await self._store.put_docs(TOKEN_SESSION, [
                DocWrite(s.id, token_session_to_doc(s), parent=s.id_token, version=s.version) for s in sessions
            ])

    async def append_samples(self, session_id: str, samples: Sequence[Sample]) -> None:
        await self._store.append_samples(session_id, [sample_to_row(x) for x in samples])

    async def append_samples_many(self, items: Sequence[tuple[str, Sequence[Sample]]]) -> None:
        rows = [(sid, [sample_to_row(x) for x in samples]) for sid, samples in items if samples]
        if rows:
            await self._store.append_samples_many(rows)

    async def read_samples(self, session_id: str) -> list[Sample]:
        return [sample_from_row(r) for r in await self._store.read_samples(session_id)]

    # -- station status --
    async def get_statuses(self, station_ids: Sequence[str]) -> dict[str, StationStatus]:
        docs = await self._store.get_docs(STATION_STATUS, station_ids)
        return {sid: station_status_from_doc(doc) for sid, doc in docs.items()}

    async def get_status(self, station_id: str) -> StationStatus | None:
        doc = await self._store.get_doc(STATION_STATUS, station_id)
        return None if doc is None else station_status_from_doc(doc)

    async def put_statuses(self, statuses: Sequence[StationStatus]) -> None:
        if statuses:
            await self._store.put_docs(STATION_STATUS, [
                DocWrite(s.station_id, station_status_to_doc(s), version=s.version) for s in statuses
            ])

    # -- lifecycle --
    async def get_open_sessions(self, station_id: str) -> OpenSessions | None:
        doc = await self._store.get_doc(OPEN_SESSIONS, station_id)
        return None if doc is None else open_sessions_from_doc(doc)

    async def put_open_sessions(self, index: OpenSessions) -> None:
        await self._store.put_doc(
            OPEN_SESSIONS, index.station_id, open_sessions_to_doc(index), parent=index.station_id, version=index.version
        )

    async def list_open_sessions(self, limit: int) -> list[OpenSessions]:
        return [open_sessions_from_doc(d) for d in await self._store.list_docs(OPEN_SESSIONS, limit=limit)]

    async def get_remote_start(self, doc_id: str) -> RemoteStartCommand | None:
        doc = await self._store.get_doc(REMOTE_START, doc_id)
        return None if doc is None else remote_start_from_doc(doc)

    async def put_remote_start(self, doc_id: str, command: RemoteStartCommand) -> None:
        await self._store.put_doc(
            REMOTE_START, doc_id, remote_start_to_doc(command), parent=command.station_id, version=command.version
        )

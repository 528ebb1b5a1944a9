"""Local authorization list documents (ADR 018 §2): LOCAL_LIST, LOCAL_LIST_SYNC, TOKENS_REVISION.

- LOCAL_LIST (the API's): a station's desired list in two documents, both written with
  compare-and-set (`put_doc_if`) at the list's `desired_version`:
  - the header (id = station id, parent `HEADER_PARENT`): mode (explicit | all | groups),
    groups, entry count, `desired_version`, a content hash; small, so the sync loop lists
    every header each tick without reading entries;
  - the entries (id = `<station>/entries`, parent `ENTRIES_PARENT`): the explicit entries
    (empty for a token-store rule). Written first: of two API calls racing, the one
    whose entries write lands writes the header; the sync loop uses entries only when
    their version is the header's.
  The desired version is bumped only when the content (mode, groups, entries) changed.
- LOCAL_LIST_SYNC (stations-drivers'): `SyncState` per station (id = station id),
  written with compare-and-set on its `revision` before any command is sent, so of two
  processor replicas only one sends.
- TOKENS_REVISION (the API's): one document, id `TOKENS_REVISION_ID`, whose `revision` is
  bumped (compare-and-set) on every token create / replace / delete.

Instants are `to_ocpp` text.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from services.common import kinds
from services.common.store.port import DocumentStore
from services.common.timeutil import Clock, parse_ocpp, to_ocpp
from services.stations.domain.local_lists import MODE_EXPLICIT, ListEntry, Plan, Source, SyncState

__all__ = [
    "ENTRIES_PARENT",
    "HEADER_PARENT",
    "TOKENS_REVISION_ID",
    "DesiredList",
    "bump_tokens_revision",
    "content_hash",
    "desired_from_docs",
    "entries_doc_id",
    "entry_from_dict",
    "entry_to_dict",
    "header_to_doc",
    "entries_to_doc",
    "read_tokens_revision",
    "sync_from_doc",
    "sync_to_doc",
    "write_sync",
]

HEADER_PARENT = "list"
ENTRIES_PARENT = "entries"
TOKENS_REVISION_ID = "tokens"
_BUMP_TRIES = 50  # token writes racing (a bulk import) each retry after a short random pause


def entries_doc_id(station_id: str) -> str:
    return f"{station_id}/entries"


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else to_ocpp(dt)


def _dt(value: Any) -> datetime | None:
    return None if not value else parse_ocpp(str(value))


def entry_to_dict(e: ListEntry) -> dict[str, Any]:
    """`{"id_token", "status"?, "expires_at"?, "group_id"?, "id_token_type"?}` (no status:
    a removal): the shape of the API and of the command vocabulary."""
    return dict(e.params())


def entry_from_dict(d: Mapping[str, Any]) -> ListEntry:
    status = d.get("status")
    group = d.get("group_id")
    kind = d.get("id_token_type")
    return ListEntry(str(d["id_token"]), None if status is None else str(status), _dt(d.get("expires_at")),
                     None if group is None else str(group), None if kind is None else str(kind))


@dataclass(frozen=True, slots=True)
class DesiredList:
    station_id: str
    mode: str = MODE_EXPLICIT
    groups: tuple[str, ...] = ()
    entries: tuple[ListEntry, ...] = ()
    entry_count: int = 0
    desired_version: int = 0
    content_hash: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


def content_hash(mode: str, groups: Sequence[str], entries: Sequence[ListEntry]) -> str:
    """A hash of what the operator asked for (order of entries and groups does not matter)."""
    body = orjson.dumps([mode, sorted(groups), sorted((e.id_token, e.fingerprint()) for e in entries)])
    return hashlib.sha256(body).hexdigest()[:32]


def header_to_doc(d: DesiredList) -> dict[str, Any]:
    return {
        "station_id": d.station_id, "mode": d.mode, "groups": list(d.groups), "entry_count": d.entry_count,
        "desired_version": d.desired_version, "content_hash": d.content_hash,
        "created_at": _iso(d.created_at), "updated_at": _iso(d.updated_at),
    }


def entries_to_doc(d: DesiredList) -> dict[str, Any]:
    return {"station_id": d.station_id, "desired_version": d.desired_version,
            "entries": [entry_to_dict(e) for e in d.entries]}


def desired_from_docs(header: Mapping[str, Any], entries: Mapping[str, Any] | None) -> DesiredList:
    """The desired list of a header and (when read) its entries document."""
    return DesiredList(
        station_id=str(header["station_id"]), mode=str(header.get("mode") or MODE_EXPLICIT),
        groups=tuple(str(g) for g in header.get("groups") or ()),
        entries=() if entries is None else tuple(entry_from_dict(x) for x in entries.get("entries") or ()),
        entry_count=int(header.get("entry_count") or 0), desired_version=int(header.get("desired_version") or 0),
        content_hash=str(header.get("content_hash") or ""), created_at=_dt(header.get("created_at")),
        updated_at=_dt(header.get("updated_at")),
    )


# -- tokens revision ----------------------------------------------------------------------

async def read_tokens_revision(docs: DocumentStore) -> int:
    doc = await docs.get_doc(kinds.TOKENS_REVISION, TOKENS_REVISION_ID)
    return 0 if doc is None else int(doc.get("revision") or 0)


async def bump_tokens_revision(docs: DocumentStore, clock: Clock) -> int:
    """Revision + 1 (compare-and-set, re-read on a lost race); the new revision."""
    for _ in range(_BUMP_TRIES):
        doc = await docs.get_doc(kinds.TOKENS_REVISION, TOKENS_REVISION_ID)
        current = None if doc is None else int(doc.get("revision") or 0)
        new = (current or 0) + 1
        if await docs.put_doc_if(kinds.TOKENS_REVISION, TOKENS_REVISION_ID,
                                 {"revision": new, "updated_at": to_ocpp(clock())},
                                 expected_version=current, version=new):
            return new
        await asyncio.sleep(random.uniform(0.001, 0.02))
    raise RuntimeError("tokens revision: too many concurrent writers")


# -- sync state ---------------------------------------------------------------------------

def _plan_out(p: Plan | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"update_type": p.update_type, "chunk_size": p.chunk_size, "accepted": p.accepted,
            "ops": [entry_to_dict(e) for e in p.ops]}


def _plan_in(d: Any) -> Plan | None:
    if not isinstance(d, Mapping):
        return None
    return Plan(str(d.get("update_type") or "Full"), tuple(entry_from_dict(x) for x in d.get("ops") or ()),
                max(1, int(d.get("chunk_size") or 1)), int(d.get("accepted") or 0))


def _source_out(s: Source | None) -> dict[str, Any] | None:
    return None if s is None else {"list_version": s.list_version, "tokens_revision": s.tokens_revision}


def _source_in(d: Any) -> Source | None:
    if not isinstance(d, Mapping):
        return None
    tr = d.get("tokens_revision")
    return Source(int(d.get("list_version") or 0), None if tr is None else int(tr))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def sync_to_doc(s: SyncState) -> dict[str, Any]:
    return {
        "station_id": s.station_id, "status": s.status, "revision": s.revision,
        "source": _source_out(s.source), "target_version": s.target_version,
        "confirmed_version": s.confirmed_version,
        "confirmed": None if s.confirmed is None else dict(s.confirmed), "verified": s.verified,
        "plan": _plan_out(s.plan), "command_id": s.command_id, "command_type": s.command_type,
        "sent_at": _iso(s.sent_at), "attempts": s.attempts, "last_error": s.last_error,
        "next_attempt_at": _iso(s.next_attempt_at), "max_per_message": s.max_per_message,
        "max_source": s.max_source, "probed": s.probed, "skipped": s.skipped,
        "updated_at": _iso(s.updated_at), "confirmed_at": _iso(s.confirmed_at),
    }


def sync_from_doc(d: Mapping[str, Any]) -> SyncState:
    confirmed = d.get("confirmed")
    error = d.get("last_error")
    return SyncState(
        station_id=str(d["station_id"]), status=str(d.get("status") or "pending"),
        revision=int(d.get("revision") or 0), source=_source_in(d.get("source")),
        target_version=_opt_int(d.get("target_version")), confirmed_version=_opt_int(d.get("confirmed_version")),
        confirmed=None if not isinstance(confirmed, Mapping) else {str(k): str(v) for k, v in confirmed.items()},
        verified=bool(d.get("verified")), plan=_plan_in(d.get("plan")), command_id=str(d.get("command_id") or ""),
        command_type=str(d.get("command_type") or ""), sent_at=_dt(d.get("sent_at")),
        attempts=int(d.get("attempts") or 0), last_error=None if error is None else str(error),
        next_attempt_at=_dt(d.get("next_attempt_at")), max_per_message=_opt_int(d.get("max_per_message")),
        max_source=str(d.get("max_source") or ""), probed=bool(d.get("probed")), skipped=int(d.get("skipped") or 0),
        updated_at=_dt(d.get("updated_at")), confirmed_at=_dt(d.get("confirmed_at")),
    )


async def write_sync(docs: DocumentStore, before: SyncState | None, after: SyncState) -> SyncState | None:
    """Compare-and-set: `after` at `before`'s revision + 1 (a first write expects no
    document: revision 0, never written); the state written, or None when another writer
    moved it first."""
    expected = None if before is None or before.revision == 0 else before.revision
    new = (0 if before is None else before.revision) + 1
    moved = replace(after, revision=new)
    ok = await docs.put_doc_if(kinds.LOCAL_LIST_SYNC, moved.station_id, sync_to_doc(moved),
                               expected_version=expected, version=new)
    return moved if ok else None

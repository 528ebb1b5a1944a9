"""A station's local authorization list (ADR 018 §2): /api/v1/stations/{id}/local-list.

- `PUT` states the desired list: explicit `entries` (each `{id_token, status?, expires_at?,
  group_id?, id_token_type?}`, ids unique, at most `MAX_ENTRIES`) or `sync`: `"all"` (every
  token of /api/v1/tokens) or a list of group ids (the tokens of those groups). It writes the
  LOCAL_LIST documents (services/stations/local_list_documents.py) and bumps the desired
  version only when the content changed; 201 the first time, 200 after.
- `DELETE` states an empty list (the station's list is cleared by a Full update).
- `GET` shows the desired and confirmed versions and the sync state the stations-drivers
  stage keeps (LOCAL_LIST_SYNC); `?entries=true` adds the desired entries (at most `limit`,
  by id token).

Nothing is sent from here: the sync loop (services/stations/drivers/local_lists.py) sends
SendLocalList and GetLocalListVersion at its next tick while the station is connected.
Token changes through /api/v1/tokens bump TOKENS_REVISION (`bump_tokens_revision`), which
lists that follow the token store pick up the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiohttp import web

from services.api.auth import API_PREFIX
from services.api.context import ApiContext, ctx_of
from services.api.errors import ApiError, conflict, not_found, validation_error
from services.api.openapi_parts import (
    closed_object,
    R400, R401, R404, NULL_INT, NULL_STR, NULL_TS, TS, json_content, path_param, query, ref,
)
from services.api.validation import DEFAULT_LIMIT, MAX_LIMIT, Validator, query_limit, read_json
from services.common import kinds
from services.common.store.port import Token
from services.common.timeutil import to_ocpp
from services.stations.domain.local_lists import (
    ENTRY_STATUSES,
    MODE_ALL,
    MODE_EXPLICIT,
    MODE_GROUPS,
    MAX_SYNCED_TOKENS,
    MODES,
    STATUSES,
    ListEntry,
    Source,
    SyncState,
    entries_from_tokens,
)
from services.stations.documents import (
    LOCAL_LIST_ENTRIES_PARENT as ENTRIES_PARENT,
    LOCAL_LIST_HEADER_PARENT as HEADER_PARENT,
    DesiredList,
    desired_from_docs,
    local_list_content_hash as content_hash,
    local_list_entries_doc_id as entries_doc_id,
    local_list_entries_to_doc as entries_to_doc,
    local_list_header_to_doc as header_to_doc,
    local_list_sync_from_doc as sync_from_doc,
    read_tokens_revision,
)

__all__ = ["MAX_ENTRIES", "MAX_GROUPS", "OPENAPI_PATHS", "OPENAPI_SCHEMAS", "OPENAPI_TAGS", "OPENAPI_VIEWS", "setup"]

log = logging.getLogger("csms.api.local_lists")

MAX_ENTRIES = 10_000   # explicit entries (the 1 MiB request body allows about 15,000); larger lists: sync groups
MAX_GROUPS = 100
MAX_TOKEN_LEN = 36     # 2.0.1 IdToken (1.6 idTag: 20; longer ones are left out of a 1.6 station's list)
ID_TOKEN_TYPES = ("Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local", "MacAddress", "NoAuthorization")
_MAX_DETAILS = 100     # a 400 names at most this many bad fields


def _entry(v: Validator, i: int, raw: object, seen: set[str]) -> ListEntry | None:
    name = f"entries[{i}]"
    if not isinstance(raw, dict):
        v.fail(name, "must be an object")
        return None
    e = Validator(raw, allowed={"id_token", "status", "expires_at", "group_id", "id_token_type"})
    id_token = e.string("id_token", required=True, max_len=MAX_TOKEN_LEN, printable=True)
    status = e.string("status", choices=ENTRY_STATUSES)
    expires_at = e.timestamp("expires_at", nullable=True)
    group_id = e.string("group_id", nullable=True, max_len=MAX_TOKEN_LEN, printable=True)
    kind = e.string("id_token_type", nullable=True, choices=ID_TOKEN_TYPES)
    for field, message in e.errors.items():
        v.fail(f"{name}.{field}", message)
    if e.errors:
        return None
    if id_token in seen:
        v.fail(f"{name}.id_token", f"{id_token!r} is listed twice (ids must be unique)")
        return None
    seen.add(id_token)
    return ListEntry(id_token, "Accepted" if not isinstance(status, str) else status,
                     expires_at if isinstance(expires_at, datetime) else None,
                     group_id if isinstance(group_id, str) else None, kind if isinstance(kind, str) else None)


def _parse(body: dict[str, Any]) -> tuple[str, tuple[str, ...], tuple[ListEntry, ...]]:
    """(mode, groups, entries) of a PUT body; a 400 naming every bad field."""
    v = Validator(body, allowed={"entries", "sync"})
    has_entries, has_sync = "entries" in body, "sync" in body
    if has_entries == has_sync:
        v.fail("entries" if not has_entries else "sync", "give either 'entries' (an explicit list) or 'sync' "
                                                         "(\"all\" or a list of group ids)")
        v.done()
    if has_entries:
        raw = body["entries"]
        if not isinstance(raw, list):
            v.fail("entries", "must be a list of entries")
        elif len(raw) > MAX_ENTRIES:
            v.fail("entries", f"must hold at most {MAX_ENTRIES} entries (sync groups of tokens for more)")
        else:
            seen: set[str] = set()
            entries = [_entry(v, i, x, seen) for i, x in enumerate(raw)]
            if v.errors:
                raise validation_error(dict(list(v.errors.items())[:_MAX_DETAILS]))
            kept = tuple(sorted((e for e in entries if e is not None), key=lambda e: e.id_token))
            return MODE_EXPLICIT, (), kept
        v.done()
    sync = body["sync"]
    if sync == MODE_ALL:
        return MODE_ALL, (), ()
    if not isinstance(sync, list) or not sync or len(sync) > MAX_GROUPS:
        v.fail("sync", f"must be \"all\" or a list of 1-{MAX_GROUPS} group ids")
        v.done()
    groups: list[str] = []
    for i, g in enumerate(sync):
        if not isinstance(g, str) or not 1 <= len(g) <= MAX_TOKEN_LEN or not g.isprintable():
            v.fail(f"sync[{i}]", f"must be a group id of 1-{MAX_TOKEN_LEN} printable characters")
        elif g in groups:
            v.fail(f"sync[{i}]", f"{g!r} is listed twice")
        else:
            groups.append(g)
    v.done()
    return MODE_GROUPS, tuple(sorted(groups)), ()


async def _station(ctx: ApiContext, station_id: str) -> None:
    if await ctx.stations.get_station(station_id) is None:
        raise not_found("station", station_id)


async def _tokens_for(ctx: ApiContext, desired: DesiredList) -> list[Token]:
    return await ctx.tokens.list_tokens(limit=MAX_SYNCED_TOKENS + 1) if desired.mode != MODE_EXPLICIT else []


async def _view(ctx: ApiContext, desired: DesiredList, *, with_entries: bool = False, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    sid = desired.station_id
    doc = await ctx.documents.get_doc(kinds.LOCAL_LIST_SYNC, sid)
    state = sync_from_doc(doc) if doc is not None else SyncState(sid)
    tokens_revision = await read_tokens_revision(ctx.documents) if desired.mode != MODE_EXPLICIT else None
    source = Source(desired.desired_version, tokens_revision)
    status = state.status
    if status == "in_sync" and (state.source != source or not state.verified):
        status = "pending"  # the loop has not seen the change (or the station's boot) yet
    desired_version = desired.desired_version
    if state.source is not None and state.source.list_version == desired.desired_version and state.target_version:
        desired_version = max(desired_version, state.target_version)  # a token change made a newer version
    tokens = await _tokens_for(ctx, desired) if desired.mode != MODE_EXPLICIT else []
    count = desired.entry_count
    entries: Sequence[ListEntry] = desired.entries
    if desired.mode != MODE_EXPLICIT:
        entries = entries_from_tokens(tokens, None if desired.mode == MODE_ALL else desired.groups)
        count = len(entries)
    out: dict[str, Any] = {
        "station_id": sid,
        "mode": desired.mode,
        "groups": list(desired.groups),
        "entry_count": count,
        "desired_version": desired_version,
        "confirmed_version": state.confirmed_version,
        "status": status,
        "last_error": state.last_error,
        "attempts": state.attempts,
        "next_attempt_at": None if state.next_attempt_at is None else to_ocpp(state.next_attempt_at),
        "max_per_message": state.max_per_message,
        "max_per_message_source": state.max_source or None,
        "skipped_entries": state.skipped,
        "updated_at": None if desired.updated_at is None else to_ocpp(desired.updated_at),
        "confirmed_at": None if state.confirmed_at is None else to_ocpp(state.confirmed_at),
    }
    if with_entries:
        out["entries"] = [dict(e.params()) for e in sorted(entries, key=lambda e: e.id_token)[:limit]]
    return out


async def _load(ctx: ApiContext, station_id: str, *, entries: bool = False) -> DesiredList | None:
    header = await ctx.documents.get_doc(kinds.LOCAL_LIST, station_id)
    if header is None:
        return None
    doc = await ctx.documents.get_doc(kinds.LOCAL_LIST, entries_doc_id(station_id)) if entries else None
    return desired_from_docs(header, doc)


async def _store(ctx: ApiContext, station_id: str, mode: str, groups: tuple[str, ...],
                 entries: tuple[ListEntry, ...]) -> tuple[DesiredList, bool]:
    """(the desired list, created); the version moves only when the content changed."""
    current = await _load(ctx, station_id)
    digest = content_hash(mode, groups, entries)
    if current is not None and current.content_hash == digest:
        return current, False
    sync_doc = await ctx.documents.get_doc(kinds.LOCAL_LIST_SYNC, station_id)
    used = 0 if sync_doc is None else int(sync_doc.get("target_version") or 0)
    old = 0 if current is None else current.desired_version
    now = ctx.clock()
    desired = DesiredList(
        station_id=station_id, mode=mode, groups=groups, entries=entries, entry_count=len(entries),
        desired_version=max(old, used) + 1, content_hash=digest,
        created_at=now if current is None else current.created_at, updated_at=now,
    )
    # entries first (the compare-and-set that decides a race), then the header the loop lists
    entries_doc = await ctx.documents.get_doc(kinds.LOCAL_LIST, entries_doc_id(station_id))
    expected = None if entries_doc is None else int(entries_doc.get("desired_version") or 0)
    if not await ctx.documents.put_doc_if(kinds.LOCAL_LIST, entries_doc_id(station_id), entries_to_doc(desired),
                                          parent=ENTRIES_PARENT, expected_version=expected,
                                          version=desired.desired_version):
        raise conflict("the local list was changed at the same time; read it and try again")
    if not await ctx.documents.put_doc_if(kinds.LOCAL_LIST, station_id, header_to_doc(desired), parent=HEADER_PARENT,
                                          expected_version=None if current is None else current.desired_version,
                                          version=desired.desired_version):
        raise conflict("the local list was changed at the same time; read it and try again")
    log.info("station=%s local list version %d: %s, %d entries", station_id, desired.desired_version, mode, len(entries))
    return desired, current is None


async def put_local_list(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    body = await read_json(request)
    mode, groups, entries = _parse(body)
    await _station(ctx, station_id)
    desired, created = await _store(ctx, station_id, mode, groups, entries)
    return web.json_response(await _view(ctx, desired), status=201 if created else 200)


async def delete_local_list(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    await _station(ctx, station_id)
    if await _load(ctx, station_id) is None:
        raise not_found("local list of station", station_id)
    desired, _ = await _store(ctx, station_id, MODE_EXPLICIT, (), ())
    return web.json_response(await _view(ctx, desired))


def _bool_query(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise validation_error({name: "must be true or false"})
    return raw in ("true", "1")


async def get_local_list(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    station_id = request.match_info["id"]
    with_entries = _bool_query(request, "entries")
    limit = query_limit(request)
    await _station(ctx, station_id)
    desired = await _load(ctx, station_id, entries=with_entries)
    if desired is None:
        raise ApiError(404, f"station {station_id!r} has no local list (PUT one first)")
    return web.json_response(await _view(ctx, desired, with_entries=with_entries, limit=limit))


def setup(app: web.Application) -> None:
    path = f"{API_PREFIX}/stations/{{id}}/local-list"
    app.router.add_put(path, put_local_list)
    app.router.add_get(path, get_local_list)
    app.router.add_delete(path, delete_local_list)


# -- OpenAPI (merged by services/api/openapi_drivers.py) ------------------------------------

J = dict[str, Any]
_TAG = "local-lists"


_obj = closed_object


def _op(summary: str, responses: J, *, op_id: str, params: list[J] | None = None, body: J | None = None,
        description: str = "") -> J:
    op: J = {"summary": summary, "operationId": op_id, "tags": [_TAG], "responses": {**responses, "401": R401},
             "parameters": [path_param("id", "Station id."), *(params or [])]}
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


_ENTRY: J = _obj(["id_token"], {
    "id_token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_LEN},
    "status": {"type": "string", "enum": list(ENTRY_STATUSES), "default": "Accepted"},
    "expires_at": NULL_TS,
    "group_id": {"type": ["string", "null"], "maxLength": MAX_TOKEN_LEN},
    "id_token_type": {"type": ["string", "null"], "enum": [*ID_TOKEN_TYPES, None],
                      "description": "OCPP 2.0.1 IdToken type (Central when not given); ignored by 1.6."},
})

OPENAPI_TAGS: tuple[str, ...] = (_TAG,)
OPENAPI_SCHEMAS: dict[str, Any] = {
    "LocalListEntry": _ENTRY,
    "LocalListRequest": {
        "oneOf": [
            _obj(["entries"], {"entries": {"type": "array", "maxItems": MAX_ENTRIES, "items": ref("LocalListEntry")}},
                 description="An explicit list (id tokens unique)."),
            _obj(["sync"], {"sync": {"oneOf": [
                {"type": "string", "const": "all", "description": "Every token of /api/v1/tokens."},
                {"type": "array", "minItems": 1, "maxItems": MAX_GROUPS, "uniqueItems": True,
                 "items": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_LEN},
                 "description": "The tokens whose group_id is one of these."},
            ]}}, description="A list that follows the token store."),
        ],
    },
    "LocalList": _obj(
        ["station_id", "mode", "groups", "entry_count", "desired_version", "confirmed_version", "status",
         "last_error", "attempts", "next_attempt_at", "max_per_message", "max_per_message_source",
         "skipped_entries", "updated_at", "confirmed_at"],
        {
            "station_id": {"type": "string"},
            "mode": {"type": "string", "enum": list(MODES)},
            "groups": {"type": "array", "items": {"type": "string"}},
            "entry_count": {"type": "integer", "minimum": 0, "description": "Entries of the desired list."},
            "desired_version": {"type": "integer", "minimum": 1,
                                "description": "The list version the station should hold (a token change makes a "
                                               "new one for a list that follows the token store)."},
            "confirmed_version": {**NULL_INT, "description": "What GetLocalListVersion last confirmed."},
            "status": {"type": "string", "enum": list(STATUSES)},
            "last_error": NULL_STR,
            "attempts": {"type": "integer", "minimum": 0, "description": "Failed attempts since the last success."},
            "next_attempt_at": NULL_TS,
            "max_per_message": {**NULL_INT, "description": "Entries per SendLocalList used for this station."},
            "max_per_message_source": {"type": ["string", "null"], "enum": ["device_model", "station", "default", None]},
            "skipped_entries": {"type": "integer", "minimum": 0,
                                "description": "Entries left out (an id token longer than a 1.6 station takes)."},
            "updated_at": TS,
            "confirmed_at": NULL_TS,
            "entries": {"type": "array", "items": ref("LocalListEntry"),
                        "description": "With ?entries=true: the desired entries by id token, at most `limit`."},
        },
    ),
}
_VIEW = json_content(ref("LocalList"), "The desired list and its sync state.")
OPENAPI_PATHS: dict[str, Any] = {
    f"{API_PREFIX}/stations/{{id}}/local-list": {
        "put": _op("State a station's local authorization list", {
            "200": _VIEW, "201": _VIEW, "400": R400, "404": R404,
            "409": json_content(ref("Error"), "Changed by another request at the same time."),
        }, op_id="putLocalList", body=ref("LocalListRequest"),
            description="Explicit entries or a rule over the token store; the sync loop sends it to the station "
                        "(Full, then Differential updates, chunked) and confirms it with GetLocalListVersion."),
        "get": _op("A station's local list and its sync state", {"200": _VIEW, "400": R400, "404": R404},
                   op_id="getLocalList", params=[
                       query("entries", "true: include the desired entries.", {"type": "boolean", "default": False}),
                       query("limit", f"With entries: at most this many (default {DEFAULT_LIMIT}).",
                             {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
                   ]),
        "delete": _op("Clear a station's local list (an empty list is sent)", {"200": _VIEW, "404": R404},
                      op_id="deleteLocalList"),
    },
}
OPENAPI_VIEWS: tuple[str, ...] = ("LocalList",)
